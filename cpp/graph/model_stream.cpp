// Streaming a whole model (see model_stream.h): plans for one frame and for a chunk, shared
// states, and the gathering of chunk frames from layouts whose time axis is not outermost.
#include "graph/model_stream.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace pyrnn::graph {

ModelStream::ModelStream(std::shared_ptr<const Graph> graph, StreamLayout layout,
                         std::int64_t rows, int chunk_frames)
    : graph_(std::move(graph)), layout_(std::move(layout)), rows_(rows), chunk_(chunk_frames) {
  if (rows < 1 || rows > INT32_MAX)
    throw std::invalid_argument("batch: expected 1 to 2^31-1 rows, got " + std::to_string(rows));
  if (chunk_frames < 1) throw std::invalid_argument("chunk: expected >= 1 frames");
  const Graph& g = *graph_;
  const std::vector<ValueMeta> one = infer_values(
      g, stream_input_metas(g, layout_, 1, rows_), &layout_.value_time);
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

void ModelStream::make_plans() {
  const Graph& g = *graph_;
  state_pointers_.clear();
  for (const auto& state : states_) state_pointers_.push_back(state.get());
  step_inputs_ = stream_input_metas(g, layout_, 1, rows_);
  step_plan_ = std::make_unique<Plan>(graph_, step_inputs_, &layout_.value_time, &state_pointers_);
  chunk_plan_ = std::make_unique<Plan>(graph_, stream_input_metas(g, layout_, chunk_, rows_),
                                       &layout_.value_time, &state_pointers_);
  // Chunks of inputs/outputs whose time axis is not outermost are gathered into scratch.
  input_scratch_.clear();
  for (std::size_t i = 0; i < g.inputs().size(); ++i) {
    const ValueMeta& meta = chunk_plan_->values()[g.inputs()[i].value];
    input_scratch_.emplace_back(layout_.input_time[i] > 0 ? (meta.bytes() + 3) / 4 : 0);
  }
  output_scratch_.clear();
  for (std::size_t j = 0; j < g.outputs().size(); ++j) {
    const ValueMeta& meta = chunk_plan_->output(static_cast<int>(j));
    output_scratch_.emplace_back(layout_.output_time[j] != 0 ? (meta.bytes() + 3) / 4 : 0);
  }
  input_pointers_.assign(g.inputs().size(), nullptr);
  output_pointers_.assign(g.outputs().size(), nullptr);
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

ModelStream::Slab ModelStream::slab_of(const ValueMeta& one_frame, int time_axis) {
  const Shape& s = one_frame.shape;
  return {s.span(0, time_axis),
          static_cast<std::size_t>(s.span(time_axis + 1, s.rank)) * dtype_size(one_frame.dtype)};
}

RunStatus ModelStream::step(const KernelTable& kernels, const void* const* inputs,
                            void* const* outputs) {
  Exclusive hold(*this);
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
    throw std::runtime_error(
        "this stream is already in use by another thread; give each thread its own stream "
        "(clone())");
}

}  // namespace pyrnn::graph
