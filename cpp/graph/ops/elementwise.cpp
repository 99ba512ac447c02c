// Element-wise ops: activations (one input) and arithmetic with numpy/torch broadcasting (two
// inputs). The arithmetic itself is the ISA's kernel table (unary, binary); here the shapes are
// matched and the broadcast loop is planned once per shape.
#include <map>

#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

struct UnaryInfo {
  UnaryOp op;
  UnaryParams params;
};

UnaryInfo unary_info(const BuildContext& ctx) {
  const std::string& name = ctx.node().op;
  const Attrs& a = ctx.attrs();
  static const std::map<std::string, UnaryOp> kPlain = {
      {"relu", UnaryOp::Relu}, {"sigmoid", UnaryOp::Sigmoid}, {"tanh", UnaryOp::Tanh},
      {"silu", UnaryOp::Silu}, {"neg", UnaryOp::Neg},         {"exp", UnaryOp::Exp},
      {"log", UnaryOp::Log},   {"sqrt", UnaryOp::Sqrt},       {"rsqrt", UnaryOp::Rsqrt},
      {"abs", UnaryOp::Abs}};
  if (const auto found = kPlain.find(name); found != kPlain.end()) return {found->second, {}};
  const auto f = [&](const char* key) { return static_cast<float>(a.number(key)); };
  if (name == "gelu") {
    const std::string& approximate = a.text("approximate");
    if (approximate == "none") return {UnaryOp::Gelu, {}};
    if (approximate == "tanh") return {UnaryOp::GeluTanh, {}};
    shape_error("attribute 'approximate': expected 'none' or 'tanh', got '" + approximate + "'");
  }
  if (name == "leaky_relu") return {UnaryOp::LeakyRelu, {f("negative_slope"), 0.0f, 0.0f}};
  if (name == "elu") return {UnaryOp::Elu, {f("alpha"), f("scale"), f("input_scale")}};
  if (name == "hardtanh") {
    const UnaryParams p{f("min_val"), f("max_val"), 0.0f};
    if (!(p.a <= p.b)) shape_error("hardtanh: min_val is greater than max_val");
    return {UnaryOp::Hardtanh, p};
  }
  if (name == "softplus") {
    const UnaryParams p{f("beta"), f("threshold"), 0.0f};
    if (p.a == 0.0f) shape_error("softplus: beta must not be 0");
    return {UnaryOp::Softplus, p};
  }
  shape_error("unknown activation '" + name + "'");
}

class Unary final : public Op {
 public:
  explicit Unary(const BuildContext& ctx) : info_(unary_info(ctx)) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void infer(InferContext& ctx) const override {
    require_f32(ctx.in(0), "x");
    ctx.set_tensor(0, DType::F32, ctx.in(0).shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Apply final : public Kernel {
     public:
      Apply(UnaryInfo info, int in, int out, std::size_t n)
          : info_(info), in_(in), out_(out), n_(n) {}
      void run(const RunContext& ctx) noexcept override {
        ctx.kernels.unary(info_.op, info_.params, ctx.ptr<const float>(in_), ctx.ptr<float>(out_),
                          n_);
      }

     private:
      UnaryInfo info_;
      int in_, out_;
      std::size_t n_;
    };
    return std::make_unique<Apply>(info_, ctx.in_id(0), ctx.out_id(0),
                                   static_cast<std::size_t>(ctx.in(0).shape.numel()));
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    return same_axes(axes, node);
  }

 private:
  UnaryInfo info_;
};

// Broadcasting, planned: the output's axes with, for each input, its element stride along each
// (0 where it is broadcast), adjacent axes merged where both inputs allow, so the innermost run
// is as long as possible for the binary kernel.
struct BroadcastLoop {
  std::vector<std::int64_t> extents;  // outer axes, outermost first
  std::vector<std::int64_t> a_strides, b_strides;
  std::int64_t inner = 1;                 // elements per kernel call
  std::ptrdiff_t a_step = 0, b_step = 0;  // 0 or 1 within the inner run
};

Shape broadcast_shape(const Shape& a, const Shape& b) {
  Shape out;
  const int rank = a.rank > b.rank ? a.rank : b.rank;
  for (int i = 0; i < rank; ++i) {
    const int ia = i - (rank - a.rank), ib = i - (rank - b.rank);
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      shape_error("shapes " + a.str() + " and " + b.str() + " do not broadcast (dim " + str(i) +
                  ": " + str(da) + " vs " + str(db) + ")");
    out.push_back(da == 1 ? db : da);
  }
  return out;
}

BroadcastLoop plan_broadcast(const Shape& a, const Shape& b, const Shape& out) {
  const int rank = out.rank;
  // Per output axis: extent and each input's element stride (0 when broadcast).
  std::vector<std::int64_t> ext(rank), sa(rank), sb(rank);
  std::int64_t stride_a = 1, stride_b = 1;
  for (int i = rank - 1; i >= 0; --i) {
    const int ia = i - (rank - a.rank), ib = i - (rank - b.rank);
    const std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    ext[i] = out[i];
    sa[i] = da == 1 ? 0 : stride_a;
    sb[i] = db == 1 ? 0 : stride_b;
    stride_a *= da;
    stride_b *= db;
  }
  // Merge axis i into i+1 (inner) when each input's strides stay consistent across them.
  std::vector<std::int64_t> me, ma, mb;
  for (int i = 0; i < rank; ++i) {
    if (ext[i] == 1) continue;
    if (!me.empty()) {
      const std::size_t k = me.size() - 1;
      const bool a_ok = ma[k] == sa[i] * ext[i];
      const bool b_ok = mb[k] == sb[i] * ext[i];
      if (a_ok && b_ok) {
        me[k] *= ext[i];
        ma[k] = sa[i];
        mb[k] = sb[i];
        continue;
      }
    }
    me.push_back(ext[i]);
    ma.push_back(sa[i]);
    mb.push_back(sb[i]);
  }
  BroadcastLoop loop;
  if (!me.empty() && (ma.back() == 0 || ma.back() == 1) && (mb.back() == 0 || mb.back() == 1)) {
    loop.inner = me.back();
    loop.a_step = ma.back();
    loop.b_step = mb.back();
    me.pop_back();
    ma.pop_back();
    mb.pop_back();
  }
  loop.extents = me;
  loop.a_strides = ma;
  loop.b_strides = mb;
  return loop;
}

// Integer arithmetic on index tensors (int64 add, sub, mul), wrapping like torch's.
void binary_int64(BinaryOp op, const std::int64_t* a, std::ptrdiff_t a_step, const std::int64_t* b,
                  std::ptrdiff_t b_step, std::int64_t* y, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const auto u = static_cast<std::uint64_t>(a[static_cast<std::ptrdiff_t>(i) * a_step]);
    const auto v = static_cast<std::uint64_t>(b[static_cast<std::ptrdiff_t>(i) * b_step]);
    const std::uint64_t r = op == BinaryOp::Add ? u + v : op == BinaryOp::Sub ? u - v : u * v;
    y[i] = static_cast<std::int64_t>(r);
  }
}

class BinaryKernelRun final : public Kernel {
 public:
  BinaryKernelRun(BinaryOp op, int a, int b, int out, BroadcastLoop loop, std::int64_t total,
                  DType dtype)
      : op_(op), a_(a), b_(b), out_(out), loop_(std::move(loop)), total_(total), dtype_(dtype) {}
  void run(const RunContext& ctx) noexcept override {
    if (dtype_ == DType::I64) {
      walk(
          ctx.ptr<const std::int64_t>(a_), ctx.ptr<const std::int64_t>(b_),
          ctx.ptr<std::int64_t>(out_),
          [this](const std::int64_t* a, std::ptrdiff_t sa, const std::int64_t* b, std::ptrdiff_t sb,
                 std::int64_t* y, std::size_t n) { binary_int64(op_, a, sa, b, sb, y, n); });
    } else {
      walk(ctx.ptr<const float>(a_), ctx.ptr<const float>(b_), ctx.ptr<float>(out_),
           [this, &ctx](const float* a, std::ptrdiff_t sa, const float* b, std::ptrdiff_t sb,
                        float* y, std::size_t n) { ctx.kernels.binary(op_, a, sa, b, sb, y, n); });
    }
  }

 private:
  // The broadcast loop: `inner` elements per call of `apply`, outer axes by odometer.
  template <class T, class Apply>
  void walk(const T* a, const T* b, T* y, Apply apply) const noexcept {
    if (total_ == 0) return;
    const int rank = static_cast<int>(loop_.extents.size());
    std::int64_t index[kMaxRank] = {};
    std::int64_t oa = 0, ob = 0;
    for (std::int64_t done = 0; done < total_; done += loop_.inner) {
      apply(a + oa, loop_.a_step, b + ob, loop_.b_step, y + done,
            static_cast<std::size_t>(loop_.inner));
      for (int axis = rank - 1; axis >= 0; --axis) {
        oa += loop_.a_strides[axis];
        ob += loop_.b_strides[axis];
        if (++index[axis] < loop_.extents[axis]) break;
        oa -= loop_.a_strides[axis] * loop_.extents[axis];
        ob -= loop_.b_strides[axis] * loop_.extents[axis];
        index[axis] = 0;
      }
    }
  }

  BinaryOp op_;
  int a_, b_, out_;
  BroadcastLoop loop_;
  std::int64_t total_;
  DType dtype_;
};

class Binary final : public Op {
 public:
  explicit Binary(const BuildContext& ctx) {
    ctx.require_inputs(2, 2);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "a");
    ctx.require_tensor(1, "b");
    const std::string& name = ctx.node().op;
    op_ = name == "add"   ? BinaryOp::Add
          : name == "sub" ? BinaryOp::Sub
          : name == "mul" ? BinaryOp::Mul
                          : BinaryOp::Div;
  }
  void infer(InferContext& ctx) const override {
    const DType type = ctx.in(0).dtype;
    if (ctx.in(1).dtype != type)
      shape_error(std::string("operands differ in dtype: ") + dtype_name(type) + " and " +
                  dtype_name(ctx.in(1).dtype));
    if (type == DType::I64 && op_ == BinaryOp::Div)
      shape_error("div of int64 tensors (true division makes floats; not supported)");
    ctx.set_tensor(0, type, broadcast_shape(ctx.in(0).shape, ctx.in(1).shape));
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const Shape& out = ctx.out(0).shape;
    return std::make_unique<BinaryKernelRun>(op_, ctx.in_id(0), ctx.in_id(1), ctx.out_id(0),
                                             plan_broadcast(ctx.in(0).shape, ctx.in(1).shape, out),
                                             out.numel(), ctx.in(0).dtype);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    const int rank = values[node.outputs[0]].shape.rank;
    int time = -1;
    for (int i = 0; i < 2; ++i) {
      if (axes[i] < 0) continue;
      const int mapped = axes[i] + rank - values[node.inputs[i]].shape.rank;
      if (time >= 0 && time != mapped) shape_error("its inputs carry time on different axes");
      time = mapped;
    }
    return {{time}, false};
  }

 private:
  BinaryOp op_ = BinaryOp::Add;
};

}  // namespace

std::unique_ptr<Op> make_unary(const BuildContext& ctx) { return std::make_unique<Unary>(ctx); }
std::unique_ptr<Op> make_binary(const BuildContext& ctx) { return std::make_unique<Binary>(ctx); }

}  // namespace pyrnn::graph::ops
