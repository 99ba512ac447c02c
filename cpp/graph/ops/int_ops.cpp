// Ops over ints: the size of a tensor's axis and integer arithmetic on sizes. They are
// evaluated while a plan infers shapes; nothing of them runs afterwards.
#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

class Size final : public Op {
 public:
  explicit Size(const BuildContext& ctx) : dim_(ctx.attrs().integer("dim")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void infer(InferContext& ctx) const override {
    const Shape& shape = ctx.in(0).shape;
    if (shape.rank == 0) shape_error("size: a scalar has no axes");
    ctx.set_int(0, shape[normalize_axis(dim_, shape.rank, "dim")]);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext&) const override { return nullptr; }
  TimeFlow time_flow(const std::vector<int>&, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    return {std::vector<int>(node.outputs.size(), -1), false};
  }

 private:
  std::int64_t dim_;
};

class IntArithmetic final : public Op {
 public:
  explicit IntArithmetic(const BuildContext& ctx) : op_(ctx.node().op) {
    ctx.require_inputs(2, 2);
    ctx.require_outputs(1);
    ctx.require_int(0, "a");
    ctx.require_int(1, "b");
  }
  void infer(InferContext& ctx) const override {
    const std::int64_t a = ctx.integer(0), b = ctx.integer(1);
    std::int64_t result = 0;
    bool overflow = false;
    if (op_ == "int_add") {
      overflow = __builtin_add_overflow(a, b, &result);
    } else if (op_ == "int_sub") {
      overflow = __builtin_sub_overflow(a, b, &result);
    } else if (op_ == "int_mul") {
      overflow = __builtin_mul_overflow(a, b, &result);
    } else {
      if (b == 0) shape_error("integer division by zero");
      if (a == INT64_MIN && b == -1) overflow = true;
      // Python's floor division: rounds toward minus infinity.
      result = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) --result;
    }
    if (overflow) shape_error(op_ + " of " + str(a) + " and " + str(b) + " overflows 64 bits");
    ctx.set_int(0, result);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext&) const override { return nullptr; }
  TimeFlow time_flow(const std::vector<int>&, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    return {std::vector<int>(node.outputs.size(), -1), false};
  }

 private:
  std::string op_;
};

}  // namespace

std::unique_ptr<Op> make_int_op(const BuildContext& ctx) {
  if (ctx.node().op == "size") return std::make_unique<Size>(ctx);
  return std::make_unique<IntArithmetic>(ctx);
}

}  // namespace pyrnn::graph::ops
