// Reductions over axes (sum, mean, amax, p-norms) and softmax / log-softmax along one axis.
// Sums accumulate in double: the float result is then as close to exact as it can be, which
// keeps pyrnn within float tolerance of torch whatever torch's own summation order.
#include <cmath>
#include <limits>

#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

enum class Reduce { Sum, Mean, Amax, Norm };

class Reduction final : public Op {
 public:
  explicit Reduction(const BuildContext& ctx)
      : dims_(ctx.attrs().integers("dims")), keepdim_(ctx.attrs().boolean("keepdim")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    const std::string& op = ctx.node().op;
    kind_ = op == "sum"    ? Reduce::Sum
            : op == "mean" ? Reduce::Mean
            : op == "amax" ? Reduce::Amax
                           : Reduce::Norm;
    if (kind_ == Reduce::Norm) ord_ = ctx.attrs().number("ord");
  }
  std::vector<bool> reduced(int rank) const {
    std::vector<bool> mask(rank, dims_.empty());
    for (std::int64_t d : dims_) {
      const int a = normalize_axis(d, rank, "dim");
      if (rank > 0) {
        if (mask[a] && !dims_.empty()) shape_error("dim " + str(d) + " appears twice");
        mask[a] = true;
      }
    }
    return mask;
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    const std::vector<bool> mask = reduced(x.shape.rank);
    Shape out;
    for (int i = 0; i < x.shape.rank; ++i) {
      if (!mask[i]) {
        out.push_back(x.shape[i]);
      } else {
        if (kind_ == Reduce::Amax && x.shape[i] == 0)
          shape_error("amax over an empty dim " + str(i));
        if (keepdim_) out.push_back(1);
      }
    }
    ctx.set_tensor(0, DType::F32, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    const std::vector<bool> mask = reduced(values[node.inputs[0]].shape.rank);
    if (mask[axes[0]])
      shape_error(node.op + " over the time axis needs every frame of the sequence");
    int at = axes[0];
    if (!keepdim_)
      for (int i = 0; i < axes[0]; ++i) at -= mask[i] ? 1 : 0;
    return {{at}, false};
  }

  Reduce kind() const noexcept { return kind_; }
  double ord() const noexcept { return ord_; }

 private:
  std::vector<std::int64_t> dims_;
  bool keepdim_;
  Reduce kind_ = Reduce::Sum;
  double ord_ = 2.0;
};

// Walks kept axes (outer) and reduced axes (inner) with precomputed input strides.
class ReductionKernel final : public Kernel {
 public:
  ReductionKernel(const Reduction& op, int in, int out, const Shape& shape,
                  const std::vector<bool>& mask)
      : kind_(op.kind()), ord_(op.ord()), in_(in), out_(out) {
    std::int64_t stride = 1;
    std::vector<std::int64_t> strides(shape.rank);
    for (int i = shape.rank - 1; i >= 0; --i) {
      strides[i] = stride;
      stride *= shape[i];
    }
    for (int i = 0; i < shape.rank; ++i) {
      if (shape[i] == 1) continue;
      (mask[i] ? reduced_ : kept_).push_back({shape[i], strides[i]});
    }
    count_ = 1;
    for (const Axis& a : reduced_) count_ *= a.extent;
    outputs_ = 1;
    for (const Axis& a : kept_) outputs_ *= a.extent;
  }
  void run(const RunContext& ctx) noexcept override {
    const float* x = ctx.ptr<const float>(in_);
    float* y = ctx.ptr<float>(out_);
    for (std::int64_t o = 0; o < outputs_; ++o) y[o] = reduce(x + offset(kept_, o));
  }

 private:
  struct Axis {
    std::int64_t extent, stride;
  };
  // Input offset of the i-th element (row-major) over `axes`.
  static std::int64_t offset(const std::vector<Axis>& axes, std::int64_t i) noexcept {
    std::int64_t at = 0;
    for (auto a = axes.rbegin(); a != axes.rend(); ++a) {
      at += (i % a->extent) * a->stride;
      i /= a->extent;
    }
    return at;
  }
  float reduce(const float* x) const noexcept {
    double acc = kind_ == Reduce::Amax ? -std::numeric_limits<double>::infinity() : 0.0;
    const bool inf_norm = kind_ == Reduce::Norm && std::isinf(ord_);
    if (inf_norm) acc = ord_ > 0 ? 0.0 : std::numeric_limits<double>::infinity();
    for (std::int64_t r = 0; r < count_; ++r) {
      const double v = x[offset(reduced_, r)];
      if (std::isnan(v)) return std::numeric_limits<float>::quiet_NaN();
      switch (kind_) {
        case Reduce::Sum:
        case Reduce::Mean:
          acc += v;
          break;
        case Reduce::Amax:
          acc = v > acc ? v : acc;
          break;
        case Reduce::Norm: {
          const double m = std::fabs(v);
          if (inf_norm) {
            acc = ord_ > 0 ? (m > acc ? m : acc) : (m < acc ? m : acc);
          } else if (ord_ == 0.0) {
            acc += m != 0.0 ? 1.0 : 0.0;
          } else if (ord_ == 1.0) {
            acc += m;
          } else if (ord_ == 2.0) {
            acc += m * m;
          } else {
            acc += std::pow(m, ord_);
          }
          break;
        }
      }
    }
    if (kind_ == Reduce::Mean) {
      acc = count_ ? acc / static_cast<double>(count_) : std::numeric_limits<double>::quiet_NaN();
    } else if (kind_ == Reduce::Norm && !inf_norm && ord_ != 0.0 && ord_ != 1.0) {
      acc = ord_ == 2.0 ? std::sqrt(acc) : std::pow(acc, 1.0 / ord_);
    }
    return static_cast<float>(acc);
  }

  Reduce kind_;
  double ord_;
  int in_, out_;
  std::vector<Axis> kept_, reduced_;
  std::int64_t count_ = 1, outputs_ = 1;
};

std::unique_ptr<Kernel> Reduction::prepare(const PrepareContext& ctx) const {
  const Shape& shape = ctx.in(0).shape;
  return std::make_unique<ReductionKernel>(*this, ctx.in_id(0), ctx.out_id(0), shape,
                                           reduced(shape.rank));
}

class Softmax final : public Op {
 public:
  explicit Softmax(const BuildContext& ctx)
      : dim_(ctx.attrs().integer("dim")), log_(ctx.node().op == "log_softmax") {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void infer(InferContext& ctx) const override {
    require_f32(ctx.in(0), "x");
    normalize_axis(dim_, ctx.in(0).shape.rank, "dim");
    ctx.set_tensor(0, DType::F32, ctx.in(0).shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const Shape& shape = ctx.in(0).shape;
    const int axis = shape.rank ? normalize_axis(dim_, shape.rank, "dim") : 0;
    const std::int64_t n = shape.rank ? shape[axis] : 1;
    const std::int64_t inner = shape.rank ? shape.span(axis + 1, shape.rank) : 1;
    const std::int64_t outer = shape.rank ? shape.span(0, axis) : 1;
    return std::make_unique<Run>(ctx.in_id(0), ctx.out_id(0), outer, n, inner, log_);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] >= 0 && normalize_axis(dim_, values[node.inputs[0]].shape.rank, "dim") == axes[0])
      shape_error(node.op + " along the time axis needs every frame of the sequence");
    return same_axes(axes, node);
  }

 private:
  // Along the last axis the ISA's row kernel runs; along another, a strided loop.
  class Run final : public Kernel {
   public:
    Run(int in, int out, std::int64_t outer, std::int64_t n, std::int64_t inner, bool log)
        : in_(in), out_(out), outer_(outer), n_(n), inner_(inner), log_(log) {}
    void run(const RunContext& ctx) noexcept override {
      const float* x = ctx.ptr<const float>(in_);
      float* y = ctx.ptr<float>(out_);
      if (inner_ == 1) {
        ctx.kernels.softmax(x, y, static_cast<std::size_t>(outer_), static_cast<std::size_t>(n_),
                            log_);
        return;
      }
      for (std::int64_t o = 0; o < outer_; ++o) {
        for (std::int64_t i = 0; i < inner_; ++i) {
          const float* in = x + o * n_ * inner_ + i;
          float* out = y + o * n_ * inner_ + i;
          float top = -std::numeric_limits<float>::infinity();
          for (std::int64_t k = 0; k < n_; ++k) top = in[k * inner_] > top ? in[k * inner_] : top;
          double sum = 0.0;
          for (std::int64_t k = 0; k < n_; ++k) sum += std::exp(in[k * inner_] - top);
          // As the row kernels: (x - max) - log(sum), log(sum) as log1p of all but the max.
          const float log_sum = static_cast<float>(std::log1p(sum - 1.0));
          for (std::int64_t k = 0; k < n_; ++k)
            out[k * inner_] = log_ ? (in[k * inner_] - top) - log_sum
                                   : static_cast<float>(std::exp(in[k * inner_] - top) / sum);
        }
      }
    }

   private:
    int in_, out_;
    std::int64_t outer_, n_, inner_;
    bool log_;
  };

  std::int64_t dim_;
  bool log_;
};

}  // namespace

std::unique_ptr<Op> make_reduction(const BuildContext& ctx) {
  return std::make_unique<Reduction>(ctx);
}
std::unique_ptr<Op> make_softmax(const BuildContext& ctx) { return std::make_unique<Softmax>(ctx); }

}  // namespace pyrnn::graph::ops
