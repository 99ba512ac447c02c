// Normalisations: layer norm over trailing axes (the ISA's row kernel) and batch norm at
// inference (per channel on axis 1: y = x * scale + shift, with scale = weight / sqrt(var + eps)
// and shift = bias - mean * scale folded once when the graph is built, as torch's CPU kernel
// does).
#include <cmath>

#include "core/aligned_buffer.h"
#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

class LayerNorm final : public Op {
 public:
  explicit LayerNorm(const BuildContext& ctx)
      : rank_(ctx.attrs().integer("normalized_rank", 1, kMaxRank)),
        eps_(static_cast<float>(ctx.attrs().number("eps"))) {
    ctx.require_inputs(1, 3);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    if (ctx.has(1)) {
      const auto w = ctx.constant(1, "weight");
      if (w.dtype != DType::F32) shape_error("layer_norm: weight must be float32");
      weight_ = w.floats();
      weight_shape_ = w.shape;
      affine_ = true;
    }
    if (ctx.has(2)) {
      const auto b = ctx.constant(2, "bias");
      if (b.dtype != DType::F32) shape_error("layer_norm: bias must be float32");
      if (affine_ && b.shape != weight_shape_)
        shape_error("layer_norm: bias shape " + b.shape.str() + " differs from weight shape " +
                    weight_shape_.str());
      bias_ = b.floats();
      weight_shape_ = b.shape;
      affine_ = true;
    }
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    if (x.shape.rank < rank_)
      shape_error("layer_norm over " + str(rank_) + " trailing dims of a tensor of shape " +
                  x.shape.str());
    if (affine_) {
      bool same = weight_shape_.rank == rank_;
      for (int i = 0; same && i < rank_; ++i)
        same = weight_shape_[i] == x.shape[x.shape.rank - rank_ + i];
      if (!same)
        shape_error("layer_norm: weight of shape " + weight_shape_.str() +
                    " does not match the trailing dims of input " + x.shape.str());
    }
    ctx.set_tensor(0, DType::F32, x.shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Run final : public Kernel {
     public:
      Run(int in, int out, std::size_t rows, std::size_t cols, const float* w, const float* b,
          float eps)
          : in_(in), out_(out), rows_(rows), cols_(cols), w_(w), b_(b), eps_(eps) {}
      void run(const RunContext& ctx) noexcept override {
        ctx.kernels.layer_norm(ctx.ptr<const float>(in_), ctx.ptr<float>(out_), rows_, cols_, w_,
                               b_, eps_);
      }

     private:
      int in_, out_;
      std::size_t rows_, cols_;
      const float *w_, *b_;
      float eps_;
    };
    const Shape& s = ctx.in(0).shape;
    const int split = s.rank - static_cast<int>(rank_);
    return std::make_unique<Run>(
        ctx.in_id(0), ctx.out_id(0), static_cast<std::size_t>(s.span(0, split)),
        static_cast<std::size_t>(s.span(split, s.rank)), weight_, bias_, eps_);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] >= values[node.inputs[0]].shape.rank - rank_)
      shape_error("layer_norm normalises over the time axis, which needs every frame");
    return same_axes(axes, node);
  }

 private:
  std::int64_t rank_;
  float eps_;
  const float* weight_ = nullptr;
  const float* bias_ = nullptr;
  Shape weight_shape_;  // of weight and bias, when either is given
  bool affine_ = false;
};

class BatchNorm final : public Op {
 public:
  explicit BatchNorm(const BuildContext& ctx) {
    ctx.require_inputs(5, 5);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    const double eps = ctx.attrs().number("eps");
    const auto mean = ctx.constant(3, "running_mean");
    const auto var = ctx.constant(4, "running_var");
    channels_ = mean.shape.rank == 1 ? mean.shape[0] : -1;
    const auto check = [&](const BuildContext::ConstantView& c, const char* role) {
      if (c.dtype != DType::F32 || c.shape.rank != 1 || c.shape[0] != channels_)
        shape_error(std::string("batch_norm: ") + role + " must be float32 of shape (" +
                    str(channels_) + ",), got " + c.shape.str());
    };
    if (channels_ < 0) shape_error("batch_norm: running_mean must be 1-D");
    check(mean, "running_mean");
    check(var, "running_var");
    scale_.resize(static_cast<std::size_t>(channels_));
    shift_.resize(static_cast<std::size_t>(channels_));
    const float* w = ctx.has(1) ? ctx.constant(1, "weight").floats() : nullptr;
    const float* b = ctx.has(2) ? ctx.constant(2, "bias").floats() : nullptr;
    if (w) check(ctx.constant(1, "weight"), "weight");
    if (b) check(ctx.constant(2, "bias"), "bias");
    for (std::int64_t c = 0; c < channels_; ++c) {
      const float inv =
          static_cast<float>(1.0 / std::sqrt(static_cast<double>(var.floats()[c]) + eps));
      const float scale = inv * (w ? w[c] : 1.0f);
      scale_.data()[c] = scale;
      shift_.data()[c] = (b ? b[c] : 0.0f) - mean.floats()[c] * scale;
    }
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    if (x.shape.rank < 2 || x.shape[1] != channels_)
      shape_error("batch_norm: expected input (N, " + str(channels_) + ", ...), got " +
                  x.shape.str());
    ctx.set_tensor(0, DType::F32, x.shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Run final : public Kernel {
     public:
      Run(int in, int out, std::int64_t outer, std::int64_t channels, std::int64_t inner,
          const float* scale, const float* shift)
          : in_(in),
            out_(out),
            outer_(outer),
            channels_(channels),
            inner_(inner),
            scale_(scale),
            shift_(shift) {}
      void run(const RunContext& ctx) noexcept override {
        const float* x = ctx.ptr<const float>(in_);
        float* y = ctx.ptr<float>(out_);
        for (std::int64_t o = 0; o < outer_; ++o)
          for (std::int64_t c = 0; c < channels_; ++c) {
            const std::int64_t at = (o * channels_ + c) * inner_;
            for (std::int64_t i = 0; i < inner_; ++i) y[at + i] = x[at + i] * scale_[c] + shift_[c];
          }
      }

     private:
      int in_, out_;
      std::int64_t outer_, channels_, inner_;
      const float *scale_, *shift_;
    };
    const Shape& s = ctx.in(0).shape;
    return std::make_unique<Run>(ctx.in_id(0), ctx.out_id(0), s[0], s[1], s.span(2, s.rank),
                                 scale_.data(), shift_.data());
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    if (axes[0] == 1) shape_error("batch_norm's channel axis carries time");
    return same_axes(axes, node);
  }

 private:
  std::int64_t channels_ = 0;
  AlignedBuffer scale_, shift_;
};

}  // namespace

std::unique_ptr<Op> make_norm(const BuildContext& ctx) {
  if (ctx.node().op == "layer_norm") return std::make_unique<LayerNorm>(ctx);
  return std::make_unique<BatchNorm>(ctx);
}

}  // namespace pyrnn::graph::ops
