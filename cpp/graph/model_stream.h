// A whole model run frame by frame: the graph planned for one frame (step) and for a chunk of
// frames (feed), both bound to the same per-op states (recurrent h and c, convolution history),
// so each call continues where the last one stopped. Nothing is allocated after construction.
//
// Shapes: a frame of input i is the input's shape without its time axis (batch axis at extent
// `rows`); step writes each output without its time axis; feed takes and writes T frames along
// the time axes. Outputs without a time axis (a final state h_n) hold their value after the
// last frame.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "core/aligned_buffer.h"
#include "graph/plan.h"
#include "graph/stream_layout.h"

namespace pyrnn::graph {

class ModelStream {
 public:
  // Throws std::invalid_argument naming the op when the model cannot stream.
  ModelStream(std::shared_ptr<const Graph> graph, StreamLayout layout, std::int64_t rows,
              int chunk_frames);
  // A fork: same graph, a copy of `other`'s state, its own plans and scratch.
  ModelStream(const ModelStream& other);
  ModelStream& operator=(const ModelStream&) = delete;

  const Graph& graph() const noexcept { return *graph_; }
  const StreamLayout& layout() const noexcept { return layout_; }
  std::int64_t rows() const noexcept { return rows_; }
  // Metas of one frame (time extent 1) of every input and output.
  const ValueMeta& step_input(int i) const;
  const ValueMeta& step_output(int j) const { return step_plan_->output(j); }

  RunStatus step(const KernelTable& kernels, const void* const* inputs, void* const* outputs);
  // `frames` frames: inputs and outputs laid out as the model takes them with that time extent.
  RunStatus feed(const KernelTable& kernels, std::int64_t frames, const void* const* inputs,
                 void* const* outputs);

  void reset();
  void reset_row(std::int64_t row);

  // The state as parts (node, part): names like "lstm.h" come from the node's first output.
  struct StatePart {
    int node;
    int part;
    std::string name;
    Shape shape;
  };
  const std::vector<StatePart>& state_parts() const noexcept { return parts_; }
  void get_state(int index, float* data) const;
  void set_state(int index, const float* data);

  // Exclusive use, as Stream::Exclusive: a second thread gets std::runtime_error.
  class Exclusive {
   public:
    explicit Exclusive(const ModelStream& stream);
    ~Exclusive() { flag_.store(false, std::memory_order_release); }
    Exclusive(const Exclusive&) = delete;
    Exclusive& operator=(const Exclusive&) = delete;

   private:
    std::atomic<bool>& flag_;
  };

 private:
  void make_plans();
  // Moves frames [t0, t0 + count) between a caller's array (T frames) and a plan's buffer.
  struct Slab {
    std::int64_t outer;  // blocks before the time axis
    std::size_t frame;   // bytes of one frame within a block
  };
  static Slab slab_of(const ValueMeta& one_frame, int time_axis);

  std::shared_ptr<const Graph> graph_;
  StreamLayout layout_;
  std::int64_t rows_;
  int chunk_;
  std::vector<std::unique_ptr<OpState>> states_;
  std::vector<OpState*> state_pointers_;
  std::unique_ptr<Plan> step_plan_, chunk_plan_;
  std::vector<ValueMeta> step_inputs_;
  std::vector<AlignedBuffer> input_scratch_, output_scratch_;  // chunk-sized, per input/output
  std::vector<const void*> input_pointers_;
  std::vector<void*> output_pointers_;
  std::vector<StatePart> parts_;
  mutable std::atomic<bool> in_use_{false};
};

}  // namespace pyrnn::graph
