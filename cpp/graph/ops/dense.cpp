// Linear layers (through the same packed panels and SIMD GEMM as the recurrent input
// projection) and embedding lookups.
#include <algorithm>

#include "core/aligned_buffer.h"
#include "core/packed_panels.h"
#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

// Rows per GEMM call: bounds the padded scratch (rows x padded M floats) however many rows.
constexpr std::int64_t kLinearChunkRows = 256;

class Linear final : public Op {
 public:
  explicit Linear(const BuildContext& ctx) {
    ctx.require_inputs(2, 3);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    const auto w = ctx.weight_info(1, "weight");
    if (w.dtype == DType::I64 || w.shape.rank != 2)
      shape_error("linear: weight must be a 2-D float32 (or float16, bfloat16, int8) tensor, got " +
                  std::string(dtype_name(w.dtype)) + " " + w.shape.str());
    if (w.shape[0] > INT32_MAX || w.shape[1] > INT32_MAX)
      shape_error("linear: weight " + w.shape.str() + " exceeds the core's limit of 2^31-1");
    out_features_ = static_cast<int>(w.shape[0]);
    in_features_ = static_cast<int>(w.shape[1]);
    const float* b = nullptr;
    if (ctx.has(2)) {
      const auto bias = ctx.constant(2, "bias");
      if (bias.dtype != DType::F32 || bias.shape.rank != 1 || bias.shape[0] != out_features_)
        shape_error("linear: bias must be float32 of shape (" + str(out_features_) + ",), got " +
                    bias.shape.str());
      b = bias.floats();
    }
    panels_ = std::move(ctx.pack(1, "weight", {1, out_features_, in_features_, 1}).front());
    bias_ = pack_bias(b, nullptr, 1, out_features_);
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    require_f32(x, "x");
    if (x.shape.rank < 1 || x.shape[x.shape.rank - 1] != in_features_)
      shape_error("linear: expected input (..., " + str(in_features_) + "), got " + x.shape.str());
    Shape out = x.shape;
    out[out.rank - 1] = out_features_;
    ctx.set_tensor(0, DType::F32, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] >= 0 && axes[0] == values[node.inputs[0]].shape.rank - 1)
      shape_error("linear over the time axis needs every frame");
    return same_axes(axes, node);
  }

  bool read_weight(const NodeDef&, int operand, void* out) const override {
    if (operand != 1) return false;
    panels_.unpack(out);
    return true;
  }

  const PackedPanels& panels() const noexcept { return panels_; }
  const float* bias() const noexcept { return bias_.data(); }
  int in_features() const noexcept { return in_features_; }
  int out_features() const noexcept { return out_features_; }

 private:
  int in_features_ = 0, out_features_ = 0;
  PackedPanels panels_;
  AlignedBuffer bias_;
};

// y (rows, M) = x (rows, K) W^T + b. The GEMM writes whole 16-unit blocks: when M is not a
// multiple of 16 it writes into padded scratch, then the M real columns are copied out.
class LinearKernel final : public Kernel {
 public:
  LinearKernel(const Linear& op, int in, int out, std::int64_t rows)
      : op_(op), in_(in), out_(out), rows_(rows) {
    const int M = op.out_features();
    if (M % kUnitBlock != 0)
      scratch_.resize(checked_mul(static_cast<std::size_t>(std::min(rows, kLinearChunkRows)),
                                  static_cast<std::size_t>(padded_units(M))));
  }
  void run(const RunContext& ctx) noexcept override {
    const float* x = ctx.ptr<const float>(in_);
    float* y = ctx.ptr<float>(out_);
    const int K = op_.in_features(), M = op_.out_features();
    const int padded = padded_units(M);
    const bool direct = scratch_.size() == 0;
    const std::int64_t chunk = direct ? std::int64_t{1} << 20 : kLinearChunkRows;
    for (std::int64_t r0 = 0; r0 < rows_; r0 += chunk) {
      const int m = static_cast<int>(std::min(chunk, rows_ - r0));
      float* c = direct ? y + r0 * M : scratch_.data();
      ctx.kernels.gemm({x + r0 * K, K, m, &op_.panels(), op_.bias(), c, direct ? M : padded, 0,
                        op_.panels().blocks()});
      if (!direct)
        for (int r = 0; r < m; ++r)
          std::memcpy(y + (r0 + r) * M, c + static_cast<std::ptrdiff_t>(r) * padded,
                      static_cast<std::size_t>(M) * sizeof(float));
    }
  }

 private:
  const Linear& op_;
  int in_, out_;
  std::int64_t rows_;
  AlignedBuffer scratch_;
};

std::unique_ptr<Kernel> Linear::prepare(const PrepareContext& ctx) const {
  const Shape& s = ctx.in(0).shape;
  return std::make_unique<LinearKernel>(*this, ctx.in_id(0), ctx.out_id(0), s.span(0, s.rank - 1));
}

class Embedding final : public Op {
 public:
  explicit Embedding(const BuildContext& ctx) {
    ctx.require_inputs(2, 2);
    ctx.require_outputs(1);
    ctx.require_tensor(1, "indices");
    const auto w = ctx.constant(0, "weight");
    if (w.dtype != DType::F32 || w.shape.rank != 2)
      shape_error("embedding: weight must be a 2-D float32 tensor, got " + w.shape.str());
    rows_ = w.shape[0];
    dim_ = w.shape[1];
    weight_ = w.floats();
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& indices = ctx.in(1);
    if (indices.dtype != DType::I64)
      shape_error("embedding: indices must be int64, got " +
                  std::string(dtype_name(indices.dtype)));
    Shape out = indices.shape;
    out.push_back(dim_);
    ctx.set_tensor(0, DType::F32, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Run final : public Kernel {
     public:
      Run(const Embedding& op, int in, int out, std::int64_t count)
          : op_(op), in_(in), out_(out), count_(count) {}
      void run(const RunContext& ctx) noexcept override {
        const std::int64_t* index = ctx.ptr<const std::int64_t>(in_);
        float* y = ctx.ptr<float>(out_);
        const std::size_t row = static_cast<std::size_t>(op_.dim_) * sizeof(float);
        for (std::int64_t i = 0; i < count_; ++i) {
          float* dst = y + i * op_.dim_;
          if (index[i] < 0 || index[i] >= op_.rows_) {
            std::memset(dst, 0, row);
            fail(ctx, "embedding index out of range", index[i]);
          } else {
            std::memcpy(dst, op_.weight_ + index[i] * op_.dim_, row);
          }
        }
      }

     private:
      const Embedding& op_;
      int in_, out_;
      std::int64_t count_;
    };
    return std::make_unique<Run>(*this, ctx.in_id(1), ctx.out_id(0), ctx.in(1).shape.numel());
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    (void)node;
    return {{axes[1]}, false};
  }

  std::int64_t rows() const noexcept { return rows_; }

 private:
  std::int64_t rows_ = 0, dim_ = 0;
  const float* weight_ = nullptr;
};

}  // namespace

std::unique_ptr<Op> make_linear(const BuildContext& ctx) { return std::make_unique<Linear>(ctx); }
std::unique_ptr<Op> make_embedding(const BuildContext& ctx) {
  return std::make_unique<Embedding>(ctx);
}

}  // namespace pyrnn::graph::ops
