// Where time and batch go when a model streams. For each graph input one of its free dims is
// the time axis (frames arrive along it) and at most one other free dim is the batch axis; the
// time axis is followed through every op (TimeFlow), which refuses anything that would need
// frames not yet arrived. The batch axis of each output is found by inferring shapes for two
// batch sizes and seeing which axis follows.
#pragma once

#include <string>
#include <vector>

#include "graph/graph.h"

namespace pyrnn::graph {

// The frame rate of some values: clock 0 ticks with every input frame; a window along time
// that strides or delays (TimeWindow::aligned() false) starts a clock of its own, ticking when
// it emits a frame.
struct StreamClock {
  int parent = -1;  // the clock of the window's input; -1 for clock 0
  int node = -1;    // the windowed node driving it
  TimeWindow window;
};

struct StreamLayout {
  std::vector<int> input_time;    // per graph input
  std::vector<int> input_batch;   // per graph input, -1: none
  std::vector<int> output_time;   // per graph output, -1: the output has no time axis
  std::vector<int> output_batch;  // per graph output, -1: does not depend on the batch
  std::vector<int> output_clock;  // per graph output, -1 without a time axis
  std::vector<int> value_time;    // per value
  std::vector<int> value_clock;   // per value, -1 without a time axis
  std::vector<bool> stateful;     // per node
  std::vector<StreamClock> clocks;
};

// The layout for streaming `graph`. `forced_time` (per input, may be null) names the time
// axes instead of searching the free dims. Throws std::invalid_argument naming the op (and
// why) when the model cannot run frame by frame.
StreamLayout find_stream_layout(const Graph& graph, const std::vector<int>* forced_time);

// The metas of the graph inputs for `frames` frames of `batch` rows.
std::vector<ValueMeta> stream_input_metas(const Graph& graph, const StreamLayout& layout,
                                          std::int64_t frames, std::int64_t batch);

}  // namespace pyrnn::graph
