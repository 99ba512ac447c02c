// Finding a model's stream layout (see stream_layout.h).
#include "graph/stream_layout.h"

#include <stdexcept>

#include "graph/plan.h"

namespace pyrnn::graph {
namespace {

// Distinctive extents for the probes: frames long enough for any kernel window, and two batch
// sizes unlikely to equal a fixed dim.
constexpr std::int64_t kProbeFrames = 257;
constexpr std::int64_t kProbeBatch[2] = {3, 5};

std::vector<int> free_dims(const GraphInput& input) {
  std::vector<int> axes;
  for (std::size_t a = 0; a < input.dims.size(); ++a)
    if (input.dims[a] < 0) axes.push_back(static_cast<int>(a));
  return axes;
}

struct Attempt {
  bool ok = false;
  int failed_node = -1;
  bool wrong_axis = false;  // failed because the candidate cannot be the time axis at all
  std::string error;
  std::vector<int> value_time;
  std::vector<int> value_clock;
  std::vector<bool> stateful;
  std::vector<StreamClock> clocks;
};

// Follows the time axes from the inputs through every node.
Attempt follow_time(const Graph& g, const std::vector<int>& input_time,
                    const std::vector<int>& input_batch) {
  Attempt attempt;
  attempt.value_time.assign(g.value_count(), -1);
  attempt.value_clock.assign(g.value_count(), -1);
  attempt.stateful.assign(g.node_count(), false);
  attempt.clocks.push_back({});
  std::vector<ValueMeta> metas;
  for (std::size_t i = 0; i < g.inputs().size(); ++i) {
    const GraphInput& input = g.inputs()[i];
    ValueMeta meta;
    meta.dtype = input.dtype;
    for (std::size_t a = 0; a < input.dims.size(); ++a) {
      std::int64_t extent = input.dims[a];
      if (static_cast<int>(a) == input_time[i])
        extent = kProbeFrames;
      else if (static_cast<int>(a) == input_batch[i])
        extent = kProbeBatch[0];
      meta.shape.push_back(extent);
    }
    metas.push_back(meta);
    attempt.value_time[input.value] = input_time[i];
    attempt.value_clock[input.value] = 0;
  }
  std::vector<ValueMeta> values;
  try {
    values = infer_values(g, metas);
  } catch (const std::exception& error) {
    attempt.error = error.what();
    return attempt;
  }
  for (int n = 0; n < g.node_count(); ++n) {
    const NodeDef& node = g.node(n);
    std::vector<int> axes;
    int clock = -1;
    try {
      for (int v : node.inputs) {
        axes.push_back(v >= 0 ? attempt.value_time[v] : -1);
        if (v < 0 || attempt.value_clock[v] < 0) continue;
        if (clock >= 0 && clock != attempt.value_clock[v])
          throw std::invalid_argument(
              "it joins frames of different rates or delays (after a strided or delayed window "
              "along time on one side only)");
        clock = attempt.value_clock[v];
      }
      const TimeFlow flow = g.op(n).time_flow(axes, node, values);
      if (flow.windowed && !flow.window.aligned()) {
        attempt.clocks.push_back({clock, n, flow.window});
        clock = static_cast<int>(attempt.clocks.size()) - 1;
      }
      for (std::size_t k = 0; k < node.outputs.size(); ++k) {
        attempt.value_time[node.outputs[k]] = flow.output_axes[k];
        attempt.value_clock[node.outputs[k]] = flow.output_axes[k] >= 0 ? clock : -1;
      }
      attempt.stateful[n] = flow.stateful;
    } catch (const std::exception& error) {
      attempt.failed_node = n;
      attempt.wrong_axis = dynamic_cast<const NotTheTimeAxis*>(&error) != nullptr;
      attempt.error = g.describe(n) + " cannot stream: " + error.what();
      return attempt;
    }
  }
  attempt.ok = true;
  return attempt;
}

}  // namespace

StreamLayout find_stream_layout(const Graph& g, const std::vector<int>* forced_time) {
  const std::size_t inputs = g.inputs().size();
  if (inputs == 0) throw std::invalid_argument("a model without inputs cannot stream");
  // Candidates: every free dim of input 0 as time (one input is the common case); with more
  // inputs, each takes the same choice among its own free dims. Forced axes skip the search.
  std::vector<std::vector<int>> candidates;
  if (forced_time != nullptr) {
    if (forced_time->size() != inputs)
      throw std::invalid_argument("time_axis: expected one axis per input (" +
                                  std::to_string(inputs) + "), got " +
                                  std::to_string(forced_time->size()));
    candidates.push_back(*forced_time);
  } else {
    const std::vector<int> first = free_dims(g.inputs()[0]);
    for (std::size_t k = 0; k < first.size(); ++k) {
      std::vector<int> choice;
      bool possible = true;
      for (std::size_t i = 0; i < inputs && possible; ++i) {
        const std::vector<int> axes = free_dims(g.inputs()[i]);
        possible = k < axes.size();
        if (possible) choice.push_back(axes[k]);
      }
      if (possible) candidates.push_back(choice);
    }
    if (candidates.empty())
      throw std::invalid_argument(
          "no input has a free dimension to carry time (the model fixes every input dim)");
  }

  StreamLayout layout;
  Attempt best;
  int found = 0;
  for (const std::vector<int>& time : candidates) {
    std::vector<int> batch;
    for (std::size_t i = 0; i < inputs; ++i) {
      const GraphInput& input = g.inputs()[i];
      if (time[i] < 0 || time[i] >= static_cast<int>(input.dims.size()) || input.dims[time[i]] >= 0)
        throw std::invalid_argument("time_axis " + std::to_string(time[i]) + " of input '" +
                                    g.value(input.value).name + "' is not a free dimension");
      int other = -1;
      for (int a : free_dims(input)) {
        if (a == time[i]) continue;
        if (other >= 0)
          throw std::invalid_argument("input '" + g.value(input.value).name +
                                      "' has more than two free dimensions; a stream needs one "
                                      "for time and at most one for the batch");
        other = a;
      }
      batch.push_back(other);
    }
    Attempt attempt = follow_time(g, time, batch);
    if (attempt.ok) {
      if (++found == 1) {
        layout.input_time = time;
        layout.input_batch = batch;
        layout.value_time = attempt.value_time;
        layout.value_clock = attempt.value_clock;
        layout.stateful = attempt.stateful;
        layout.clocks = attempt.clocks;
      }
    } else {
      // The most telling failure: the one that got furthest, and among equals a real reason
      // over "this was not the time axis".
      const auto rank = [](const Attempt& a) { return 2 * a.failed_node + (a.wrong_axis ? 0 : 1); };
      if (best.error.empty() || rank(attempt) >= rank(best)) best = std::move(attempt);
    }
  }
  if (found == 0) throw std::invalid_argument(best.error);
  if (found > 1)
    throw std::invalid_argument(
        "more than one free dimension could carry time; pass time_axis to say which");

  // Each output's time axis, and its batch axis from two probes that differ only in batch.
  for (int v : g.outputs()) {
    layout.output_time.push_back(layout.value_time[v]);
    layout.output_clock.push_back(layout.value_clock[v]);
  }
  std::vector<ValueMeta> probes[2];
  for (int p = 0; p < 2; ++p) {
    probes[p] = infer_values(g, stream_input_metas(g, layout, kProbeFrames, kProbeBatch[p]),
                             &layout.value_time);
  }
  for (std::size_t j = 0; j < g.outputs().size(); ++j) {
    const Shape& a = probes[0][g.outputs()[j]].shape;
    const Shape& b = probes[1][g.outputs()[j]].shape;
    int axis = -1;
    for (int k = 0; k < a.rank; ++k) {
      if (a[k] == b[k]) continue;
      if (axis >= 0 || a[k] != kProbeBatch[0] || b[k] != kProbeBatch[1])
        throw std::invalid_argument("output " + std::to_string(j) +
                                    " mixes the batch with other dimensions");
      axis = k;
    }
    layout.output_batch.push_back(axis);
  }
  return layout;
}

std::vector<ValueMeta> stream_input_metas(const Graph& g, const StreamLayout& layout,
                                          std::int64_t frames, std::int64_t batch) {
  std::vector<ValueMeta> metas;
  for (std::size_t i = 0; i < g.inputs().size(); ++i) {
    const GraphInput& input = g.inputs()[i];
    ValueMeta meta;
    meta.dtype = input.dtype;
    for (std::size_t a = 0; a < input.dims.size(); ++a) {
      std::int64_t extent = input.dims[a];
      if (static_cast<int>(a) == layout.input_time[i])
        extent = frames;
      else if (static_cast<int>(a) == layout.input_batch[i])
        extent = batch;
      meta.shape.push_back(extent);
    }
    metas.push_back(meta);
  }
  return metas;
}

}  // namespace pyrnn::graph
