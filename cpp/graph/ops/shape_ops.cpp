// Ops that move elements without arithmetic: reshapes and views, permutations, selections and
// slices, concatenation, and filled tensors. Where the result is a contiguous run of the input's
// bytes the plan makes it a view (no kernel, no copy); otherwise a kernel copies slabs.
#include <algorithm>
#include <numeric>

#include "graph/ops/common.h"

namespace pyrnn::graph::ops {
namespace {

std::size_t esize(const ValueMeta& meta) { return dtype_size(meta.dtype); }

// Where the time axis of `in` lands in `out` when only the grouping of axes changes: the output
// axis with the same extent and the same number of elements before it.
int regrouped_time_axis(const Shape& in, int axis, const Shape& out, const std::string& op) {
  const std::int64_t before = in.span(0, axis);
  for (int j = 0; j < out.rank; ++j)
    if (out[j] == in[axis] && out.span(0, j) == before) return j;
  shape_error(op + " merges or splits the time axis, so its result is not frame by frame");
}

// -- pure views ------------------------------------------------------------------------------

class ViewOp : public Op {
 public:
  std::optional<std::int64_t> view_offset(const ValueMeta&, const ValueMeta&, const NodeDef&,
                                          const std::vector<ValueMeta>&) const override {
    return 0;
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext&) const override { return nullptr; }
};

class Identity final : public ViewOp {
 public:
  explicit Identity(const BuildContext& ctx) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void infer(InferContext& ctx) const override {
    ctx.set_tensor(0, ctx.in(0).dtype, ctx.in(0).shape);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    return same_axes(axes, node);
  }
};

class Reshape final : public ViewOp {
 public:
  explicit Reshape(const BuildContext& ctx) {
    ctx.require_inputs(1, 1 + kMaxRank);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    for (int i = 1; i < ctx.inputs(); ++i) ctx.require_int(i, "dim");
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    Shape shape;
    int free_axis = -1;
    std::int64_t known = 1;
    for (int i = 1; i < ctx.inputs(); ++i) {
      const std::int64_t d = ctx.integer(i);
      if (d == -1) {
        if (free_axis >= 0) shape_error("reshape: only one dim may be -1");
        free_axis = i - 1;
      } else if (d < 0) {
        shape_error("reshape: invalid dim " + str(d));
      } else if (d != 0 && known > (std::int64_t{1} << 62) / d) {
        shape_error("reshape: target shape too large");
      } else {
        known *= d;
      }
      shape.push_back(d);
    }
    const std::int64_t total = x.shape.numel();
    if (free_axis >= 0) {
      if (known == 0 || total % known != 0)
        shape_error("reshape: cannot infer the -1 dim of a tensor of shape " + x.shape.str());
      shape[free_axis] = total / known;
    } else if (known != total) {
      shape_error("reshape: shape " + shape.str() + " does not fit " + str(total) +
                  " elements (input " + x.shape.str() + ")");
    }
    ctx.set_tensor(0, x.dtype, shape);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    return {{regrouped_time_axis(values[node.inputs[0]].shape, axes[0],
                                 values[node.outputs[0]].shape, "reshape")},
            false};
  }
};

class Flatten final : public ViewOp {
 public:
  explicit Flatten(const BuildContext& ctx)
      : start_(ctx.attrs().integer("start_dim")), end_(ctx.attrs().integer("end_dim")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    if (x.shape.rank == 0) {
      Shape one;
      one.push_back(1);
      ctx.set_tensor(0, x.dtype, one);
      return;
    }
    const int start = normalize_axis(start_, x.shape.rank, "start_dim");
    const int end = normalize_axis(end_, x.shape.rank, "end_dim");
    if (start > end) shape_error("flatten: start_dim comes after end_dim");
    Shape shape;
    for (int i = 0; i < start; ++i) shape.push_back(x.shape[i]);
    shape.push_back(x.shape.span(start, end + 1));
    for (int i = end + 1; i < x.shape.rank; ++i) shape.push_back(x.shape[i]);
    ctx.set_tensor(0, x.dtype, shape);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    return {{regrouped_time_axis(values[node.inputs[0]].shape, axes[0],
                                 values[node.outputs[0]].shape, "flatten")},
            false};
  }

 private:
  std::int64_t start_, end_;
};

class Squeeze final : public ViewOp {
 public:
  explicit Squeeze(const BuildContext& ctx) : dims_(ctx.attrs().integers("dims")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  // Axes removed: those listed (or all) whose extent is 1. In a stream the time axis is never
  // removed, although a one-frame step has extent 1 there.
  std::vector<bool> removed(const ValueMeta& x) const {
    std::vector<bool> drop(x.shape.rank, dims_.empty());
    for (std::int64_t d : dims_)
      if (x.shape.rank > 0) drop[normalize_axis(d, x.shape.rank, "dim")] = true;
    for (int i = 0; i < x.shape.rank; ++i) drop[i] = drop[i] && x.shape[i] == 1 && i != x.time_axis;
    return drop;
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    const std::vector<bool> drop = removed(x);
    Shape shape;
    for (int i = 0; i < x.shape.rank; ++i)
      if (!drop[i]) shape.push_back(x.shape[i]);
    ctx.set_tensor(0, x.dtype, shape);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    ValueMeta x = values[node.inputs[0]];
    x.time_axis = axes[0];
    const std::vector<bool> drop = removed(x);
    return {{static_cast<int>(std::count(drop.begin(), drop.begin() + axes[0], false))}, false};
  }

 private:
  std::vector<std::int64_t> dims_;
};

class Unsqueeze final : public ViewOp {
 public:
  explicit Unsqueeze(const BuildContext& ctx) : dim_(ctx.attrs().integer("dim")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  int axis(int rank) const { return normalize_axis(dim_, rank + 1, "dim"); }
  void infer(InferContext& ctx) const override {
    Shape shape = ctx.in(0).shape;
    shape.insert(axis(shape.rank), 1);
    ctx.set_tensor(0, ctx.in(0).dtype, shape);
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    const int at = axis(values[node.inputs[0]].shape.rank);
    return {{axes[0] >= at ? axes[0] + 1 : axes[0]}, false};
  }

 private:
  std::int64_t dim_;
};

// -- copies or views ---------------------------------------------------------------------------

class Permute final : public Op {
 public:
  explicit Permute(const BuildContext& ctx) : dims_(ctx.attrs().integers("dims")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  std::vector<int> order(int rank) const {
    if (static_cast<int>(dims_.size()) != rank)
      shape_error("permute: " + str(static_cast<std::int64_t>(dims_.size())) +
                  " dims for a tensor of rank " + str(rank));
    std::vector<int> axes;
    std::vector<bool> seen(rank, false);
    for (std::int64_t d : dims_) {
      const int a = normalize_axis(d, rank, "dim");
      if (seen[a]) shape_error("permute: dim " + str(d) + " appears twice");
      seen[a] = true;
      axes.push_back(a);
    }
    return axes;
  }
  void infer(InferContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    Shape shape;
    for (int a : order(x.shape.rank)) shape.push_back(x.shape[a]);
    ctx.set_tensor(0, x.dtype, shape);
  }
  // A view when the axes of extent > 1 keep their order.
  std::optional<std::int64_t> view_offset(const ValueMeta& in, const ValueMeta&, const NodeDef&,
                                          const std::vector<ValueMeta>&) const override {
    int previous = -1;
    for (int a : order(in.shape.rank)) {
      if (in.shape[a] == 1) continue;
      if (a < previous) return std::nullopt;
      previous = a;
    }
    return 0;
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    const std::vector<int> o = order(values[node.inputs[0]].shape.rank);
    return {{static_cast<int>(std::find(o.begin(), o.end(), axes[0]) - o.begin())}, false};
  }

 private:
  std::vector<std::int64_t> dims_;
};

// Copies a tensor into its permutation: output index i reads input offset sum(i_k * stride_k).
class PermuteKernel final : public Kernel {
 public:
  PermuteKernel(int in, int out, const Shape& out_shape, std::vector<std::int64_t> strides,
                std::size_t element)
      : in_(in), out_(out), shape_(out_shape), strides_(std::move(strides)), element_(element) {}
  void run(const RunContext& ctx) noexcept override {
    const auto* src = ctx.ptr<const std::byte>(in_);
    auto* dst = ctx.ptr<std::byte>(out_);
    const std::int64_t total = shape_.numel();
    if (total == 0) return;
    const int rank = shape_.rank;
    std::int64_t index[kMaxRank] = {};
    std::int64_t offset = 0;
    const std::int64_t inner = rank ? shape_[rank - 1] : 1;
    const std::int64_t inner_stride = rank ? strides_[rank - 1] : 0;
    for (std::int64_t done = 0; done < total; done += inner) {
      if (element_ == 4) {
        auto* d = reinterpret_cast<float*>(dst) + done;
        const auto* s = reinterpret_cast<const float*>(src);
        for (std::int64_t k = 0; k < inner; ++k) d[k] = s[offset + k * inner_stride];
      } else {
        auto* d = reinterpret_cast<std::int64_t*>(dst) + done;
        const auto* s = reinterpret_cast<const std::int64_t*>(src);
        for (std::int64_t k = 0; k < inner; ++k) d[k] = s[offset + k * inner_stride];
      }
      for (int axis = rank - 2; axis >= 0; --axis) {  // odometer over the outer axes
        offset += strides_[axis];
        if (++index[axis] < shape_[axis]) break;
        offset -= strides_[axis] * shape_[axis];
        index[axis] = 0;
      }
    }
  }

 private:
  int in_, out_;
  Shape shape_;
  std::vector<std::int64_t> strides_;  // input element stride of each output axis
  std::size_t element_;
};

std::unique_ptr<Kernel> Permute::prepare(const PrepareContext& ctx) const {
  const ValueMeta& x = ctx.in(0);
  std::vector<std::int64_t> in_strides(x.shape.rank, 1);
  for (int a = x.shape.rank - 2; a >= 0; --a) in_strides[a] = in_strides[a + 1] * x.shape[a + 1];
  std::vector<std::int64_t> strides;
  for (int a : order(x.shape.rank)) strides.push_back(in_strides[a]);
  return std::make_unique<PermuteKernel>(ctx.in_id(0), ctx.out_id(0), ctx.out(0).shape,
                                         std::move(strides), esize(x));
}

// Copies every `step`-th slab along one axis: output slab k of outer block o is input slab
// start + k * step of block o.
class SlabKernel final : public Kernel {
 public:
  SlabKernel(int in, int out, std::int64_t outer, std::int64_t in_extent, std::int64_t count,
             std::int64_t start, std::int64_t step, std::size_t slab_bytes)
      : in_(in),
        out_(out),
        outer_(outer),
        in_extent_(in_extent),
        count_(count),
        start_(start),
        step_(step),
        slab_(slab_bytes) {}
  void run(const RunContext& ctx) noexcept override {
    const auto* src = ctx.ptr<const std::byte>(in_);
    auto* dst = ctx.ptr<std::byte>(out_);
    const auto slab = static_cast<std::ptrdiff_t>(slab_);
    for (std::int64_t o = 0; o < outer_; ++o)
      for (std::int64_t k = 0; k < count_; ++k)
        std::memcpy(dst + (o * count_ + k) * slab,
                    src + (o * in_extent_ + start_ + k * step_) * slab, slab_);
  }

 private:
  int in_, out_;
  std::int64_t outer_, in_extent_, count_, start_, step_;
  std::size_t slab_;
};

class Select final : public Op {
 public:
  explicit Select(const BuildContext& ctx)
      : dim_(ctx.attrs().integer("dim")), index_(ctx.attrs().integer("index")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  void resolve(const Shape& shape, int* axis, std::int64_t* index) const {
    if (shape.rank == 0) shape_error("select: a scalar has no axes");
    *axis = normalize_axis(dim_, shape.rank, "dim");
    const std::int64_t extent = shape[*axis];
    if (index_ < -extent || index_ >= extent)
      shape_error("select: index " + str(index_) + " is out of range for dim " + str(*axis) +
                  " of extent " + str(extent));
    *index = index_ < 0 ? index_ + extent : index_;
  }
  void infer(InferContext& ctx) const override {
    int axis;
    std::int64_t index;
    Shape shape = ctx.in(0).shape;
    resolve(shape, &axis, &index);
    shape.erase(axis);
    ctx.set_tensor(0, ctx.in(0).dtype, shape);
  }
  std::optional<std::int64_t> view_offset(const ValueMeta& in, const ValueMeta&, const NodeDef&,
                                          const std::vector<ValueMeta>&) const override {
    int axis;
    std::int64_t index;
    resolve(in.shape, &axis, &index);
    if (in.shape.span(0, axis) > 1) return std::nullopt;
    return index * in.shape.span(axis + 1, in.shape.rank);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    int axis;
    std::int64_t index;
    resolve(x.shape, &axis, &index);
    return std::make_unique<SlabKernel>(
        ctx.in_id(0), ctx.out_id(0), x.shape.span(0, axis), x.shape[axis], 1, index, 1,
        static_cast<std::size_t>(x.shape.span(axis + 1, x.shape.rank)) * esize(x));
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    int axis;
    std::int64_t index;
    resolve(values[node.inputs[0]].shape, &axis, &index);
    if (axis == axes[0])
      shape_error(
          "select picks one step of the time axis: a stream cannot know which step is "
          "last (or n-th) before the sequence ends");
    return {{axes[0] > axis ? axes[0] - 1 : axes[0]}, false};
  }

 private:
  std::int64_t dim_, index_;
};

// Reverses one axis (an ONNX recurrent node running backwards reads its sequence from the end).
class Flip final : public Op {
 public:
  explicit Flip(const BuildContext& ctx) : dim_(ctx.attrs().integer("dim")) {
    ctx.require_inputs(1, 1);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
  }
  int axis(const Shape& shape) const {
    if (shape.rank == 0) shape_error("flip: a scalar has no axes");
    return normalize_axis(dim_, shape.rank, "dim");
  }
  void infer(InferContext& ctx) const override {
    axis(ctx.in(0).shape);
    ctx.set_tensor(0, ctx.in(0).dtype, ctx.in(0).shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    const int a = axis(x.shape);
    const std::int64_t extent = x.shape[a];
    // Slab k of each outer block comes from slab extent - 1 - k.
    return std::make_unique<SlabKernel>(
        ctx.in_id(0), ctx.out_id(0), x.shape.span(0, a), extent, extent, extent - 1, -1,
        static_cast<std::size_t>(x.shape.span(a + 1, x.shape.rank)) * esize(x));
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] >= 0 && axis(values[node.inputs[0]].shape) == axes[0])
      shape_error("flip reverses the time axis: its first frame is the last one to arrive");
    return same_axes(axes, node);
  }

 private:
  std::int64_t dim_;
};

class Slice final : public Op {
 public:
  explicit Slice(const BuildContext& ctx)
      : dim_(ctx.attrs().integer("dim")), step_(ctx.attrs().integer("step")) {
    ctx.require_inputs(3, 3);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    ctx.require_int(1, "start");
    ctx.require_int(2, "end");
    if (step_ < 1) shape_error("slice: step must be >= 1, got " + str(step_));
  }
  struct Range {
    int axis;
    std::int64_t start, count;
    bool whole;  // a stream's time axis: every frame passes
  };
  // Python slicing: negative bounds count from the end, then both clamp into [0, extent].
  Range resolve(const ValueMeta& x, std::int64_t start, std::int64_t end) const {
    if (x.shape.rank == 0) shape_error("slice: a scalar has no axes");
    const int axis = normalize_axis(dim_, x.shape.rank, "dim");
    const std::int64_t extent = x.shape[axis];
    if (axis == x.time_axis) return {axis, 0, extent, true};
    const auto clamp = [extent](std::int64_t v) {
      if (v < 0) v = v < -extent ? 0 : v + extent;
      return v > extent ? extent : v;
    };
    start = clamp(start);
    end = clamp(end);
    const std::int64_t count = end > start ? (end - start + step_ - 1) / step_ : 0;
    return {axis, start, count, false};
  }
  Range resolve(const PrepareContext& ctx) const {
    return resolve(ctx.in(0), ctx.in(1).int_value, ctx.in(2).int_value);
  }
  void infer(InferContext& ctx) const override {
    const Range r = resolve(ctx.in(0), ctx.integer(1), ctx.integer(2));
    Shape shape = ctx.in(0).shape;
    shape[r.axis] = r.count;
    ctx.set_tensor(0, ctx.in(0).dtype, shape);
  }
  std::optional<std::int64_t> view_offset(const ValueMeta& in, const ValueMeta&,
                                          const NodeDef& node,
                                          const std::vector<ValueMeta>& values) const override {
    const Range r = resolve(in, values[node.inputs[1]].int_value, values[node.inputs[2]].int_value);
    if (r.whole) return 0;
    if (in.shape.span(0, r.axis) > 1 || (step_ != 1 && r.count > 1)) return std::nullopt;
    return r.start * in.shape.span(r.axis + 1, in.shape.rank);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const ValueMeta& x = ctx.in(0);
    const Range r = resolve(ctx);
    return std::make_unique<SlabKernel>(
        ctx.in_id(0), ctx.out_id(0), x.shape.span(0, r.axis), x.shape[r.axis], r.count, r.start,
        step_, static_cast<std::size_t>(x.shape.span(r.axis + 1, x.shape.rank)) * esize(x));
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    const ValueMeta& x = values[node.inputs[0]];
    const int axis = normalize_axis(dim_, x.shape.rank, "dim");
    // Dropping trailing frames is what a stream does anyway (they depend on padding past the
    // end of the sequence); dropping leading ones or striding would need a frame counter.
    if (axis == axes[0] && (values[node.inputs[1]].int_value != 0 || step_ != 1))
      shape_error("slice along the time axis that does not start at frame 0 or skips frames");
    return same_axes(axes, node);
  }

 private:
  std::int64_t dim_, step_;
};

// Concatenation (and stack, which concatenates along a new axis of extent 1 per input).
class Concat final : public Op {
 public:
  explicit Concat(const BuildContext& ctx)
      : dim_(ctx.attrs().integer("dim")), stack_(ctx.node().op == "stack") {
    ctx.require_inputs(1, -1);
    ctx.require_outputs(1);
    for (int i = 0; i < ctx.inputs(); ++i) ctx.require_tensor(i, "tensor");
  }
  // The inputs as the shapes being concatenated (stack: with the new unit axis).
  Shape part(const ValueMeta& x, int rank) const {
    Shape shape = x.shape;
    if (stack_) shape.insert(normalize_axis(dim_, rank + 1, "dim"), 1);
    return shape;
  }
  int axis(int rank) const { return normalize_axis(dim_, stack_ ? rank + 1 : rank, "dim"); }
  void infer(InferContext& ctx) const override {
    const ValueMeta& first = ctx.in(0);
    if (!stack_ && first.shape.rank == 0) shape_error("cat: zero-dimensional tensors");
    const int a = axis(first.shape.rank);
    Shape out = part(first, first.shape.rank);
    out[a] = 0;
    for (int i = 0; i < ctx.inputs(); ++i) {
      const ValueMeta& x = ctx.in(i);
      if (x.dtype != first.dtype)
        shape_error("input " + str(i) + " has dtype " + dtype_name(x.dtype) + ", input 0 " +
                    dtype_name(first.dtype));
      if (x.shape.rank != first.shape.rank)
        shape_error("input " + str(i) + " has shape " + x.shape.str() + ", input 0 " +
                    first.shape.str());
      const Shape p = part(x, first.shape.rank);
      for (int k = 0; k < p.rank; ++k)
        if (k != a && p[k] != out[k])
          shape_error("input " + str(i) + " has shape " + x.shape.str() + ", input 0 " +
                      first.shape.str() + ": they differ outside dim " + str(a));
      out[a] += p[a];
    }
    ctx.set_tensor(0, first.dtype, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override;
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    int time = -1;
    for (std::size_t i = 0; i < axes.size(); ++i) {
      if (axes[i] < 0) continue;
      if (time >= 0 && axes[i] != time) shape_error("inputs carry time on different axes");
      time = axes[i];
    }
    if (time < 0) return same_axes(axes, node);
    for (int a : axes)
      if (a < 0) shape_error("joins a tensor that has no time axis with one that has");
    const int a = axis(values[node.inputs[0]].shape.rank);
    if (!stack_ && a == time) shape_error("cat along the time axis");
    return {{stack_ && time >= a ? time + 1 : time}, false};
  }

 private:
  std::int64_t dim_;
  bool stack_;
};

class ConcatKernel final : public Kernel {
 public:
  struct Piece {
    int value;
    std::size_t bytes;  // per outer block
  };
  ConcatKernel(std::vector<Piece> pieces, int out, std::int64_t outer, std::size_t out_bytes)
      : pieces_(std::move(pieces)), out_(out), outer_(outer), out_bytes_(out_bytes) {}
  void run(const RunContext& ctx) noexcept override {
    auto* dst = ctx.ptr<std::byte>(out_);
    std::size_t at = 0;
    for (const Piece& p : pieces_) {
      copy_slabs(ctx.ptr<const std::byte>(p.value), static_cast<std::ptrdiff_t>(p.bytes), dst + at,
                 static_cast<std::ptrdiff_t>(out_bytes_), outer_, p.bytes);
      at += p.bytes;
    }
  }

 private:
  std::vector<Piece> pieces_;
  int out_;
  std::int64_t outer_;
  std::size_t out_bytes_;
};

std::unique_ptr<Kernel> Concat::prepare(const PrepareContext& ctx) const {
  const ValueMeta& first = ctx.in(0);
  const int a = axis(first.shape.rank);
  const Shape& out = ctx.out(0).shape;
  const std::int64_t outer = out.span(0, a);
  const std::size_t inner = static_cast<std::size_t>(out.span(a + 1, out.rank)) * esize(first);
  std::vector<ConcatKernel::Piece> pieces;
  for (int i = 0; i < static_cast<int>(ctx.node().inputs.size()); ++i) {
    const Shape p = part(ctx.in(i), first.shape.rank);
    pieces.push_back({ctx.in_id(i), static_cast<std::size_t>(p[a]) * inner});
  }
  return std::make_unique<ConcatKernel>(std::move(pieces), ctx.out_id(0), outer,
                                        static_cast<std::size_t>(out[a]) * inner);
}

// torch's expand: x's dims aligned to the right of the target, extent-1 dims repeated, -1
// keeping a dim, new leading dims allowed. Copied (tensors here are dense), through the same
// strided copy as permute with a zero stride on every repeated dim.
class Expand final : public Op {
 public:
  explicit Expand(const BuildContext& ctx) {
    ctx.require_inputs(1, 1 + kMaxRank);
    ctx.require_outputs(1);
    ctx.require_tensor(0, "x");
    for (int i = 1; i < ctx.inputs(); ++i) ctx.require_int(i, "dim");
  }
  void infer(InferContext& ctx) const override {
    const Shape& x = ctx.in(0).shape;
    const int rank = ctx.inputs() - 1;
    if (rank < x.rank)
      shape_error("expand: " + str(rank) + " dims for a tensor of shape " + x.str());
    Shape out;
    for (int a = 0; a < rank; ++a) {
      const std::int64_t want = ctx.integer(a + 1);
      const int from = a - (rank - x.rank);
      if (from < 0) {
        if (want < 0) shape_error("expand: a new leading dim cannot be -1");
        out.push_back(want);
        continue;
      }
      const std::int64_t have = x[from];
      if (want == -1 || want == have) {
        out.push_back(have);
      } else if (have == 1 && want >= 0) {
        out.push_back(want);
      } else {
        shape_error("expand: dim " + str(a) + " of extent " + str(have) + " cannot become " +
                    str(want));
      }
    }
    ctx.set_tensor(0, ctx.in(0).dtype, out);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    const Shape& x = ctx.in(0).shape;
    const Shape& out = ctx.out(0).shape;
    std::vector<std::int64_t> strides(out.rank, 0);
    std::int64_t stride = 1;
    for (int a = x.rank - 1; a >= 0; --a) {
      const int at = a + (out.rank - x.rank);
      strides[at] = x[a] == out[at] ? stride : 0;
      stride *= x[a];
    }
    return std::make_unique<PermuteKernel>(ctx.in_id(0), ctx.out_id(0), out, std::move(strides),
                                           esize(ctx.in(0)));
  }
  TimeFlow time_flow(const std::vector<int>& axes, const NodeDef& node,
                     const std::vector<ValueMeta>& values) const override {
    if (axes[0] < 0) return same_axes(axes, node);
    const int shift = values[node.outputs[0]].shape.rank - values[node.inputs[0]].shape.rank;
    return {{axes[0] + shift}, false};
  }
};

class Full final : public Op {
 public:
  explicit Full(const BuildContext& ctx) : value_(ctx.attrs().number("value")) {
    ctx.require_inputs(0, kMaxRank);
    ctx.require_outputs(1);
    for (int i = 0; i < ctx.inputs(); ++i) ctx.require_int(i, "dim");
    const std::string& type = ctx.attrs().text("dtype");
    if (type == "float32") {
      dtype_ = DType::F32;
    } else if (type == "int64") {
      dtype_ = DType::I64;
    } else {
      shape_error("attribute 'dtype': expected 'float32' or 'int64', got '" + type + "'");
    }
  }
  void infer(InferContext& ctx) const override {
    Shape shape;
    for (int i = 0; i < ctx.inputs(); ++i) {
      if (ctx.integer(i) < 0) shape_error("full: negative dim " + str(ctx.integer(i)));
      shape.push_back(ctx.integer(i));
    }
    ctx.set_tensor(0, dtype_, shape);
  }
  std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const override {
    class Fill final : public Kernel {
     public:
      Fill(int out, std::int64_t count, DType dtype, double value)
          : out_(out), count_(count), dtype_(dtype), value_(value) {}
      void run(const RunContext& ctx) noexcept override {
        if (dtype_ == DType::F32) {
          std::fill_n(ctx.ptr<float>(out_), count_, static_cast<float>(value_));
        } else {
          std::fill_n(ctx.ptr<std::int64_t>(out_), count_, static_cast<std::int64_t>(value_));
        }
      }

     private:
      int out_;
      std::int64_t count_;
      DType dtype_;
      double value_;
    };
    return std::make_unique<Fill>(ctx.out_id(0), ctx.out(0).shape.numel(), dtype_, value_);
  }
  TimeFlow time_flow(const std::vector<int>&, const NodeDef& node,
                     const std::vector<ValueMeta>&) const override {
    return {std::vector<int>(node.outputs.size(), -1), false};
  }

 private:
  double value_;
  DType dtype_ = DType::F32;
};

}  // namespace

std::unique_ptr<Op> make_shape_op(const BuildContext& ctx) {
  const std::string& op = ctx.node().op;
  if (op == "identity") return std::make_unique<Identity>(ctx);
  if (op == "reshape") return std::make_unique<Reshape>(ctx);
  if (op == "flatten") return std::make_unique<Flatten>(ctx);
  if (op == "squeeze") return std::make_unique<Squeeze>(ctx);
  if (op == "unsqueeze") return std::make_unique<Unsqueeze>(ctx);
  if (op == "permute") return std::make_unique<Permute>(ctx);
  if (op == "select") return std::make_unique<Select>(ctx);
  if (op == "slice") return std::make_unique<Slice>(ctx);
  if (op == "flip") return std::make_unique<Flip>(ctx);
  if (op == "cat" || op == "stack") return std::make_unique<Concat>(ctx);
  if (op == "expand") return std::make_unique<Expand>(ctx);
  return std::make_unique<Full>(ctx);
}

}  // namespace pyrnn::graph::ops
