// Recurrent layers as graph ops: torch's RNN / LSTM / GRU (every option: layers, directions,
// batch_first, biases, LSTM projections, initial states), ONNX's cell variants (activation
// functions, clip, peepholes, input_forget, linear_before_reset) and the cells, on the packed
// networks and time loops of the core. In a stream a layer's h (and c) live in an OpState and
// carry over from call to call.
#include <algorithm>
#include <cstring>
#include <optional>

#include "core/network.h"
#include "core/sequence.h"
#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

CellKind cell_kind(const std::string& mode) {
  if (mode == "rnn_tanh") return CellKind::RnnTanh;
  if (mode == "rnn_relu") return CellKind::RnnRelu;
  if (mode == "lstm") return CellKind::Lstm;
  if (mode == "gru") return CellKind::Gru;
  shape_error("attribute 'mode': expected 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru', got '" + mode +
              "'");
}

int int_extent(std::int64_t extent, const char* what) {
  if (extent < 0 || extent > INT32_MAX)
    shape_error(std::string(what) + " " + str(extent) + " exceeds the core's limit of 2^31-1");
  return static_cast<int>(extent);
}

Activation activation(const std::string& name) {
  static const std::pair<const char*, Activation> kNames[] = {
      {"sigmoid", Activation::Sigmoid},
      {"tanh", Activation::Tanh},
      {"relu", Activation::Relu},
      {"affine", Activation::Affine},
      {"leakyrelu", Activation::LeakyRelu},
      {"thresholdedrelu", Activation::ThresholdedRelu},
      {"scaledtanh", Activation::ScaledTanh},
      {"hardsigmoid", Activation::HardSigmoid},
      {"elu", Activation::Elu},
      {"softsign", Activation::Softsign},
      {"softplus", Activation::Softplus}};
  for (const auto& [text, value] : kNames)
    if (name == text) return value;
  shape_error("attribute 'activations': unknown function '" + name +
              "' (expected sigmoid, tanh, relu, affine, leakyrelu, thresholdedrelu, scaledtanh, "
              "hardsigmoid, elu, softsign or softplus)");
}

// ONNX's cell variants from the optional attributes of an rnn node (core/cell_options.h):
// activations ("f,g,h" names, with one alpha and one beta each), clip, input_forget,
// linear_before_reset, peepholes. None given: PyTorch's cell.
CellOptions cell_options(const Attrs& attrs, CellKind kind) {
  CellOptions o;
  const char* const keys[] = {"activations",  "activation_alpha",    "activation_beta", "clip",
                              "input_forget", "linear_before_reset", "peepholes"};
  for (const char* key : keys) o.general = o.general || attrs.has(key);
  if (kind == CellKind::RnnTanh || kind == CellKind::RnnRelu)
    o.f = {kind == CellKind::RnnTanh ? Activation::Tanh : Activation::Relu, 0.0f, 0.0f};
  if (!o.general) return o;
  if (attrs.has("activations")) {
    std::vector<std::string> names;
    const std::string& text = attrs.text("activations");
    std::size_t start = 0;
    while (start <= text.size()) {
      const std::size_t comma = std::min(text.find(',', start), text.size());
      names.push_back(text.substr(start, comma - start));
      start = comma + 1;
    }
    const std::size_t expected = kind == CellKind::Lstm ? 3 : kind == CellKind::Gru ? 2 : 1;
    if (names.size() != expected)
      shape_error("attribute 'activations': expected " + str(static_cast<std::int64_t>(expected)) +
                  " functions, got '" + text + "'");
    const std::vector<double> alpha = attrs.has("activation_alpha")
                                          ? attrs.numbers("activation_alpha")
                                          : std::vector<double>(expected, 0.0);
    const std::vector<double> beta = attrs.has("activation_beta")
                                         ? attrs.numbers("activation_beta")
                                         : std::vector<double>(expected, 0.0);
    if (alpha.size() != expected || beta.size() != expected)
      shape_error("attributes 'activation_alpha' and 'activation_beta': one value per function");
    ActivationFn* slots[] = {&o.f, &o.g, &o.h};
    for (std::size_t i = 0; i < expected; ++i)
      *slots[i] = {activation(names[i]), static_cast<float>(alpha[i]), static_cast<float>(beta[i])};
  }
  if (attrs.has("clip")) {
    const double clip = attrs.number("clip");
    if (!(clip >= 0.0) || clip > 3.4e38)
      shape_error("attribute 'clip': expected a finite number >= 0, got " + std::to_string(clip));
    o.clip = static_cast<float>(clip);
  }
  if (attrs.has("input_forget")) o.input_forget = attrs.boolean("input_forget");
  if (attrs.has("linear_before_reset"))
    o.linear_before_reset = attrs.boolean("linear_before_reset");
  if (attrs.has("peepholes")) o.peepholes = attrs.boolean("peepholes");
  if (o.input_forget && kind != CellKind::Lstm) shape_error("only LSTMs take input_forget");
  if (o.peepholes && kind != CellKind::Lstm) shape_error("only LSTMs take peepholes");
  if (!o.linear_before_reset && kind != CellKind::Gru)
    shape_error("only GRUs take linear_before_reset");
  return o;
}

// Where a recurrent op's matrices are among its operands: from `first`, `per` operands per
// (layer, direction) in torch's order (w_ih, w_hh[, b_ih, b_hh][, w_hr or peephole]).
struct WeightOperands {
  int first = 0, per = 0;

  // Writes the matrix taken as `operand` back from `network`'s panels; false for a vector.
  bool read(const Network& network, int operand, void* out) const {
    const int at = operand - first;
    if (at < 0 || per <= 0) return false;
    const NetworkConfig& c = network.config();
    const int entry = at / per, offset = at % per;
    if (entry >= c.num_layers * c.directions()) return false;
    const PackedLayer& layer = network.layer(entry / c.directions(), entry % c.directions());
    const PackedPanels* panels = offset == 0                            ? &layer.w_ih
                                 : offset == 1                          ? &layer.w_hh
                                 : offset == per - 1 && c.proj_size > 0 ? &layer.w_hr
                                                                        : nullptr;
    if (panels == nullptr) return false;
    panels->unpack(out);
    return true;
  }
};

// Reads the weights of every (layer, direction) from constant operands starting at `first`,
// in torch's order (then, with peepholes, the (3H) peephole weights i, f, o), checks their
// shapes and packs the network one matrix at a time: a weight fetched for packing is let go
// before the next is fetched, so a model's plain matrices never all exist beside the panels.
std::shared_ptr<const Network> build_network(const BuildContext& ctx, CellKind kind, int layers,
                                             bool bidirectional, bool biases, int first,
                                             const CellOptions& options = {},
                                             WeightOperands* where = nullptr) {
  const int dirs = bidirectional ? 2 : 1;
  const int count = ctx.inputs() - first;
  const bool peepholes = options.general && options.peepholes;
  const int base = 2 + (biases ? 2 : 0) + (peepholes ? 1 : 0);
  const int groups = layers * dirs;
  if (groups < 1 || count % groups != 0 || (count / groups != base && count / groups != base + 1))
    shape_error("expected " + str(groups * base) + " weight tensors (" + str(base) +
                " per layer and direction), got " + str(count));
  const bool projected = count / groups == base + 1;
  if (projected && options.general) shape_error("a cell with ONNX options takes no projection");
  if (projected && kind != CellKind::Lstm) shape_error("only LSTMs have projection weights");
  const int per = count / groups;
  const int G = gate_count(kind);
  const auto w_ih0 = ctx.weight_info(first, "weight_ih_l0");
  if (w_ih0.shape.rank != 2 || w_ih0.shape[0] % G != 0 || w_ih0.shape[0] == 0)
    shape_error("weight_ih_l0 has shape " + w_ih0.shape.str() + "; expected (" + str(G) +
                "*hidden_size, input_size)");
  NetworkConfig config;
  config.kind = kind;
  config.input_size = int_extent(w_ih0.shape[1], "input_size");
  config.hidden_size = int_extent(w_ih0.shape[0] / G, "hidden_size");
  config.num_layers = layers;
  config.bidirectional = bidirectional;
  config.options = options;
  if (projected) {
    const auto w_hr = ctx.weight_info(first + per - 1, "weight_hr_l0");
    if (w_hr.shape.rank != 2) shape_error("weight_hr_l0 must be 2-D");
    config.proj_size = int_extent(w_hr.shape[0], "proj_size");
  }
  config.validate();
  if (w_ih0.dtype == DType::I64) shape_error("weight_ih_l0: expected float32, got int64");
  const std::int64_t GH = static_cast<std::int64_t>(G) * config.hidden_size;
  const int H = config.hidden_size;
  std::vector<PackedLayer> packed;
  for (int index = 0; index < groups; ++index) {
    const int layer = index / dirs, at = first + index * per;
    const std::string suffix = "_l" + str(layer) + (index % dirs ? "_reverse" : "");
    // Matrices in the network's weight type (that of weight_ih_l0), biases float32.
    const auto tensor = [&](int offset, const std::string& name,
                            std::initializer_list<std::int64_t> dims, bool matrix) {
      auto c = matrix ? ctx.weight_info(at + offset, name.c_str())
                      : ctx.constant(at + offset, name.c_str());
      Shape expected;
      for (std::int64_t d : dims) expected.push_back(d);
      const DType dtype = matrix ? w_ih0.dtype : DType::F32;
      if (c.dtype != dtype || c.shape != expected)
        shape_error(name + suffix + ": expected " + dtype_name(dtype) + " of shape " +
                    expected.str() + ", got " + dtype_name(c.dtype) + " " + c.shape.str());
      return c;
    };
    // A matrix checked, then packed (or taken as packed already).
    const auto matrix = [&](int offset, const std::string& name, int gates, int units, int k) {
      tensor(offset, name, {static_cast<std::int64_t>(gates) * units, k}, true);
      return std::move(ctx.pack(at + offset, name.c_str(), {gates, units, k, 1}).front());
    };
    PackedLayer p;
    p.w_ih = matrix(0, "weight_ih", G, H, config.layer_input_size(layer));
    p.w_hh = matrix(1, "weight_hh", G, H, config.output_size());
    const float* b_ih = nullptr;
    const float* b_hh = nullptr;
    if (biases) {
      b_ih = tensor(2, "bias_ih", {GH}, false).floats();
      b_hh = tensor(3, "bias_hh", {GH}, false).floats();
    }
    pack_biases(config, b_ih, b_hh, p);
    if (projected) p.w_hr = matrix(per - 1, "weight_hr", 1, config.proj_size, H);
    if (peepholes)
      p.peephole = pack_bias(
          tensor(per - 1, "peephole", {3 * static_cast<std::int64_t>(config.hidden_size)}, false)
              .floats(),
          nullptr, 3, H);
    packed.push_back(std::move(p));
  }
  if (where != nullptr) *where = {first, per};
  return std::make_shared<const Network>(config, std::move(packed));
}

// A stream's state of one recurrent op: each layer's h and c, plus which rows still have to
// take the op's initial state (h0/c0 operands) at the next call.
class RecurrentState final : public OpState {
 public:
  RecurrentState(const Network& network, int rows) : network_(network), rows_(rows) {
    for (int l = 0; l < network.config().num_layers; ++l)
      layers_.emplace_back(network.config(), rows);
    pending_.assign(static_cast<std::size_t>(rows), 1);
  }
  std::unique_ptr<OpState> clone() const override {
    return std::make_unique<RecurrentState>(*this);
  }
  void reset() noexcept override {
    for (LayerState& s : layers_) s.reset();
    std::fill(pending_.begin(), pending_.end(), 1);
    any_pending_ = true;
  }
  void reset_row(int row) noexcept override {
    for (LayerState& s : layers_) s.reset_row(row);
    pending_[row] = 1;
    any_pending_ = true;
  }
  std::vector<Part> parts() const override {
    const NetworkConfig& c = network_.config();
    const auto shape = [&](int features) {
      Shape s;
      s.push_back(c.num_layers);
      s.push_back(rows_);
      s.push_back(features);
      return s;
    };
    std::vector<Part> parts{{"h", shape(c.output_size())}};
    if (c.kind == CellKind::Lstm) parts.push_back({"c", shape(c.hidden_size)});
    return parts;
  }
  void get(int part, float* data) const override {
    const NetworkConfig& c = network_.config();
    const std::size_t block =
        static_cast<std::size_t>(rows_) * (part == 0 ? c.output_size() : c.hidden_size);
    for (std::size_t l = 0; l < layers_.size(); ++l)
      layers_[l].store(part == 0 ? data + l * block : nullptr,
                       part == 1 ? data + l * block : nullptr);
  }
  void set(int part, const float* data) override {
    const NetworkConfig& c = network_.config();
    const std::size_t block =
        static_cast<std::size_t>(rows_) * (part == 0 ? c.output_size() : c.hidden_size);
    std::vector<float> keep;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      // load() writes both h and c: keep the part not being set.
      const std::size_t other =
          static_cast<std::size_t>(rows_) * (part == 0 ? c.hidden_size : c.output_size());
      keep.assign(other, 0.0f);
      if (part == 0) {
        layers_[l].store(nullptr, keep.data());
        layers_[l].load(data + l * block, keep.data());
      } else {
        layers_[l].store(keep.data(), nullptr);
        layers_[l].load(keep.data(), data + l * block);
      }
    }
    std::fill(pending_.begin(), pending_.end(), 0);
    any_pending_ = false;
  }

  LayerState* layers() noexcept { return layers_.data(); }
  // Loads h0/c0 (compact (L, N, P) / (L, N, H); null: zeros) into rows still pending.
  void take_initial(const float* h0, const float* c0) noexcept {
    if (!any_pending_) return;
    any_pending_ = false;
    if (h0 == nullptr && c0 == nullptr) return;  // pending rows are already zero
    const NetworkConfig& c = network_.config();
    const int P = c.output_size(), H = c.hidden_size;
    for (int l = 0; l < c.num_layers; ++l) {
      LayerState& s = layers_[l];
      for (int n = 0; n < rows_; ++n) {
        if (!pending_[n]) continue;
        const std::ptrdiff_t row = static_cast<std::ptrdiff_t>(l) * rows_ + n;
        if (h0) std::memcpy(s.h() + n * s.ld_h(), h0 + row * P, P * sizeof(float));
        if (c0 && c.kind == CellKind::Lstm)
          std::memcpy(s.c() + n * s.ld_c(), c0 + row * H, H * sizeof(float));
      }
    }
    std::fill(pending_.begin(), pending_.end(), 0);
  }

 private:
  const Network& network_;
  int rows_;
  std::vector<LayerState> layers_;
  std::vector<unsigned char> pending_;
  bool any_pending_ = true;
};

class Recurrent final : public Op {
 public:
  explicit Recurrent(const BuildContext& ctx)
      : kind_(cell_kind(ctx.attrs().text("mode"))),
        batch_first_(ctx.attrs().boolean("batch_first")) {
    ctx.require_inputs(4, -1);
    ctx.require_outputs(kind_ == CellKind::Lstm ? 3 : 2);
    ctx.require_tensor(0, "input");
    if (ctx.has(1)) ctx.require_tensor(1, "h0");
    if (ctx.has(2)) ctx.require_tensor(2, "c0");
    if (ctx.has(2) && kind_ != CellKind::Lstm) shape_error("only LSTMs take c0");
    network_ =
        build_network(ctx, kind_, static_cast<int>(ctx.attrs().integer("num_layers", 1, 1 << 20)),
                      ctx.attrs().boolean("bidirectional"), ctx.attrs().boolean("has_biases"), 3,
                      cell_options(ctx.attrs(), kind_), &weights_);
    if (ctx.attrs().has("lengths")) lengths_ = ctx.attrs().integers("lengths");
    if (ctx.attrs().has("reverse")) reverse_ = ctx.attrs().boolean("reverse");
    if (reverse_ && config().bidirectional)
      shape_error("attribute 'reverse': a bidirectional layer reads both directions already");
  }
  const NetworkConfig& config() const noexcept { return network_->config(); }
  bool read_weight(const NodeDef&, int operand, void* out) const override {
    return weights_.read(*network_, operand, out);
  }
  void infer(InferContext& ctx) const override {
    const NetworkConfig& c = config();
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "input");
    if (x.shape.rank != 3 || x.shape[2] != c.input_size)
      shape_error("input: expected " + std::string(batch_first_ ? "(N, T, " : "(T, N, ") +
                  str(c.input_size) + "), got " + x.shape.str());
    const std::int64_t T = x.shape[batch_first_ ? 1 : 0], N = x.shape[batch_first_ ? 0 : 1];
    int_extent(T, "sequence length");
    int_extent(N, "batch size");
    if (!lengths_.empty()) {
      if (static_cast<std::int64_t>(lengths_.size()) != N)
        shape_error("attribute 'lengths': expected one length per row (" + str(N) + "), got " +
                    str(static_cast<std::int64_t>(lengths_.size())));
      for (std::size_t n = 0; n < lengths_.size(); ++n)
        if (lengths_[n] < 1 || lengths_[n] > T)
          shape_error("attribute 'lengths': row " + str(static_cast<std::int64_t>(n)) +
                      " has length " + str(lengths_[n]) + "; expected in [1, " + str(T) +
                      "] (T = " + str(T) + ")");
    }
    const std::int64_t LD = static_cast<std::int64_t>(c.num_layers) * c.directions();
    const auto state_shape = [&](std::int64_t features) {
      Shape s;
      s.push_back(LD);
      s.push_back(N);
      s.push_back(features);
      return s;
    };
    for (int i = 1; i <= 2; ++i) {
      if (!ctx.has(i)) continue;
      const Shape expected = state_shape(i == 1 ? c.output_size() : c.hidden_size);
      require_f32(ctx.in(i), i == 1 ? "h0" : "c0");
      if (ctx.in(i).shape != expected)
        shape_error(std::string(i == 1 ? "h0" : "c0") + ": expected shape " + expected.str() +
                    ", got " + ctx.in(i).shape.str());
    }
    Shape out = x.shape;
    out[2] = static_cast<std::int64_t>(c.output_size()) * c.directions();
    ctx.set_tensor(0, DType::F32, out);
    ctx.set_tensor(1, DType::F32, state_shape(c.output_size()));
    if (kind_ == CellKind::Lstm) ctx.set_tensor(2, DType::F32, state_shape(c.hidden_size));
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    const int time = batch_first_ ? 1 : 0;
    if (axes[0] < 0) {
      for (std::size_t i = 1; i < axes.size(); ++i)
        if (axes[i] >= 0) shape_error("a weight or initial state carries time");
      return {std::vector<int>(node.outputs.size(), -1), false};
    }
    if (variable())
      shape_error(
          "rows of their own lengths (attributes 'lengths', 'reverse') need the whole "
          "sequence at once");
    if (axes[0] != time)
      throw NotTheTimeAxis("its input carries time on axis " + str(axes[0]) +
                           ", not on the sequence axis " + str(time));
    if (config().bidirectional)
      shape_error(
          "a bidirectional layer reads the sequence from its end, so no output exists "
          "before the whole sequence has arrived");
    for (std::size_t i = 1; i < axes.size(); ++i)
      if (axes[i] >= 0) shape_error("an initial state carries time");
    std::vector<int> out(node.outputs.size(), -1);
    out[0] = time;
    return {out, true};
  }
  std::unique_ptr<OpState> make_state(const NodeDef& node,
                                      const std::vector<ValueMeta>& values) const override {
    const Shape& x = values[node.inputs[0]].shape;
    return std::make_unique<RecurrentState>(*network_, static_cast<int>(x[batch_first_ ? 0 : 1]));
  }

  const Network& network() const noexcept { return *network_; }
  bool batch_first() const noexcept { return batch_first_; }
  // Rows run each for their own number of steps (and, reverse, from their own last step).
  bool variable() const noexcept { return !lengths_.empty() || reverse_; }
  const std::vector<std::int64_t>& lengths() const noexcept { return lengths_; }
  bool reverse() const noexcept { return reverse_; }

 private:
  CellKind kind_;
  bool batch_first_;
  std::shared_ptr<const Network> network_;
  WeightOperands weights_;
  std::vector<std::int64_t> lengths_;  // empty: every row runs all T steps
  bool reverse_ = false;
};

SequenceIn sequence_in(const float* data, const Shape& s, bool batch_first) {
  const auto T = static_cast<int>(s[batch_first ? 1 : 0]),
             N = static_cast<int>(s[batch_first ? 0 : 1]);
  const auto F = static_cast<int>(s[2]);
  const std::ptrdiff_t step = batch_first ? F : static_cast<std::ptrdiff_t>(N) * F;
  const std::ptrdiff_t row = batch_first ? static_cast<std::ptrdiff_t>(T) * F : F;
  return {data, step, row, T, N, F};
}

SequenceOut sequence_out(float* data, const Shape& s, bool batch_first) {
  const SequenceIn v = sequence_in(data, s, batch_first);
  return {data, v.step_stride, v.row_stride, v.steps, v.rows, v.features};
}

// Rows of their own lengths (ONNX's sequence_lens), run packed: sorted longest first (stably),
// each step's rows gathered one after another, so that no step computes a row past its end.
// The output past a row's end is zero and h_n is each row's state at its own last step, as
// ONNX specifies; `reverse` reads each row from its own last step back to its first.
class VariableLengths {
 public:
  VariableLengths(const Network& network, const std::vector<std::int64_t>& lengths, int rows,
                  int steps, bool reverse)
      : config_(network.config()), rows_(rows), steps_(steps), reverse_(reverse) {
    for (int n = 0; n < rows; ++n) order_.push_back(n);
    const auto length_of = [&](int n) {
      return lengths.empty() ? steps : static_cast<int>(lengths[n]);
    };
    std::stable_sort(order_.begin(), order_.end(),
                     [&](int a, int b) { return length_of(a) > length_of(b); });
    for (int n : order_) length_.push_back(length_of(n));
    offsets_.assign(static_cast<std::size_t>(steps) + 2, 0);
    for (int t = 0, active = rows; t < steps; ++t) {
      while (active > 0 && length_[active - 1] <= t) --active;
      offsets_[t + 1] = offsets_[t] + active;
    }
    offsets_.back() = offsets_[steps];
    const std::size_t S = offsets_[steps], LD = config_.num_layers * config_.directions();
    const std::size_t out = static_cast<std::size_t>(config_.output_size()) * config_.directions();
    x_.resize(S * config_.input_size);
    out_.resize(S * out);
    h_.resize(LD * rows * config_.output_size());
    hn_.resize(h_.size());
    if (config_.kind == CellKind::Lstm) {
      c_.resize(LD * rows * config_.hidden_size);
      cn_.resize(c_.size());
    }
    pass_.emplace(network, rows, steps);
  }

  void run(const KernelTable& kernels, SequenceIn x, SequenceOut out, const float* h0,
           const float* c0, float* hn, float* cn) noexcept {
    const int I = config_.input_size, F = out.features;
    const SequenceIn in{x_.data(), 0, I, steps_, rows_, I, offsets_.data()};
    const SequenceOut result{out_.data(), 0, F, steps_, rows_, F, offsets_.data()};
    for (int t = 0; t < steps_; ++t)
      for (int i = 0; i < in.active(t); ++i)
        std::memcpy(x_.data() + (offsets_[t] + i) * I, x.row(source_step(t, i), order_[i]),
                    I * sizeof(float));
    const int P = config_.output_size(), H = config_.hidden_size;
    if (h0) permute(h0, h_.data(), P, true);
    if (c0 && !c_.empty()) permute(c0, c_.data(), H, true);
    pass_->run(kernels, in, result, h0 ? h_.data() : nullptr,
               c0 && !c_.empty() ? c_.data() : nullptr, hn ? hn_.data() : nullptr,
               cn && !cn_.empty() ? cn_.data() : nullptr);
    for (int t = 0; t < steps_; ++t)
      for (int n = 0; n < rows_; ++n) std::memset(out.row(t, n), 0, F * sizeof(float));
    for (int t = 0; t < steps_; ++t)
      for (int i = 0; i < result.active(t); ++i)
        std::memcpy(out.row(source_step(t, i), order_[i]), result.row(t, i), F * sizeof(float));
    if (hn) permute(hn_.data(), hn, P, false);
    if (cn && !cn_.empty()) permute(cn_.data(), cn, H, false);
  }

 private:
  // The step of the caller's sequence that packed step t of sorted row i reads and writes.
  int source_step(int t, int i) const noexcept { return reverse_ ? length_[i] - 1 - t : t; }
  // (L*D, N, features) states between the caller's row order and the sorted one.
  void permute(const float* from, float* to, int features, bool sorting) const noexcept {
    const int blocks = config_.num_layers * config_.directions();
    for (int b = 0; b < blocks; ++b)
      for (int i = 0; i < rows_; ++i) {
        const std::ptrdiff_t sorted = static_cast<std::ptrdiff_t>(b) * rows_ + i;
        const std::ptrdiff_t caller = static_cast<std::ptrdiff_t>(b) * rows_ + order_[i];
        std::memcpy(to + (sorting ? sorted : caller) * features,
                    from + (sorting ? caller : sorted) * features, features * sizeof(float));
      }
  }

  NetworkConfig config_;
  int rows_, steps_;
  bool reverse_;
  std::vector<int> order_;   // sorted row i is the caller's row order_[i]
  std::vector<int> length_;  // the length of sorted row i
  std::vector<std::ptrdiff_t> offsets_;
  std::vector<float> x_, out_, h_, c_, hn_, cn_;
  std::optional<ForwardPass> pass_;
};

class RecurrentKernel final : public Kernel {
 public:
  RecurrentKernel(const Recurrent& op, const PrepareContext& ctx, RecurrentState* state)
      : op_(op),
        x_(ctx.in_id(0)),
        h0_(ctx.in_id(1)),
        c0_(ctx.in_id(2)),
        out_(ctx.out_id(0)),
        hn_(ctx.used(1) ? ctx.out_id(1) : -1),  // h_n/c_n nobody reads are not written
        cn_(ctx.node().outputs.size() > 2 && ctx.used(2) ? ctx.out_id(2) : -1),
        x_shape_(ctx.in(0).shape),
        out_shape_(ctx.out(0).shape),
        state_(state) {
    const SequenceIn v = sequence_in(nullptr, x_shape_, op.batch_first());
    if (op.variable() && v.rows > 0 && v.steps > 0) {
      variable_.emplace(op.network(), op.lengths(), v.rows, v.steps, op.reverse());
    } else if (state) {
      workspace_.emplace(op.config(), v.rows, default_chunk_steps(v.rows, v.steps));
    } else {
      pass_.emplace(op.network(), v.rows, v.steps);
    }
  }
  void run(const RunContext& ctx) noexcept override {
    const bool bf = op_.batch_first();
    const SequenceIn x = sequence_in(ctx.ptr<const float>(x_), x_shape_, bf);
    const SequenceOut out = sequence_out(ctx.ptr<float>(out_), out_shape_, bf);
    const float* h0 = h0_ >= 0 ? ctx.ptr<const float>(h0_) : nullptr;
    const float* c0 = c0_ >= 0 ? ctx.ptr<const float>(c0_) : nullptr;
    float* hn = hn_ >= 0 ? ctx.ptr<float>(hn_) : nullptr;
    float* cn = cn_ >= 0 ? ctx.ptr<float>(cn_) : nullptr;
    if (variable_) {
      variable_->run(ctx.kernels, x, out, h0, c0, hn, cn);
      return;
    }
    if (!state_) {
      pass_->run(ctx.kernels, x, out, h0, c0, hn, cn);
      return;
    }
    state_->take_initial(h0, c0);
    run_unidirectional(ctx.kernels, op_.network(), x, out, state_->layers(), *workspace_);
    if (hn) state_->get(0, hn);
    if (cn) state_->get(1, cn);
  }

 private:
  const Recurrent& op_;
  int x_, h0_, c0_, out_, hn_, cn_;
  Shape x_shape_, out_shape_;
  RecurrentState* state_;
  std::optional<ForwardPass> pass_;
  std::optional<Workspace> workspace_;
  std::optional<VariableLengths> variable_;
};

std::unique_ptr<Kernel> Recurrent::prepare(const PrepareContext& ctx) const {
  auto* state = static_cast<RecurrentState*>(ctx.state());
  if (ctx.in(0).time_axis >= 0 && state == nullptr) shape_error("a stream without its state");
  return std::make_unique<RecurrentKernel>(*this, ctx, ctx.in(0).time_axis >= 0 ? state : nullptr);
}

// One step of a cell: x (N, I), h (N, P), c (N, H) -> h' (and c'), through a one-layer network.
class Cell final : public Op {
 public:
  explicit Cell(const BuildContext& ctx) : kind_(cell_kind(ctx.attrs().text("mode"))) {
    ctx.require_inputs(5, 7);
    ctx.require_outputs(kind_ == CellKind::Lstm ? 2 : 1);
    ctx.require_tensor(0, "input");
    if (ctx.has(1)) ctx.require_tensor(1, "h");
    if (ctx.has(2)) ctx.require_tensor(2, "c");
    if (ctx.has(2) && kind_ != CellKind::Lstm) shape_error("only LSTM cells take c");
    const bool biases = ctx.has(5) && ctx.has(6);
    if (ctx.has(5) != ctx.has(6)) shape_error("give both biases or neither");
    // Reuse the layer reader on a view of the operands without the absent biases.
    NodeDef weights_only = ctx.node();
    weights_only.inputs.resize(biases ? 7 : 5);
    network_ = build_network(ctx.within(weights_only), kind_, 1, false, biases, 3, {}, &weights_);
  }
  bool read_weight(const NodeDef&, int operand, void* out) const override {
    return weights_.read(*network_, operand, out);
  }
  void infer(InferContext& ctx) const override {
    const NetworkConfig& c = network_->config();
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "input");
    if (x.shape.rank != 2 || x.shape[1] != c.input_size)
      shape_error("input: expected (N, " + str(c.input_size) + "), got " + x.shape.str());
    int_extent(x.shape[0], "batch size");
    for (int i = 1; i <= 2; ++i) {
      if (!ctx.has(i)) continue;
      Shape expected;
      expected.push_back(x.shape[0]);
      expected.push_back(i == 1 ? c.output_size() : c.hidden_size);
      if (ctx.in(i).shape != expected || ctx.in(i).dtype != DType::F32)
        shape_error(std::string(i == 1 ? "h" : "c") + ": expected float32 of shape " +
                    expected.str() + ", got " + ctx.in(i).shape.str());
    }
    Shape h;
    h.push_back(x.shape[0]);
    h.push_back(c.hidden_size);
    ctx.set_tensor(0, DType::F32, h);
    if (kind_ == CellKind::Lstm) ctx.set_tensor(1, DType::F32, h);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Run final : public Kernel {
     public:
      Run(const Network& network, const PrepareContext& ctx)
          : rows_(static_cast<int>(ctx.in(0).shape[0])),
            pass_(network, rows_, 1),
            x_(ctx.in_id(0)),
            h_(ctx.in_id(1)),
            c_(ctx.in_id(2)),
            h_out_(ctx.out_id(0)),
            c_out_(ctx.node().outputs.size() > 1 ? ctx.out_id(1) : -1),
            features_(network.config().input_size),
            hidden_(network.config().hidden_size) {}
      void run(const RunContext& ctx) noexcept override {
        const SequenceIn x{ctx.ptr<const float>(x_), 0, features_, 1, rows_, features_};
        const SequenceOut out{ctx.ptr<float>(h_out_), 0, hidden_, 1, rows_, hidden_};
        pass_.run(ctx.kernels, x, out, h_ >= 0 ? ctx.ptr<const float>(h_) : nullptr,
                  c_ >= 0 ? ctx.ptr<const float>(c_) : nullptr, nullptr,
                  c_out_ >= 0 ? ctx.ptr<float>(c_out_) : nullptr);
      }

     private:
      int rows_;
      ForwardPass pass_;
      int x_, h_, c_, h_out_, c_out_, features_, hidden_;
    };
    return std::make_unique<Run>(*network_, ctx);
  }

 private:
  CellKind kind_;
  std::shared_ptr<const Network> network_;
  WeightOperands weights_;
};

}  // namespace

std::unique_ptr<Op> make_recurrent(const BuildContext& ctx) {
  if (ctx.node().op == "rnn") return std::make_unique<Recurrent>(ctx);
  return std::make_unique<Cell>(ctx);
}

}  // namespace pyrnn::graph::ops
