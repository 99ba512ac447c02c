// 1-D convolution (im2col into the packed-panel GEMM) and 1-D max / average pooling, over
// (N, C, L) or unbatched (C, L) inputs.
//
// Streaming along L: each op keeps the last span-1 input frames per row and channel and a count
// of frames seen (an OpState, starting at the left padding's frames). A call appends its new
// frames to the kept ones and emits each window that a new frame completes (TimeWindow): with
// the left padding exactly span-1 (a causal convolution) that is one output per input frame;
// otherwise outputs are delayed and/or strided, the same frames a whole-sequence run gives,
// minus those that only right padding (after the end) completes.
#include <algorithm>
#include <limits>

#include "core/aligned_buffer.h"
#include "core/packed_panels.h"
#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

constexpr std::int64_t kConvChunkRows = 128;  // output positions per GEMM call

struct Window {
  std::int64_t kernel, stride, pad_left, pad_right, dilation;

  std::int64_t span() const { return dilation * (kernel - 1) + 1; }
  TimeWindow along_time() const { return {stride, span(), pad_left}; }
  std::int64_t output_length(std::int64_t length) const {
    const std::int64_t padded = length + pad_left + pad_right - span();
    return padded < 0 ? 0 : padded / stride + 1;
  }
};

// Layout of an (N, C, L) or (C, L) input: batch rows, channels, length.
struct Ncl {
  std::int64_t rows, channels, length;
};

Ncl ncl_of(const Shape& s) {
  if (s.rank == 2) return {1, s[0], s[1]};
  return {s[0], s[1], s[2]};
}

// What a stream keeps for a windowed op: the last span-1 input frames (N, C, span-1) and the
// count of padded frames seen.
class History final : public OpState {
 public:
  History(std::int64_t rows, std::int64_t channels, const TimeWindow& window)
      : rows_(rows),
        channels_(channels),
        window_(window),
        seen_(window.pad_left),
        frames_(checked_mul(checked_mul(static_cast<std::size_t>(rows), channels),
                            static_cast<std::size_t>(window.span - 1))) {}
  std::unique_ptr<OpState> clone() const override { return std::make_unique<History>(*this); }
  void reset() noexcept override {
    frames_.fill_zero();
    seen_ = window_.pad_left;
  }
  // Rows share the count of frames seen, so one row can restart only when the window neither
  // strides nor delays (ModelStream refuses it otherwise).
  void reset_row(int row) noexcept override {
    const std::size_t per_row = static_cast<std::size_t>(channels_ * context());
    std::memset(frames_.data() + row * per_row, 0, per_row * sizeof(float));
  }
  std::vector<Part> parts() const override {
    Shape frames, seen;
    frames.push_back(rows_);
    frames.push_back(channels_);
    frames.push_back(context());
    seen.push_back(1);
    return {{"frames", frames}, {"seen", seen}};
  }
  void get(int part, float* data) const override {
    if (part == 1) {
      data[0] = static_cast<float>(seen_);  // folded: small, exact in float
      return;
    }
    std::memcpy(data, frames_.data(), frames_.size() * sizeof(float));
  }
  void set(int part, const float* data) override {
    if (part == 1) {
      const float seen = data[0];
      // Out-of-range counts (a hand-made state) fall back to the start.
      seen_ = seen >= 0.0f && seen < 1e7f ? window_.fold(static_cast<std::int64_t>(seen))
                                          : window_.pad_left;
      return;
    }
    std::memcpy(frames_.data(), data, frames_.size() * sizeof(float));
  }
  std::int64_t frames_seen() const noexcept override { return seen_; }

  float* data() noexcept { return frames_.data(); }
  std::int64_t context() const noexcept { return window_.span - 1; }
  const TimeWindow& window() const noexcept { return window_; }
  std::int64_t seen() const noexcept { return seen_; }
  void advance(std::int64_t frames) noexcept { seen_ = window_.fold(seen_ + frames); }

 private:
  std::int64_t rows_, channels_;
  TimeWindow window_;
  std::int64_t seen_;
  AlignedBuffer frames_;
};

// Joins a stream's kept frames and a call's new frames into `extended` (N, C, context + L),
// then keeps the last `context` frames for the next call.
void extend_with_history(History& history, const float* x, const Ncl& in, float* extended) {
  const std::int64_t context = history.context();
  const std::int64_t total = context + in.length;
  for (std::int64_t r = 0; r < in.rows * in.channels; ++r) {
    float* row = extended + r * total;
    float* kept = history.data() + r * context;
    std::memcpy(row, kept, static_cast<std::size_t>(context) * sizeof(float));
    std::memcpy(row + context, x + r * in.length,
                static_cast<std::size_t>(in.length) * sizeof(float));
    std::memcpy(kept, row + total - context, static_cast<std::size_t>(context) * sizeof(float));
  }
}

// The offsets (into [kept | new] frames) where the windows this call completes start, for
// `frames` new frames after `seen`: window ending at new frame f starts at offset f.
std::int64_t emitting_offsets(const TimeWindow& w, std::int64_t seen, std::int64_t frames,
                              std::int64_t* offsets) noexcept {
  std::int64_t count = 0;
  for (std::int64_t f = 0; f < frames; ++f)
    if (w.emits(seen + f + 1)) offsets[count++] = f;
  return count;
}

Window read_window(const Attrs& a, bool conv) {
  Window w{};
  if (conv) {
    const auto& padding = a.integers("padding");
    if (padding.size() != 2 || padding[0] < 0 || padding[1] < 0)
      shape_error("attribute 'padding': expected [left, right] >= 0");
    w.pad_left = padding[0];
    w.pad_right = padding[1];
    w.dilation = a.integer("dilation", 1, INT32_MAX);
  } else {
    w.pad_left = w.pad_right = a.integer("padding", 0, INT32_MAX);
    w.dilation = a.has("dilation") ? a.integer("dilation", 1, INT32_MAX) : 1;
    w.kernel = a.integer("kernel_size", 1, INT32_MAX);
  }
  w.stride = a.integer("stride", 1, INT32_MAX);
  return w;
}

// The streaming rule shared by convolution and pooling.
TimeFlow window_time_flow(const std::vector<int>& axes, const NodeDef& node,
                          const std::vector<ValueMeta>& values, const Window& w) {
  const int rank = values[node.inputs[0]].shape.rank;
  if (axes[0] < 0) return same_axes(axes, node);
  if (axes[0] != rank - 1)
    shape_error(node.op + " over an input whose channel or batch axis carries time");
  if (w.pad_left > w.span() - 1)
    shape_error(node.op + " pads " + str(w.pad_left) +
                " frames on the left, more than its window "
                "of " +
                str(w.span()) +
                " frames reaches back: its first outputs would see "
                "padding only");
  return TimeFlow::windowed_by({axes[0]}, w.along_time());
}

// Output frames of a windowed op in a stream plan: what the plan says this step emits, or, for
// a window aligned with its input, one per input frame.
std::int64_t stream_frames(const InferContext& ctx, std::int64_t input_frames) {
  return ctx.emitted() >= 0 ? ctx.emitted() : input_frames;
}

class Conv1d final : public Op {
 public:
  explicit Conv1d(const BuildContext& ctx)
      : window_(read_window(ctx.attrs(), true)),
        groups_(ctx.attrs().integer("groups", 1, INT32_MAX)) {
    ctx.require_inputs(2, 3);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    const auto w = ctx.weight_info(1, "weight");
    if (w.dtype == DType::I64 || w.shape.rank != 3)
      shape_error("conv1d: weight must be a 3-D float32 (or float16, bfloat16, int8) tensor, got " +
                  std::string(dtype_name(w.dtype)) + " " + w.shape.str());
    out_channels_ = w.shape[0];
    group_in_ = w.shape[1];
    window_.kernel = w.shape[2];
    if (window_.kernel < 1 || out_channels_ % groups_ != 0)
      shape_error("conv1d: weight " + w.shape.str() + " does not fit groups=" + str(groups_));
    group_out_ = out_channels_ / groups_;
    const std::int64_t k = group_in_ * window_.kernel;
    if (k > INT32_MAX || group_out_ > INT32_MAX || window_.span() > INT32_MAX)
      shape_error("conv1d: weight " + w.shape.str() + " exceeds the core's limits");
    // Each group's (Cout/g, Cin/g * K) rows are contiguous in torch's layout.
    panels_ =
        ctx.pack(1, "weight",
                 {1, static_cast<int>(group_out_), static_cast<int>(k), static_cast<int>(groups_)});
    const float* b = nullptr;
    if (ctx.has(2)) {
      const auto bias = ctx.constant(2, "bias");
      if (bias.dtype != DType::F32 || bias.shape.rank != 1 || bias.shape[0] != out_channels_)
        shape_error("conv1d: bias must be float32 of shape (" + str(out_channels_) + ",)");
      b = bias.floats();
    }
    for (std::int64_t g = 0; g < groups_; ++g)
      biases_.push_back(
          pack_bias(b ? b + g * group_out_ : nullptr, nullptr, 1, static_cast<int>(group_out_)));
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    require_rank(x, 2, 3, "x");
    const Ncl in = ncl_of(x.shape);
    if (in.channels != group_in_ * groups_)
      shape_error("conv1d: expected " + str(group_in_ * groups_) + " input channels, got input " +
                  x.shape.str());
    const std::int64_t length =
        x.time_axis >= 0 ? stream_frames(ctx, in.length) : window_.output_length(in.length);
    if (x.time_axis < 0 && in.length + window_.pad_left + window_.pad_right < window_.span())
      shape_error("conv1d: input length " + str(in.length) + " is shorter than the kernel's span " +
                  str(window_.span()) + " (after padding)");
    Shape out = x.shape;
    out[out.rank - 2] = out_channels_;
    out[out.rank - 1] = length;
    ctx.set_tensor(0, DType::F32, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    return window_time_flow(axes, node, values, window_);
  }
  std::unique_ptr<OpState> make_state(const NodeDef& node,
                                      const std::vector<ValueMeta>& values) const override {
    const Ncl in = ncl_of(values[node.inputs[0]].shape);
    return std::make_unique<History>(in.rows, in.channels, window_.along_time());
  }

  bool read_weight(const NodeDef&, int operand, void* out) const override {
    if (operand != 1) return false;
    // Group g's rows follow group g-1's, as in torch's layout.
    const std::size_t group_bytes = static_cast<std::size_t>(group_out_ * group_in_) *
                                    static_cast<std::size_t>(window_.kernel) *
                                    weight_size(panels_.front().type());
    for (std::int64_t g = 0; g < groups_; ++g)
      panels_[g].unpack(static_cast<unsigned char*>(out) + g * group_bytes);
    return true;
  }

  const Window& window() const noexcept { return window_; }
  std::int64_t groups() const noexcept { return groups_; }
  std::int64_t group_in() const noexcept { return group_in_; }
  std::int64_t group_out() const noexcept { return group_out_; }
  const PackedPanels& panels(std::int64_t g) const { return panels_[g]; }
  const float* bias(std::int64_t g) const { return biases_[g].data(); }

 private:
  Window window_;
  std::int64_t groups_;
  std::int64_t out_channels_ = 0, group_in_ = 0, group_out_ = 0;
  std::vector<PackedPanels> panels_;
  std::vector<AlignedBuffer> biases_;
};

// Where each output frame's window starts in the source frames: t*stride - pad_left over the
// input (whole sequences), or the offsets a stream call completes within [kept | new] frames.
// Taps outside [0, length) read zeros (padding).
struct WindowStarts {
  const std::int64_t* offsets = nullptr;  // streams
  std::int64_t stride = 1, pad_left = 0;  // whole sequences
  std::int64_t operator[](std::int64_t t) const noexcept {
    return offsets ? offsets[t] : t * stride - pad_left;
  }
};

class Conv1dKernel final : public Kernel {
 public:
  Conv1dKernel(const Conv1d& op, int in, int out, Ncl input, std::int64_t out_len, History* history)
      : op_(op), in_(in), out_(out), input_(input), out_len_(out_len), history_(history) {
    const std::size_t rows = static_cast<std::size_t>(std::min(out_len, kConvChunkRows));
    const Window& w = op.window();
    columns_.resize(checked_mul(rows, static_cast<std::size_t>(op.group_in() * w.kernel)));
    products_.resize(checked_mul(
        rows, static_cast<std::size_t>(padded_units(static_cast<int>(op.group_out())))));
    if (history) {
      const std::size_t frames = static_cast<std::size_t>(history->context() + input.length);
      extended_.resize(checked_mul(static_cast<std::size_t>(input.rows * input.channels), frames));
      offsets_.resize(static_cast<std::size_t>(input.length) + 1);
    }
  }
  void run(const RunContext& ctx) noexcept override {
    const float* x = ctx.ptr<const float>(in_);
    float* y = ctx.ptr<float>(out_);
    const Window& w = op_.window();
    std::int64_t length = input_.length;
    WindowStarts starts{nullptr, w.stride, w.pad_left};
    if (history_) {
      const std::int64_t count =
          emitting_offsets(history_->window(), history_->seen(), length, offsets_.data());
      if (count != out_len_) fail(ctx, "stream frame count out of step", count);
      extend_with_history(*history_, x, input_, extended_.data());
      history_->advance(length);
      x = extended_.data();
      length += history_->context();
      starts = {offsets_.data(), 1, 0};
    }
    convolve(ctx, x, length, starts, y);
  }

 private:
  void convolve(const RunContext& ctx, const float* x, std::int64_t length, WindowStarts starts,
                float* y) noexcept {
    const Window& w = op_.window();
    const std::int64_t K = w.kernel, cin = op_.group_in(), cout = op_.group_out();
    const int padded = padded_units(static_cast<int>(cout));
    for (std::int64_t n = 0; n < input_.rows; ++n) {
      for (std::int64_t g = 0; g < op_.groups(); ++g) {
        const float* xg = x + (n * input_.channels + g * cin) * length;
        float* yg = y + (n * op_.groups() + g) * cout * out_len_;
        for (std::int64_t t0 = 0; t0 < out_len_; t0 += kConvChunkRows) {
          const std::int64_t m = std::min(kConvChunkRows, out_len_ - t0);
          // im2col: row t holds x[c, start(t) + k*dilation] for every (c, k).
          float* col = columns_.data();
          for (std::int64_t t = 0; t < m; ++t) {
            const std::int64_t base = starts[t0 + t];
            for (std::int64_t c = 0; c < cin; ++c)
              for (std::int64_t k = 0; k < K; ++k) {
                const std::int64_t at = base + k * w.dilation;
                *col++ = at >= 0 && at < length ? xg[c * length + at] : 0.0f;
              }
          }
          ctx.kernels.gemm({columns_.data(), static_cast<std::ptrdiff_t>(cin * K),
                            static_cast<int>(m), &op_.panels(g), op_.bias(g), products_.data(),
                            padded, 0, op_.panels(g).blocks()});
          for (std::int64_t t = 0; t < m; ++t)
            for (std::int64_t o = 0; o < cout; ++o)
              yg[o * out_len_ + t0 + t] = products_.data()[t * padded + o];
        }
      }
    }
  }

  const Conv1d& op_;
  int in_, out_;
  Ncl input_;
  std::int64_t out_len_;
  History* history_;
  AlignedBuffer columns_, products_, extended_;
  std::vector<std::int64_t> offsets_;
};

std::unique_ptr<Kernel> Conv1d::prepare(const PrepareContext& ctx) const {
  const ValueMeta& x = ctx.in(0);
  const Shape& out = ctx.out(0).shape;
  History* history = x.time_axis >= 0 ? static_cast<History*>(ctx.state()) : nullptr;
  if (x.time_axis >= 0 && history == nullptr) shape_error("conv1d: a stream without its state");
  return std::make_unique<Conv1dKernel>(*this, ctx.in_id(0), ctx.out_id(0), ncl_of(x.shape),
                                        out[out.rank - 1], history);
}

class Pool1d final : public Op {
 public:
  explicit Pool1d(const BuildContext& ctx)
      : window_(read_window(ctx.attrs(), false)),
        max_(ctx.node().op == "max_pool1d"),
        ceil_(ctx.attrs().boolean("ceil_mode")),
        include_pad_(max_ ? false : ctx.attrs().boolean("count_include_pad")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    if (window_.pad_left * 2 > window_.kernel)
      shape_error(ctx.node().op + ": padding " + str(window_.pad_left) +
                  " exceeds half the kernel size " + str(window_.kernel));
  }
  // torch's pooling_output_shape: floor or ceil, and a last window must start inside the input
  // or the left padding.
  std::int64_t output_length(std::int64_t length) const {
    const std::int64_t numerator = length + 2 * window_.pad_left - window_.span();
    if (numerator < 0) return -1;
    std::int64_t out = (ceil_ ? numerator + window_.stride - 1 : numerator) / window_.stride + 1;
    if (ceil_ && (out - 1) * window_.stride >= length + window_.pad_left) --out;
    return out;
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    require_rank(x, 2, 3, "x");
    if (x.time_axis == x.shape.rank - 1) {
      Shape out = x.shape;
      out[out.rank - 1] = stream_frames(ctx, x.shape[x.shape.rank - 1]);
      ctx.set_tensor(0, DType::F32, out);
      return;
    }
    const std::int64_t length = output_length(x.shape[x.shape.rank - 1]);
    if (length < 1)
      shape_error("input " + x.shape.str() + " is too short for a window of span " +
                  str(window_.span()));
    Shape out = x.shape;
    out[out.rank - 1] = length;
    ctx.set_tensor(0, DType::F32, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    const Shape& s = x.shape;
    History* history = x.time_axis == s.rank - 1 ? static_cast<History*>(ctx.state()) : nullptr;
    if (x.time_axis == s.rank - 1 && history == nullptr)
      shape_error(ctx.node().op + ": a stream without its state");
    return std::make_unique<Run>(*this, ctx.in_id(0), ctx.out_id(0), ncl_of(s),
                                 ctx.out(0).shape[s.rank - 1], history);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    return window_time_flow(axes, node, values, window_);
  }
  std::unique_ptr<OpState> make_state(const NodeDef& node,
                                      const std::vector<ValueMeta>& values) const override {
    const Ncl in = ncl_of(values[node.inputs[0]].shape);
    return std::make_unique<History>(in.rows, in.channels, window_.along_time());
  }

 private:
  // Windows over one line: `first_z` is the sequence position of src[0] (positions below 0
  // are left padding), `length` the frames of src, `real_end` where the sequence (and the right
  // padding) begins; torch's divisors: with count_include_pad the window clipped to
  // length + pad, else the real frames.
  float window_value(const float* src, std::int64_t start, std::int64_t first_z,
                     std::int64_t length, std::int64_t real_end) const noexcept {
    const Window& w = window_;
    if (max_) {
      float best = -std::numeric_limits<float>::infinity();
      for (std::int64_t k = 0; k < w.kernel; ++k) {
        const std::int64_t at = start + k * w.dilation, z = first_z + at;
        if (at < 0 || at >= length || z < 0 || z >= real_end) continue;
        const float v = src[at];
        if (v > best || v != v) best = v;  // NaN wins, as in torch
        if (v != v) break;
      }
      return best;
    }
    double sum = 0.0;
    std::int64_t real = 0;
    for (std::int64_t k = 0; k < w.kernel; ++k) {
      const std::int64_t at = start + k, z = first_z + at;
      if (at < 0 || at >= length || z < 0 || z >= real_end) continue;
      sum += src[at];
      ++real;
    }
    const std::int64_t z0 = first_z + start;
    const std::int64_t clipped = std::min(z0 + w.kernel, real_end + w.pad_left) - z0;
    return static_cast<float>(sum / static_cast<double>(include_pad_ ? clipped : real));
  }

  class Run final : public Kernel {
   public:
    Run(const Pool1d& op, int in, int out, Ncl input, std::int64_t out_len, History* history)
        : op_(op), in_(in), out_(out), input_(input), out_len_(out_len), history_(history) {
      if (history) {
        const std::size_t frames = static_cast<std::size_t>(history->context() + input.length);
        extended_.resize(
            checked_mul(static_cast<std::size_t>(input.rows * input.channels), frames));
        offsets_.resize(static_cast<std::size_t>(input.length) + 1);
      }
    }
    void run(const RunContext& ctx) noexcept override {
      const Window& w = op_.window_;
      const float* x = ctx.ptr<const float>(in_);
      float* y = ctx.ptr<float>(out_);
      const std::int64_t lines = input_.rows * input_.channels;
      if (!history_) {
        for (std::int64_t line = 0; line < lines; ++line)
          for (std::int64_t t = 0; t < out_len_; ++t)
            y[line * out_len_ + t] =
                op_.window_value(x + line * input_.length, t * w.stride - w.pad_left, 0,
                                 input_.length, input_.length);
        return;
      }
      // Stream: positions count from the first real frame; the left padding is z < 0.
      const std::int64_t seen = history_->seen();
      const std::int64_t count =
          emitting_offsets(history_->window(), seen, input_.length, offsets_.data());
      if (count != out_len_) fail(ctx, "stream frame count out of step", count);
      extend_with_history(*history_, x, input_, extended_.data());
      history_->advance(input_.length);
      const std::int64_t total = history_->context() + input_.length;
      const std::int64_t first_z = seen - history_->context() - w.pad_left;
      const std::int64_t unbounded = std::numeric_limits<std::int64_t>::max() / 4;
      for (std::int64_t line = 0; line < lines; ++line)
        for (std::int64_t t = 0; t < out_len_; ++t)
          y[line * out_len_ + t] = op_.window_value(extended_.data() + line * total, offsets_[t],
                                                    first_z, total, unbounded);
    }

   private:
    const Pool1d& op_;
    int in_, out_;
    Ncl input_;
    std::int64_t out_len_;
    History* history_;
    AlignedBuffer extended_;
    std::vector<std::int64_t> offsets_;
  };

  Window window_;
  bool max_, ceil_, include_pad_;
};

}  // namespace

std::unique_ptr<Op> make_conv1d(const BuildContext& ctx) { return std::make_unique<Conv1d>(ctx); }
std::unique_ptr<Op> make_pool1d(const BuildContext& ctx) { return std::make_unique<Pool1d>(ctx); }

}  // namespace pyrnn::graph::ops
