// A whole model run frame by frame: the graph planned for one frame (step) and for a chunk of
// frames (feed), both bound to the same per-op states (recurrent h and c, convolution history),
// so each call continues where the last one stopped. Nothing is allocated after construction.
//
// Shapes: a frame of input i is the input's shape without its time axis (batch axis at extent
// `rows`); step writes each output without its time axis; feed takes and writes T frames along
// the time axes. Outputs without a time axis (a final state h_n) hold their value after the
// last frame.
//
// Windows along time that stride or delay (StreamClock) make some steps emit no frame at some
// outputs: such a model has one step plan per pattern of clocks ticking, chosen before each
// step from the windows' frame counts, and feeds frame by frame.
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
  const ValueMeta& step_output(int j) const;

  RunStatus step(const KernelTable& kernels, const void* const* inputs, void* const* outputs);
  // Whether the last step gave output j a frame (false: a strided or delayed window emitted
  // nothing this step, and out j was not written).
  bool output_ticked(int j) const noexcept;
  // Frames output j gets from feeding `frames` frames now (its time axis extent in feed).
  std::int64_t feed_frames(int j, std::int64_t frames) const;
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
  // Which clocks tick with the next frame, given the windows' counts (`seen` per clock).
  std::uint32_t next_ticks(const std::int64_t* seen) const noexcept;
  // The windows' counts of frames seen, per clock (at most kMaxClocks).
  void clock_counts(std::int64_t* seen) const noexcept;
  void make_parts();
  RunStatus step_clocked(const KernelTable& kernels, const void* const* inputs,
                         void* const* outputs);
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
  // Clocked models: a step plan per valid pattern of ticking clocks (bit k: clock k ticks).
  std::vector<std::unique_ptr<Plan>> pattern_plans_;
  std::vector<int> plan_of_pattern_;
  std::uint32_t last_ticks_ = 1;
  std::vector<AlignedBuffer> frame_in_, frame_out_;  // one frame per input/output (clocked feed)
  static constexpr std::size_t kMaxClocks = 16;
  std::vector<ValueMeta> step_inputs_;
  std::vector<AlignedBuffer> input_scratch_, output_scratch_;  // chunk-sized, per input/output
  std::vector<const void*> input_pointers_;
  std::vector<void*> output_pointers_;
  std::vector<StatePart> parts_;
  mutable std::atomic<bool> in_use_{false};
};

}  // namespace pyrnn::graph
