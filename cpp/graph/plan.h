// A plan: a graph bound to one set of input shapes. Made once per shape and reused: every
// value's shape inferred, every intermediate tensor given an offset in one arena (tensors whose
// lifetimes do not overlap share bytes), views resolved to offsets into other tensors, each node
// bound to a Kernel. Running it allocates nothing.
//
// A plan is used by one thread at a time (it keeps the pointers of the current call); the graph
// it runs is shared read-only.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "core/aligned_buffer.h"
#include "graph/graph.h"

namespace pyrnn::graph {

// Every value's meta for these input metas (dtype and shape of each graph input), node by
// node. `time_axes` (streams: per value, the axis carrying frames, or -1) is set on the metas
// before each op infers. Throws std::invalid_argument naming the node whose shapes do not fit.
// `emitted` (streams with windows along time: per node, the frames a windowed op emits in this
// plan, -1 for others) sizes those ops' outputs.
std::vector<ValueMeta> infer_values(const Graph& graph, const std::vector<ValueMeta>& inputs,
                                    const std::vector<int>* time_axes = nullptr,
                                    const std::vector<std::int64_t>* emitted = nullptr);

// Throws std::length_error naming the value when any one tensor of `values` (a plan's metas)
// needs more than this machine's physical memory: shapes made from ints in a file (a reshape,
// full or expand to 2^40) are refused here, before anything is allocated or added up.
void check_value_memory(const Graph& graph, const std::vector<ValueMeta>& values);

// A plan needs its arena, the outputs it fills and its kernels' scratch at once; making one
// that would exceed physical memory throws std::length_error before allocating (see
// graph/memory_limit.h).
class Plan {
 public:
  // `inputs` holds each graph input's dtype and shape. For a stream, `time_axes` and `states`
  // (per node: its OpState, null for stateless nodes) make stateful ops carry their state
  // across runs; without them, every run starts from each op's initial state.
  Plan(std::shared_ptr<const Graph> graph, const std::vector<ValueMeta>& inputs,
       const std::vector<int>* time_axes = nullptr, const std::vector<OpState*>* states = nullptr,
       const std::vector<std::int64_t>* emitted = nullptr);

  const Graph& graph() const noexcept { return *graph_; }
  const std::vector<ValueMeta>& values() const noexcept { return values_; }
  const ValueMeta& output(int j) const { return values_[graph_->outputs()[j]]; }
  std::size_t arena_bytes() const noexcept { return arena_bytes_; }

  // inputs[i]: C-contiguous data of graph input i as planned; outputs[j]: a buffer of output
  // j's bytes, which must not overlap any input. Returns what a kernel found wrong in the data
  // (status.message null when nothing was).
  RunStatus run(const KernelTable& kernels, const void* const* inputs,
                void* const* outputs) noexcept;

 private:
  struct View {
    int value;
    int source;
    std::size_t byte_offset;
  };
  struct Copy {
    int output;
    int value;
    std::size_t bytes;
  };
  struct Bound {
    int node;
    std::unique_ptr<Kernel> kernel;
  };

  // Storage of every value; returns the bytes the arena and the outputs take together.
  std::size_t lay_out();
  [[noreturn]] void refuse_plan(double bytes) const;

  std::shared_ptr<const Graph> graph_;
  std::vector<ValueMeta> values_;
  std::vector<void*> pointers_;
  std::vector<View> views_;    // resolved each run, in order
  std::vector<int> external_;  // per output j: the value written straight into it, or -1
  std::vector<Copy> copies_;   // outputs copied at the end (inputs, constants, views)
  std::vector<Bound> kernels_;
  AlignedBuffer arena_;
  std::size_t arena_bytes_ = 0;
};

}  // namespace pyrnn::graph
