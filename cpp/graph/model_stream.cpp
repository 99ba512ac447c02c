// Streaming a whole model (see model_stream.h): plans for one frame and for a chunk, shared
// states, and the gathering of chunk frames from layouts whose time axis is not outermost.
#include "graph/model_stream.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "core/busy.h"

namespace pyrnn::graph {

ModelStream::ModelStream(std::shared_ptr<const Graph> graph, StreamLayout layout, std::int64_t rows,
                         int chunk_frames)
    : graph_(std::move(graph)), layout_(std::move(layout)), rows_(rows), chunk_(chunk_frames) {
  if (rows < 1 || rows > INT32_MAX)
    throw std::invalid_argument("batch: expected 1 to 2^31-1 rows, got " + std::to_string(rows));
  if (chunk_frames < 1) throw std::invalid_argument("chunk: expected >= 1 frames");
  const Graph& g = *graph_;
  const std::vector<ValueMeta> one =
      infer_values(g, stream_input_metas(g, layout_, 1, rows_), &layout_.value_time);
  states_.resize(g.node_count());
  for (int n = 0; n < g.node_count(); ++n)
    if (layout_.stateful[n]) states_[n] = g.op(n).make_state(g.node(n), one);
  make_plans();
}

ModelStream::ModelStream(const ModelStream& other)
    : graph_(other.graph_), layout_(other.layout_), rows_(other.rows_), chunk_(other.chunk_) {
  Exclusive hold(other);
  states_.resize(other.states_.size());
  for (std::size_t n = 0; n < states_.size(); ++n)
    if (other.states_[n]) states_[n] = other.states_[n]->clone();
  make_plans();
}

// Patterns of ticking clocks are at most this many (a model with more strided windows along
// time would need too many plans).
constexpr std::size_t kMaxPatterns = 64;

void ModelStream::make_plans() {
  const Graph& g = *graph_;
  state_pointers_.clear();
  for (const auto& state : states_) state_pointers_.push_back(state.get());
  step_inputs_ = stream_input_metas(g, layout_, 1, rows_);
  const std::size_t clocks = layout_.clocks.size();
  if (clocks > 1) {
    if (clocks > kMaxClocks)
      throw std::invalid_argument("too many strided or delayed windows along time to stream");
    // Valid patterns: clock 0 always ticks; a clock ticks only with its parent.
    plan_of_pattern_.assign(std::size_t{1} << clocks, -1);
    for (std::uint32_t mask = 1; mask < (1u << clocks); mask += 2) {
      bool valid = true;
      for (std::size_t k = 1; k < clocks && valid; ++k)
        if ((mask >> k & 1u) && !(mask >> layout_.clocks[k].parent & 1u)) valid = false;
      if (!valid) continue;
      if (pattern_plans_.size() == kMaxPatterns)
        throw std::invalid_argument("too many strided or delayed windows along time to stream");
      std::vector<std::int64_t> emitted(g.node_count(), -1);
      for (std::size_t k = 1; k < clocks; ++k) emitted[layout_.clocks[k].node] = mask >> k & 1u;
      plan_of_pattern_[mask] = static_cast<int>(pattern_plans_.size());
      pattern_plans_.push_back(std::make_unique<Plan>(graph_, step_inputs_, &layout_.value_time,
                                                      &state_pointers_, &emitted));
    }
    step_plan_ = nullptr;
    chunk_plan_ = nullptr;
    // A whole-frame step (every clock ticking) gives each output's frame shape.
    const std::uint32_t all = (1u << clocks) - 1;
    frame_in_.clear();
    frame_out_.clear();
    for (std::size_t i = 0; i < g.inputs().size(); ++i)
      frame_in_.emplace_back((step_inputs_[i].bytes() + 3) / 4);
    for (std::size_t j = 0; j < g.outputs().size(); ++j)
      frame_out_.emplace_back(
          (pattern_plans_[plan_of_pattern_[all]]->output(static_cast<int>(j)).bytes() + 3) / 4);
  } else {
    step_plan_ =
        std::make_unique<Plan>(graph_, step_inputs_, &layout_.value_time, &state_pointers_);
    chunk_plan_ = std::make_unique<Plan>(graph_, stream_input_metas(g, layout_, chunk_, rows_),
                                         &layout_.value_time, &state_pointers_);
  }
  // Chunks of inputs/outputs whose time axis is not outermost are gathered into scratch.
  input_scratch_.clear();
  output_scratch_.clear();
  input_pointers_.assign(g.inputs().size(), nullptr);
  output_pointers_.assign(g.outputs().size(), nullptr);
  if (!chunk_plan_) {
    make_parts();
    return;
  }
  for (std::size_t i = 0; i < g.inputs().size(); ++i) {
    const ValueMeta& meta = chunk_plan_->values()[g.inputs()[i].value];
    input_scratch_.emplace_back(layout_.input_time[i] > 0 ? (meta.bytes() + 3) / 4 : 0);
  }
  for (std::size_t j = 0; j < g.outputs().size(); ++j) {
    const ValueMeta& meta = chunk_plan_->output(static_cast<int>(j));
    output_scratch_.emplace_back(layout_.output_time[j] != 0 ? (meta.bytes() + 3) / 4 : 0);
  }
  make_parts();
}

void ModelStream::make_parts() {
  const Graph& g = *graph_;
  parts_.clear();
  for (int n = 0; n < g.node_count(); ++n) {
    if (!states_[n]) continue;
    const std::vector<OpState::Part> parts = states_[n]->parts();
    for (std::size_t k = 0; k < parts.size(); ++k)
      parts_.push_back({n, static_cast<int>(k),
                        g.value(g.node(n).outputs[0]).name + "." + parts[k].name, parts[k].shape});
  }
}

const ValueMeta& ModelStream::step_input(int i) const { return step_inputs_[i]; }

const ValueMeta& ModelStream::step_output(int j) const {
  if (step_plan_) return step_plan_->output(j);
  return pattern_plans_[plan_of_pattern_[(1u << layout_.clocks.size()) - 1]]->output(j);
}

void ModelStream::clock_counts(std::int64_t* seen) const noexcept {
  seen[0] = 0;
  for (std::size_t k = 1; k < layout_.clocks.size(); ++k)
    seen[k] = states_[layout_.clocks[k].node]->frames_seen();
}

std::uint32_t ModelStream::next_ticks(const std::int64_t* seen) const noexcept {
  std::uint32_t ticks = 1;
  for (std::size_t k = 1; k < layout_.clocks.size(); ++k) {
    const StreamClock& clock = layout_.clocks[k];
    if ((ticks >> clock.parent & 1u) && clock.window.emits(seen[k] + 1)) ticks |= 1u << k;
  }
  return ticks;
}

bool ModelStream::output_ticked(int j) const noexcept {
  const int clock = layout_.output_clock[j];
  return clock < 0 || (last_ticks_ >> clock & 1u);
}

std::int64_t ModelStream::feed_frames(int j, std::int64_t frames) const {
  const int clock = layout_.output_clock[j];
  if (clock < 0) return -1;
  if (clock == 0) return frames;
  std::int64_t seen[kMaxClocks];
  clock_counts(seen);
  std::int64_t count = 0;
  for (std::int64_t f = 0; f < frames; ++f) {
    const std::uint32_t ticks = next_ticks(seen);
    count += ticks >> clock & 1u;
    for (std::size_t k = 1; k < layout_.clocks.size(); ++k)
      if (ticks >> layout_.clocks[k].parent & 1u)
        seen[k] = layout_.clocks[k].window.fold(seen[k] + 1);
  }
  return count;
}

RunStatus ModelStream::step_clocked(const KernelTable& kernels, const void* const* inputs,
                                    void* const* outputs) {
  std::int64_t seen[kMaxClocks];
  clock_counts(seen);
  last_ticks_ = next_ticks(seen);
  return pattern_plans_[plan_of_pattern_[last_ticks_]]->run(kernels, inputs, outputs);
}

ModelStream::Slab ModelStream::slab_of(const ValueMeta& one_frame, int time_axis) {
  const Shape& s = one_frame.shape;
  return {s.span(0, time_axis),
          static_cast<std::size_t>(s.span(time_axis + 1, s.rank)) * dtype_size(one_frame.dtype)};
}

RunStatus ModelStream::step(const KernelTable& kernels, const void* const* inputs,
                            void* const* outputs) {
  Exclusive hold(*this);
  if (!step_plan_) return step_clocked(kernels, inputs, outputs);
  return step_plan_->run(kernels, inputs, outputs);
}

RunStatus ModelStream::feed(const KernelTable& kernels, std::int64_t frames,
                            const void* const* inputs, void* const* outputs) {
  Exclusive hold(*this);
  const Graph& g = *graph_;
  RunStatus status;
  const auto record = [&status](const RunStatus& s) {
    if (status.message == nullptr && s.message != nullptr) status = s;
  };
  // Frames [t0, t0 + count) through `plan` (chunk or step), gathering and scattering frames of
  // layouts whose time axis is not outermost.
  const auto run = [&](Plan& plan, std::int64_t t0, std::int64_t count) {
    for (std::size_t i = 0; i < g.inputs().size(); ++i) {
      const int axis = layout_.input_time[i];
      const Slab slab = slab_of(step_inputs_[i], axis);
      const auto* src = static_cast<const std::byte*>(inputs[i]);
      if (axis == 0) {
        input_pointers_[i] = src + t0 * static_cast<std::ptrdiff_t>(slab.frame);
      } else {
        auto* dst = reinterpret_cast<std::byte*>(input_scratch_[i].data());
        for (std::int64_t o = 0; o < slab.outer; ++o)
          std::memcpy(dst + o * count * slab.frame, src + (o * frames + t0) * slab.frame,
                      count * slab.frame);
        input_pointers_[i] = dst;
      }
    }
    for (std::size_t j = 0; j < g.outputs().size(); ++j) {
      const int axis = layout_.output_time[j];
      if (axis < 0) {
        output_pointers_[j] = outputs[j];  // the last run's value stays
      } else if (axis == 0) {
        const Slab slab = slab_of(step_plan_->output(static_cast<int>(j)), 0);
        output_pointers_[j] = static_cast<std::byte*>(outputs[j]) + t0 * slab.frame;
      } else {
        output_pointers_[j] = output_scratch_[j].data();
      }
    }
    record(plan.run(kernels, input_pointers_.data(), output_pointers_.data()));
    for (std::size_t j = 0; j < g.outputs().size(); ++j) {
      const int axis = layout_.output_time[j];
      if (axis <= 0) continue;
      const Slab slab = slab_of(step_plan_->output(static_cast<int>(j)), axis);
      const auto* src = reinterpret_cast<const std::byte*>(output_scratch_[j].data());
      auto* dst = static_cast<std::byte*>(outputs[j]);
      for (std::int64_t o = 0; o < slab.outer; ++o)
        std::memcpy(dst + (o * frames + t0) * slab.frame, src + o * count * slab.frame,
                    count * slab.frame);
    }
  };
  if (!chunk_plan_) {
    // Frame by frame: each step's frame gathered into one-frame buffers, each ticking output's
    // frame written at its own next position.
    const std::size_t n_out = g.outputs().size();
    // Positions and totals of output frames (the caller's arrays hold `total` frames).
    constexpr std::size_t kInline = 16;
    std::int64_t inline_counts[2 * kInline];
    std::vector<std::int64_t> heap(n_out > kInline ? 2 * n_out : 0);
    std::int64_t* position = n_out > kInline ? heap.data() : inline_counts;
    std::int64_t* output_totals = position + (n_out > kInline ? n_out : kInline);
    for (std::size_t j = 0; j < n_out; ++j) {
      position[j] = 0;
      output_totals[j] = feed_frames(static_cast<int>(j), frames);
    }
    for (std::int64_t t = 0; t < frames; ++t) {
      for (std::size_t i = 0; i < g.inputs().size(); ++i) {
        const Slab slab = slab_of(step_inputs_[i], layout_.input_time[i]);
        const auto* src = static_cast<const std::byte*>(inputs[i]);
        auto* dst = reinterpret_cast<std::byte*>(frame_in_[i].data());
        for (std::int64_t o = 0; o < slab.outer; ++o)
          std::memcpy(dst + o * slab.frame, src + (o * frames + t) * slab.frame, slab.frame);
        input_pointers_[i] = dst;
      }
      for (std::size_t j = 0; j < n_out; ++j)
        output_pointers_[j] = layout_.output_time[j] < 0 ? outputs[j] : frame_out_[j].data();
      record(step_clocked(kernels, input_pointers_.data(), output_pointers_.data()));
      for (std::size_t j = 0; j < n_out; ++j) {
        const int axis = layout_.output_time[j];
        if (axis < 0 || !output_ticked(static_cast<int>(j))) continue;
        const Slab slab = slab_of(step_output(static_cast<int>(j)), axis);
        const std::int64_t total = output_totals[j];
        const auto* src = reinterpret_cast<const std::byte*>(frame_out_[j].data());
        auto* dst = static_cast<std::byte*>(outputs[j]);
        for (std::int64_t o = 0; o < slab.outer; ++o)
          std::memcpy(dst + (o * total + position[j]) * slab.frame, src + o * slab.frame,
                      slab.frame);
        ++position[j];
      }
    }
    return status;
  }
  std::int64_t t = 0;
  for (; t + chunk_ <= frames; t += chunk_) run(*chunk_plan_, t, chunk_);
  for (; t < frames; ++t) run(*step_plan_, t, 1);
  return status;
}

void ModelStream::reset() {
  Exclusive hold(*this);
  for (auto& state : states_)
    if (state) state->reset();
}

void ModelStream::reset_row(std::int64_t row) {
  if (layout_.clocks.size() > 1)
    throw std::invalid_argument(
        "reset(rows): the rows of this stream share the frame count of a strided or delayed "
        "window along time, so one row cannot restart alone; reset() them all or use a stream "
        "per sequence");
  if (row < 0 || row >= rows_)
    throw std::out_of_range("row " + std::to_string(row) + " is out of range for " +
                            std::to_string(rows_) + " rows");
  Exclusive hold(*this);
  for (auto& state : states_)
    if (state) state->reset_row(static_cast<int>(row));
}

void ModelStream::get_state(int index, float* data) const {
  Exclusive hold(*this);
  const StatePart& p = parts_.at(index);
  states_[p.node]->get(p.part, data);
}

void ModelStream::set_state(int index, const float* data) {
  Exclusive hold(*this);
  const StatePart& p = parts_.at(index);
  states_[p.node]->set(p.part, data);
}

ModelStream::Exclusive::Exclusive(const ModelStream& stream) : flag_(stream.in_use_) {
  if (flag_.exchange(true, std::memory_order_acquire))
    throw StreamBusy(
        "this stream is already in use by another thread; give each thread its own stream "
        "(clone())");
}

}  // namespace pyrnn::graph
