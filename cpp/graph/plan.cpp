// Making a plan (shape inference, storage and lifetimes, arena offsets, kernels) and running it.
#include "graph/plan.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "graph/memory_limit.h"

namespace pyrnn::graph {
namespace {

constexpr std::size_t kAlign = 64;

std::size_t aligned(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

enum class Storage : std::uint8_t { None, Input, Constant, Arena, View };

}  // namespace

Plan::Plan(std::shared_ptr<const Graph> graph, const std::vector<ValueMeta>& inputs,
           const std::vector<int>* time_axes, const std::vector<OpState*>* states,
           const std::vector<std::int64_t>* emitted)
    : graph_(std::move(graph)), values_(infer_values(*graph_, inputs, time_axes, emitted)) {
  check_value_memory(*graph_, values_);
  const std::size_t used = lay_out();
  const Graph& g = *graph_;
  std::vector<bool> read_later(g.value_count(), false);  // by a node or the caller
  for (int i = 0; i < g.node_count(); ++i)
    for (int input : g.node(i).inputs)
      if (input >= 0) read_later[input] = true;
  for (int output : g.outputs()) read_later[output] = true;
  // Kernels allocate their scratch as they are made: charged against what the arena and the
  // outputs leave of the limit.
  const AllocationBudget budget(plan_memory_limit() - used, "this plan's kernel scratch");
  for (int i = 0; i < g.node_count(); ++i) {
    const NodeDef& node = g.node(i);
    OpState* state = states != nullptr ? (*states)[i] : nullptr;
    std::unique_ptr<Kernel> kernel;
    try {
      kernel = g.op(i).prepare(PrepareContext(node, values_, state, &read_later));
    } catch (const std::invalid_argument& error) {
      throw std::invalid_argument(g.describe(i) + ": " + error.what());
    } catch (const std::length_error& error) {
      throw std::length_error(g.describe(i) + ": " + error.what() + " (use smaller inputs)");
    }
    if (kernel) {
      kernel->node = i;
      kernels_.push_back({i, std::move(kernel)});
    }
  }
}

void check_value_memory(const Graph& g, const std::vector<ValueMeta>& values) {
  const std::size_t limit = plan_memory_limit();
  for (int v = 0; v < g.value_count(); ++v) {
    const ValueMeta& meta = values[v];
    if (meta.is_int) continue;
    const std::size_t count = static_cast<std::size_t>(meta.shape.numel());  // < 2^62
    const std::size_t item = dtype_size(meta.dtype);
    if (count <= limit / item) continue;
    const ValueInfo& info = g.value(v);
    const std::string tensor =
        "'" + info.name + "' of shape " + meta.shape.str() + " " + dtype_name(meta.dtype);
    const std::string what = info.producer >= 0         ? g.describe(info.producer) + ": output "
                             : g.constant(v) != nullptr ? "constant "
                                                        : "input ";
    refuse_memory(what + tensor, static_cast<double>(count) * static_cast<double>(item));
  }
}

std::vector<ValueMeta> infer_values(const Graph& g, const std::vector<ValueMeta>& inputs,
                                    const std::vector<int>* time_axes,
                                    const std::vector<std::int64_t>* emitted) {
  std::vector<ValueMeta> values(g.value_count(), ValueMeta{});
  if (inputs.size() != g.inputs().size())
    throw std::invalid_argument("expected " + std::to_string(g.inputs().size()) + " inputs, got " +
                                std::to_string(inputs.size()));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const GraphInput& spec = g.inputs()[i];
    const ValueMeta& given = inputs[i];
    const std::string name = "input '" + g.value(spec.value).name + "'";
    if (given.dtype != spec.dtype)
      throw std::invalid_argument(name + ": expected dtype " + dtype_name(spec.dtype) + ", got " +
                                  dtype_name(given.dtype));
    bool fits = given.shape.rank == static_cast<int>(spec.dims.size());
    for (int axis = 0; fits && axis < given.shape.rank; ++axis)
      fits = spec.dims[axis] < 0 || spec.dims[axis] == given.shape[axis];
    if (!fits) {
      std::string expected = "(";
      for (std::size_t axis = 0; axis < spec.dims.size(); ++axis)
        expected += (axis ? ", " : "") +
                    (spec.dims[axis] < 0 ? std::string("*") : std::to_string(spec.dims[axis]));
      expected += spec.dims.size() == 1 ? ",)" : ")";
      throw std::invalid_argument(name + ": expected shape " + expected + " (* = any), got " +
                                  given.shape.str());
    }
    values[spec.value] = given;
    values[spec.value].time_axis = -1;
  }
  for (const Constant& constant : g.constants()) {
    ValueMeta& meta = values[constant.value];
    meta.dtype = constant.dtype;
    meta.shape = constant.shape;
  }
  for (int v = 0; v < g.value_count(); ++v) {
    if (g.value(v).literal) {
      values[v].is_int = true;
      values[v].int_value = *g.value(v).literal;
    }
  }
  if (time_axes != nullptr)
    for (int v = 0; v < g.value_count(); ++v) values[v].time_axis = (*time_axes)[v];
  for (int i = 0; i < g.node_count(); ++i) {
    InferContext ctx(g.node(i), values, emitted != nullptr ? (*emitted)[i] : -1);
    try {
      g.op(i).infer(ctx);
    } catch (const std::exception& error) {
      throw std::invalid_argument(g.describe(i) + ": " + error.what());
    }
  }
  return values;
}

std::size_t Plan::lay_out() {
  const Graph& g = *graph_;
  const int count = g.value_count();
  std::vector<Storage> storage(count, Storage::None);
  std::vector<int> root(count);  // the tensor whose bytes a view lies in
  for (int v = 0; v < count; ++v) root[v] = v;
  for (const GraphInput& input : g.inputs()) storage[input.value] = Storage::Input;
  for (const Constant& constant : g.constants()) storage[constant.value] = Storage::Constant;

  // Views and fresh tensors, in node order; lifetimes of arena roots as [first, last] node.
  std::vector<int> first(count, -1), last(count, -1);
  for (int i = 0; i < g.node_count(); ++i) {
    const NodeDef& node = g.node(i);
    for (int input : node.inputs) {
      if (input >= 0 && storage[input] != Storage::None) {
        const int r = root[input];
        if (storage[r] == Storage::Arena) last[r] = std::max(last[r], i);
      }
    }
    for (std::size_t k = 0; k < node.outputs.size(); ++k) {
      const int out = node.outputs[k];
      if (values_[out].is_int) continue;
      std::optional<std::int64_t> offset;
      if (k == 0 && !node.inputs.empty() && node.inputs[0] >= 0)
        offset = g.op(i).view_offset(values_[node.inputs[0]], values_[out], node, values_);
      if (offset) {
        const int source = node.inputs[0];
        storage[out] = Storage::View;
        root[out] = root[source];
        views_.push_back(
            {out, source, static_cast<std::size_t>(*offset) * dtype_size(values_[out].dtype)});
      } else {
        storage[out] = Storage::Arena;
        first[out] = last[out] = i;
      }
    }
  }

  // Outputs: a fresh tensor that is the first appearance of its root is written straight into
  // the caller's buffer; anything else (an input, a constant, a view, a repeat) is copied.
  const std::vector<int>& outputs = g.outputs();
  external_.assign(outputs.size(), -1);
  std::vector<bool> claimed(count, false);
  for (std::size_t j = 0; j < outputs.size(); ++j) {
    const int v = outputs[j];
    if (storage[v] == Storage::Arena && !claimed[v]) {
      claimed[v] = true;
      external_[j] = v;
    } else {
      copies_.push_back({static_cast<int>(j), v, values_[v].bytes()});
    }
  }
  const int end = g.node_count();  // copies read their values after the last node
  for (const Copy& copy : copies_) {
    const int r = root[copy.value];
    if (storage[r] == Storage::Arena) last[r] = end;
  }

  // First fit by decreasing size among tensors whose lifetimes overlap.
  std::vector<int> order;
  for (int v = 0; v < count; ++v)
    if (storage[v] == Storage::Arena && !claimed[v]) order.push_back(v);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return values_[a].bytes() > values_[b].bytes(); });
  std::vector<std::size_t> offset(count, 0);
  struct Placed {
    std::size_t begin, end;
    int first, last;
  };
  std::vector<Placed> placed;
  // Every value fits the limit on its own (check_value_memory), so these sums cannot wrap while
  // they stay under it.
  const std::size_t limit = plan_memory_limit();
  std::size_t outputs_bytes = 0;
  for (int v : outputs) {
    const std::size_t bytes = values_[v].bytes();
    if (bytes > limit - outputs_bytes) refuse_plan(static_cast<double>(outputs_bytes) + bytes);
    outputs_bytes += bytes;
  }
  for (int v : order) {
    const std::size_t size = aligned(values_[v].bytes());
    std::vector<std::pair<std::size_t, std::size_t>> busy;
    for (const Placed& p : placed)
      if (p.first <= last[v] && first[v] <= p.last) busy.emplace_back(p.begin, p.end);
    std::sort(busy.begin(), busy.end());
    std::size_t at = 0;
    for (const auto& [b, e] : busy) {
      if (at + size <= b) break;
      at = std::max(at, e);
    }
    if (size > limit - outputs_bytes || at > limit - outputs_bytes - size)
      refuse_plan(static_cast<double>(outputs_bytes) + static_cast<double>(at) + size);
    offset[v] = at;
    placed.push_back({at, at + size, first[v], last[v]});
    arena_bytes_ = std::max(arena_bytes_, at + size);
  }
  arena_.resize(arena_bytes_ / sizeof(float));

  pointers_.assign(count, nullptr);
  auto* base = reinterpret_cast<std::byte*>(arena_.data());
  for (int v : order) pointers_[v] = base + offset[v];
  for (const Constant& constant : g.constants())
    pointers_[constant.value] = const_cast<float*>(constant.values());
  return arena_bytes_ + outputs_bytes;
}

void Plan::refuse_plan(double bytes) const {
  const Graph& g = *graph_;
  std::string shapes;
  for (std::size_t i = 0; i < g.inputs().size(); ++i)
    shapes += (i ? ", " : "") + g.value(g.inputs()[i].value).name + " " +
              values_[g.inputs()[i].value].shape.str();
  refuse_memory(
      "running the graph on inputs " + shapes + ": its intermediate tensors and outputs at once",
      bytes);
}

RunStatus Plan::run(const KernelTable& kernels, const void* const* inputs,
                    void* const* outputs) noexcept {
  const Graph& g = *graph_;
  for (std::size_t i = 0; i < g.inputs().size(); ++i)
    pointers_[g.inputs()[i].value] = const_cast<void*>(inputs[i]);
  for (std::size_t j = 0; j < external_.size(); ++j)
    if (external_[j] >= 0) pointers_[external_[j]] = outputs[j];
  for (const View& view : views_)
    pointers_[view.value] = static_cast<std::byte*>(pointers_[view.source]) + view.byte_offset;
  RunStatus status;
  const RunContext ctx{pointers_.data(), kernels, &status};
  for (Bound& bound : kernels_) bound.kernel->run(ctx);
  for (const Copy& copy : copies_)
    if (copy.bytes) std::memcpy(outputs[copy.output], pointers_[copy.value], copy.bytes);
  return status;
}

}  // namespace pyrnn::graph
