// Python bindings of the packed network: construction from PyTorch-layout weights (all at once
// or one matrix at a time), reading a matrix back, and the forward pass (GIL released).
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/in_core.h"
#include "bindings/instance.h"
#include "bindings/network_args.h"
#include "core/dispatch.h"
#include "core/network.h"

namespace pyrnn::bindings {
namespace {

// A network packed one matrix at a time, so that a module's PyTorch-layout weights (read from a
// file tensor by tensor, or drawn at random) never all exist beside the packed copy: each is
// packed as it arrives and can be released before the next.
class NetworkBuilder {
 public:
  NetworkBuilder(const NetworkConfig& config, WeightType type)
      : config_(config), type_(type), layers_(config.num_layers * config.directions()) {}

  void pack(int entry, const std::string& role, py::handle value,
            const std::optional<FloatArray>& scales) {
    check_open();
    if (entry < 0 || entry >= static_cast<int>(layers_.size()))
      throw std::invalid_argument("entry: expected 0 <= entry < " + std::to_string(layers_.size()) +
                                  ", got " + std::to_string(entry));
    if ((type_ == WeightType::I8) != scales.has_value())
      throw std::invalid_argument(type_ == WeightType::I8
                                      ? "scales: required for weight_type 'int8'"
                                      : "scales: only weight_type 'int8' takes scales");
    const int gates = config_.gates(), hidden = config_.hidden_size;
    const int layer = entry / config_.directions();
    PackedLayer& packed = layers_[entry];
    PackedPanels* target = nullptr;
    int rows_gates = gates, units = hidden, k = 0;
    if (role == "w_ih") {
      target = &packed.w_ih;
      k = config_.layer_input_size(layer);
    } else if (role == "w_hh") {
      target = &packed.w_hh;
      k = config_.output_size();
    } else if (role == "w_hr" && config_.proj_size > 0) {
      target = &packed.w_hr;
      rows_gates = 1;
      units = config_.proj_size;
      k = hidden;
    } else {
      throw std::invalid_argument("role: expected 'w_ih', 'w_hh'" +
                                  std::string(config_.proj_size > 0 ? " or 'w_hr'" : "") +
                                  ", got '" + role + "'");
    }
    RawWeights held;
    const WeightMatrix weights =
        matrix(value, type_, {static_cast<py::ssize_t>(rows_gates) * units, k},
               scales ? &*scales : nullptr, role, held);
    *target = PackedPanels(weights, rows_gates, units, k);
  }

  // `biases` holds (b_ih, b_hh) per entry, None without bias; the builder is spent after.
  std::shared_ptr<Network> build(
      const std::vector<std::pair<OptionalArray, OptionalArray>>& biases) {
    check_open();
    if (biases.size() != layers_.size())
      throw std::invalid_argument("biases: expected " + std::to_string(layers_.size()) +
                                  " (layer, direction) entries, got " +
                                  std::to_string(biases.size()));
    const py::ssize_t GH = static_cast<py::ssize_t>(config_.gates()) * config_.hidden_size;
    for (std::size_t index = 0; index < layers_.size(); ++index) {
      const auto& [b_ih, b_hh] = biases[index];
      if (b_ih) require_shape(*b_ih, {GH}, "b_ih");
      if (b_hh) require_shape(*b_hh, {GH}, "b_hh");
      pack_biases(config_, b_ih ? b_ih->data() : nullptr, b_hh ? b_hh->data() : nullptr,
                  layers_[index]);
    }
    spent_ = true;
    auto network = std::make_shared<Network>(config_, std::move(layers_));
#ifdef __GLIBC__
    // The tensors the matrices were packed from are freed by now, but glibc keeps freed heap
    // memory below an adaptive threshold (twice the largest block freed, up to 64 MiB): a
    // 64 MiB model stayed at 80 MiB resident without this. Returning it costs one heap walk.
    malloc_trim(0);
#endif
    return network;
  }

 private:
  void check_open() const {
    if (spent_) throw std::invalid_argument("NetworkBuilder: build() was called already");
  }

  NetworkConfig config_;
  WeightType type_;
  std::vector<PackedLayer> layers_;
  bool spent_ = false;
};

// Matrix `role` of (layer, direction) `entry` read back from its panels: a fresh array of the
// storage dtype, (rows, k) as PyTorch lays it out.
py::array unpack(const Network& network, int entry, const std::string& role) {
  const NetworkConfig& config = network.config();
  const int entries = config.num_layers * config.directions();
  if (entry < 0 || entry >= entries)
    throw std::invalid_argument("entry: expected 0 <= entry < " + std::to_string(entries) +
                                ", got " + std::to_string(entry));
  const PackedLayer& packed =
      network.layer(entry / config.directions(), entry % config.directions());
  const PackedPanels* panels = role == "w_ih"                           ? &packed.w_ih
                               : role == "w_hh"                         ? &packed.w_hh
                               : role == "w_hr" && config.proj_size > 0 ? &packed.w_hr
                                                                        : nullptr;
  if (panels == nullptr)
    throw std::invalid_argument("role: expected 'w_ih', 'w_hh'" +
                                std::string(config.proj_size > 0 ? " or 'w_hr'" : "") + ", got '" +
                                role + "'");
  py::array out(weight_storage_dtype(panels->type()),
                {static_cast<py::ssize_t>(panels->gates()) * panels->units(),
                 static_cast<py::ssize_t>(panels->k())});
  panels->unpack(out.mutable_data());
  return out;
}

// No output may share memory with an input or another output, not even exactly: a
// bidirectional layer reads x again after writing out. (Python's forward() makes all three
// outputs fresh; this guards the core call itself.)
void check_no_overlap(const py::array& x, const py::array& out, const std::optional<FloatArray>& h0,
                      const std::optional<FloatArray>& c0, const py::array& hn,
                      const std::optional<py::array>& cn, bool lstm) {
  struct Named {
    const char* name;
    ByteSpan span;
  };
  const ByteSpan none{};
  const Named inputs[] = {{"x", float32_span(x)},
                          {"h0", h0 ? float32_span(*h0) : none},
                          {"c0", c0 && lstm ? float32_span(*c0) : none}};
  const Named outputs[] = {{"out", float32_span(out)},
                           {"hn", float32_span(hn)},
                           {"cn", cn && lstm ? float32_span(*cn) : none}};
  for (std::size_t i = 0; i < 3; ++i) {
    for (const Named& input : inputs)
      if (outputs[i].span.overlaps(input.span)) throw_overlap(outputs[i].name, input.name, "");
    for (std::size_t j = i + 1; j < 3; ++j)
      if (outputs[i].span.overlaps(outputs[j].span))
        throw_overlap(outputs[j].name, outputs[i].name, "");
  }
}

// The part of forward and forward_packed after their input and output views: the states
// checked, then the run with the GIL released. `x` is the input array the views read.
void run_forward(const Network& network, const SequenceIn& in, const SequenceOut& dst,
                 const py::array& x, const py::array& out, const std::optional<FloatArray>& h0,
                 const std::optional<FloatArray>& c0, const py::array& hn,
                 const std::optional<py::array>& cn) {
  const NetworkConfig& config = network.config();
  const py::ssize_t LD = config.num_layers * config.directions(), N = in.rows;
  const float* h0_data = optional_state(h0, {LD, N, config.output_size()}, "h0");
  const float* c0_data = optional_state(c0, {LD, N, config.hidden_size}, "c0");
  float* hn_data = output_data(hn, {LD, N, config.output_size()}, "hn");
  float* cn_data = nullptr;
  if (config.kind == CellKind::Lstm) {
    if (!cn) throw std::invalid_argument("cn: required for an LSTM");
    cn_data = output_data(*cn, {LD, N, config.hidden_size}, "cn");
  }
  check_no_overlap(x, out, h0, c0, hn, cn, config.kind == CellKind::Lstm);
  const KernelTable& kernels = active_kernels();
  py::gil_scoped_release release;
  const InCore in_core;
  forward(kernels, network, in, dst, h0_data, c0_data, hn_data, cn_data);
}

void network_forward(const Network& network, const py::array& x, const py::array& out,
                     const std::optional<FloatArray>& h0, const std::optional<FloatArray>& c0,
                     const py::array& hn, const std::optional<py::array>& cn) {
  const NetworkConfig& config = network.config();
  const SequenceIn in = sequence_view<const float>(x, "x");
  const SequenceOut dst = sequence_view<float>(out, "out");
  if (in.features != config.input_size)
    throw std::invalid_argument("x: expected " + std::to_string(config.input_size) +
                                " features, got " + std::to_string(in.features));
  if (dst.steps != in.steps || dst.rows != in.rows ||
      dst.features != config.output_size() * config.directions())
    throw std::invalid_argument("out: shape does not match x and the network");
  run_forward(network, in, dst, x, out, h0, c0, hn, cn);
}

using IndexArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// Step t's row range of a packed sequence, from PyTorch's batch_sizes (T,): T + 2 running row
// counts, the last repeated (see SequenceView). Checks what the core relies on: every batch
// size in [1, N], none larger than the one before, S rows in all.
std::vector<std::ptrdiff_t> packed_offsets(const IndexArray& batch_sizes, py::ssize_t S) {
  if (batch_sizes.ndim() != 1 || batch_sizes.shape(0) < 1)
    throw std::invalid_argument("batch_sizes: expected a 1-D array of at least 1 step, got shape " +
                                shape_string(batch_sizes));
  if (batch_sizes.shape(0) > std::numeric_limits<int>::max())
    throw std::invalid_argument("batch_sizes: more than 2^31-1 steps");
  const std::int64_t* sizes = batch_sizes.data();
  std::vector<std::ptrdiff_t> offsets(static_cast<std::size_t>(batch_sizes.shape(0)) + 2, 0);
  for (py::ssize_t t = 0; t < batch_sizes.shape(0); ++t) {
    const std::int64_t limit = t == 0 ? std::numeric_limits<int>::max() : sizes[t - 1];
    if (sizes[t] < 1 || sizes[t] > limit)
      throw std::invalid_argument("batch_sizes[" + std::to_string(t) + "]: expected in [1, " +
                                  std::to_string(limit) + "], got " + std::to_string(sizes[t]));
    offsets[t + 1] = offsets[t] + sizes[t];
  }
  offsets.back() = offsets[offsets.size() - 2];
  if (offsets.back() != S)
    throw std::invalid_argument("data: expected " + std::to_string(offsets.back()) +
                                " rows (the sum of batch_sizes), got " + std::to_string(S));
  return offsets;
}

// A (S, F) float32 array of packed rows (unit feature stride, any row stride) as a packed view.
template <class Float>
SequenceView<Float> packed_view(const py::array& array, const char* name,
                                const std::vector<std::ptrdiff_t>& offsets) {
  if (array.ndim() != 2)
    throw std::invalid_argument(std::string(name) + ": expected a 2-D (S, F) array, got " +
                                shape_string(array));
  // The (T, N, F) checks on a (1, S, F) view of the same memory: dtype, alignment, strides.
  const py::array as_sequence = array.attr("reshape")(1, array.shape(0), array.shape(1));
  SequenceView<Float> view = sequence_view<Float>(as_sequence, name);
  view.steps = static_cast<int>(offsets.size()) - 2;
  view.rows = static_cast<int>(offsets[1]);
  view.step_stride = 0;
  view.offsets = offsets.data();
  return view;
}

void network_forward_packed(const Network& network, const py::array& data,
                            const IndexArray& batch_sizes, const py::array& out,
                            const std::optional<FloatArray>& h0,
                            const std::optional<FloatArray>& c0, const py::array& hn,
                            const std::optional<py::array>& cn) {
  const NetworkConfig& config = network.config();
  if (data.ndim() != 2 || data.shape(1) != config.input_size)
    throw std::invalid_argument("data: expected (S, " + std::to_string(config.input_size) +
                                "), got " + shape_string(data));
  const std::vector<std::ptrdiff_t> offsets = packed_offsets(batch_sizes, data.shape(0));
  const SequenceIn in = packed_view<const float>(data, "data", offsets);
  const py::ssize_t features = config.output_size() * config.directions();
  if (out.ndim() != 2 || out.shape(0) != data.shape(0) || out.shape(1) != features)
    throw std::invalid_argument("out: expected shape (" + std::to_string(data.shape(0)) + ", " +
                                std::to_string(features) + "), got " + shape_string(out));
  const SequenceOut dst = packed_view<float>(out, "out", offsets);
  run_forward(network, in, dst, data, out, h0, c0, hn, cn);
}

}  // namespace

void bind_network(py::module_& m) {
  py::class_<Network, std::shared_ptr<Network>> network(
      m, "Network", "A packed, immutable recurrent network.", with_instance_slot<Network>());
  network
      .def(py::init([](const std::string& kind, int input_size, int hidden_size, int num_layers,
                       bool bidirectional, int proj_size, const std::vector<WeightTuple>& weights,
                       const std::string& weight_type, const OptionalScales& scales) {
             const NetworkConfig config =
                 make_config(kind, input_size, hidden_size, num_layers, bidirectional, proj_size);
             return std::make_shared<Network>(
                 config, raw_weights(config, weights, weight_type, scales).layers);
           }),
           py::arg("kind"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("proj_size"), py::arg("weights"),
           py::arg("weight_type") = "fp32", py::arg("scales") = py::none())
      .def(
          "unpack",
          [](py::handle self, int entry, const std::string& role) {
            return unpack(initialized<Network>(self, "Network"), entry, role);
          },
          py::arg("entry"), py::arg("role"),
          "Matrix role ('w_ih', 'w_hh', 'w_hr') of (layer, direction) entry, read back from "
          "the packed panels bit-exactly: a fresh (rows, k) array of the storage dtype.")
      .def_property_readonly(
          "weight_type",
          [](py::handle self) {
            return weight_type_name(initialized<Network>(self, "Network").weight_type());
          },
          "How the matrices are stored: 'fp32', 'fp16', 'bf16' or 'int8'.")
      .def(
          "forward",
          [](py::handle self, const py::array& x, const py::array& out,
             const std::optional<FloatArray>& h0, const std::optional<FloatArray>& c0,
             const py::array& hn, const std::optional<py::array>& cn) {
            network_forward(initialized<Network>(self, "Network"), x, out, h0, c0, hn, cn);
          },
          py::arg("x"), py::arg("out"), py::arg("h0"), py::arg("c0"), py::arg("hn"), py::arg("cn"),
          "Runs x (T, N, I) into out (T, N, D*P), hn (L*D, N, P) and, for LSTM, cn.")
      .def(
          "forward_packed",
          [](py::handle self, const py::array& data, const IndexArray& batch_sizes,
             const py::array& out, const std::optional<FloatArray>& h0,
             const std::optional<FloatArray>& c0, const py::array& hn,
             const std::optional<py::array>& cn) {
            network_forward_packed(initialized<Network>(self, "Network"), data, batch_sizes, out,
                                   h0, c0, hn, cn);
          },
          py::arg("data"), py::arg("batch_sizes"), py::arg("out"), py::arg("h0"), py::arg("c0"),
          py::arg("hn"), py::arg("cn"),
          "Runs packed rows data (S, I), step t holding batch_sizes[t] rows of sequences sorted "
          "longest first, into out (S, D*P); hn and cn hold each sequence's last state, in that "
          "sorted order.");
  record_instances<Network>(network);
  py::class_<NetworkBuilder> builder(m, "NetworkBuilder",
                                     "Packs a Network one weight matrix at a time.",
                                     with_instance_slot<NetworkBuilder>());
  builder
      .def(py::init([](const std::string& kind, int input_size, int hidden_size, int num_layers,
                       bool bidirectional, int proj_size, const std::string& weight_type) {
             return NetworkBuilder(
                 make_config(kind, input_size, hidden_size, num_layers, bidirectional, proj_size),
                 parse_weight_type(weight_type, "NetworkBuilder"));
           }),
           py::arg("kind"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
           py::arg("bidirectional"), py::arg("proj_size"), py::arg("weight_type") = "fp32")
      .def(
          "pack",
          [](py::handle self, int entry, const std::string& role, py::handle matrix,
             const std::optional<FloatArray>& scales) {
            initialized<NetworkBuilder>(self, "NetworkBuilder").pack(entry, role, matrix, scales);
          },
          py::arg("entry"), py::arg("role"), py::arg("matrix"), py::arg("scales") = py::none(),
          "Packs matrix role ('w_ih', 'w_hh', 'w_hr') of (layer, direction) entry; the "
          "array may be released afterwards.")
      .def(
          "build",
          [](py::handle self, const std::vector<std::pair<OptionalArray, OptionalArray>>& biases) {
            // Made by pybind11 from C++, not by __init__: its slot is filled here.
            return remember_instance<Network>(
                py::cast(initialized<NetworkBuilder>(self, "NetworkBuilder").build(biases)));
          },
          py::arg("biases"),
          "The Network, given (b_ih, b_hh) per entry (None without bias); once.");
  record_instances<NetworkBuilder>(builder);
}

}  // namespace pyrnn::bindings
