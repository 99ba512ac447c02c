// The interface every graph op implements, and the contexts it sees: at build time (operands
// and constants, to check arity and pack weights), when a plan infers shapes, when a plan binds
// the op to concrete shapes (a Kernel), and when that kernel runs.
//
// An op object is immutable once built and shared by every plan and stream of its graph, on
// any thread. Everything that depends on shapes lives in the Kernel a plan makes from it;
// everything a stream carries from one call to the next lives in an OpState.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/kernel_table.h"
#include "core/packed_panels.h"
#include "core/weight_type.h"
#include "graph/attrs.h"
#include "graph/tensor.h"

namespace pyrnn::graph {

class Graph;
struct Constant;
struct ConstantBytes;

// How an op packs a weight matrix: its rows in `groups` consecutive blocks of gates*units rows
// (a convolution's groups; 1 otherwise), each packed as PackedPanels(block, gates, units, k).
struct PackLayout {
  int gates = 1, units = 0, k = 0, groups = 1;
  bool operator==(const PackLayout& o) const noexcept {
    return gates == o.gates && units == o.units && k == o.k && groups == o.groups;
  }
};

struct NodeDef {
  std::string op;
  std::vector<int> inputs;  // value ids; -1 where an optional operand is absent
  std::vector<int> outputs;
  Attrs attrs;
  std::string source;  // where it came from (module path, file:line), for error messages
};

// Build time: what an op may know before any shape is: its operands' kinds and the constants.
class BuildContext {
 public:
  // `packed` (one flag per operand, may be null) records the operands taken by pack().
  BuildContext(Graph& graph, const NodeDef& node, std::vector<char>* packed = nullptr)
      : graph_(graph), node_(node), packed_(packed) {}
  // The same node seen through `view` (a copy of it with fewer operands), sharing the record.
  BuildContext within(const NodeDef& view) const { return BuildContext(graph_, view, packed_); }
  const Graph& graph() const noexcept { return graph_; }
  const NodeDef& node() const noexcept { return node_; }
  const Attrs& attrs() const noexcept { return node_.attrs; }
  int inputs() const noexcept { return static_cast<int>(node_.inputs.size()); }
  bool has(int i) const noexcept { return i < inputs() && node_.inputs[i] >= 0; }
  // Throw std::invalid_argument unless operand i is present (an absent one is -1) and a
  // tensor / an int.
  void require_tensor(int i, const char* role) const;
  void require_int(int i, const char* role) const;
  // Operand count in [low, high] (high < 0: unbounded).
  void require_inputs(int low, int high) const;
  void require_outputs(int count) const;
  // Operand i as a constant tensor (weights must be): throws unless it is one, and unless it
  // is float32 or int64.
  struct ConstantView {
    DType dtype;
    Shape shape;
    const void* data;
    const float* scales;  // I8: one per row (dim 0); null otherwise
    // A weight fetched for packing lives as long as its view: let the view go once packed.
    std::shared_ptr<const void> keep;
    const float* floats() const noexcept { return static_cast<const float*>(data); }
    // Rows [first_row, ...) as a weight matrix of its storage type (F32, F16, BF16 or I8).
    WeightMatrix matrix(std::int64_t first_row = 0) const;
  };
  ConstantView constant(int i, const char* role) const;
  // Operand i as a weight matrix, without its data (null): its dtype and shape, which may
  // also be F16, BF16 or I8 (the caller checks the dtype it accepts).
  ConstantView weight_info(int i, const char* role) const;
  // Operand i's matrix packed in `layout` (its dtype and shape checked by the caller against
  // weight_info): one PackedPanels per group. Only ops that pack weights call it; the plain
  // bytes are fetched for it and let go once packed, unless already packed alike.
  std::vector<PackedPanels> pack(int i, const char* role, const PackLayout& layout) const;
  bool is_constant(int i) const;

 private:
  const Constant& find(int i, const char* role) const;
  ConstantView view(const Constant& c, ConstantBytes bytes) const;

  Graph& graph_;
  const NodeDef& node_;
  std::vector<char>* packed_;
};

// Shape inference: operands' metas in, outputs' metas out.
class InferContext {
 public:
  InferContext(const NodeDef& node, std::vector<ValueMeta>& values, std::int64_t emitted = -1)
      : node_(node), values_(values), emitted_(emitted) {}
  // Streams: the frames a windowed op emits in this plan (0 or 1 per step); -1 elsewhere.
  std::int64_t emitted() const noexcept { return emitted_; }
  int inputs() const noexcept { return static_cast<int>(node_.inputs.size()); }
  bool has(int i) const noexcept { return i < inputs() && node_.inputs[i] >= 0; }
  const ValueMeta& in(int i) const { return values_[node_.inputs[i]]; }
  std::int64_t integer(int i) const { return values_[node_.inputs[i]].int_value; }
  void set_tensor(int i, DType dtype, const Shape& shape);
  void set_int(int i, std::int64_t value);

 private:
  const NodeDef& node_;
  std::vector<ValueMeta>& values_;
  std::int64_t emitted_;
};

// Where a kernel reports a problem only the data reveals (an embedding index out of range):
// kernels never throw, so they record the first failure here and the caller raises after the
// run. The message must be a string literal.
struct RunStatus {
  int node = -1;
  const char* message = nullptr;
  std::int64_t detail = 0;
  void fail(int failed_node, const char* what, std::int64_t value) noexcept {
    if (message == nullptr) {
      node = failed_node;
      message = what;
      detail = value;
    }
  }
};

struct RunContext {
  void* const* values;  // per value id: its data (inputs, constants, arena, caller's outputs)
  const KernelTable& kernels;
  RunStatus* status;

  template <class T>
  T* ptr(int value) const noexcept {
    return static_cast<T*>(values[value]);
  }
};

// An op bound to one plan's shapes: precomputed sizes, owned scratch. Never allocates in run.
class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual void run(const RunContext& ctx) noexcept = 0;
  int node = -1;  // set by the plan, for RunStatus reports

 protected:
  void fail(const RunContext& ctx, const char* what, std::int64_t value) const noexcept {
    ctx.status->fail(node, what, value);
  }
};

// What a stream carries for one stateful op between calls (a recurrent layer's h and c, a
// convolution's past frames), for a fixed number of rows.
class OpState {
 public:
  virtual ~OpState() = default;
  virtual std::unique_ptr<OpState> clone() const = 0;
  virtual void reset() noexcept = 0;
  virtual void reset_row(int row) noexcept = 0;
  // The state as named float arrays (e.g. "h" (L, N, P)), to read, write, pickle.
  struct Part {
    std::string name;
    Shape shape;
  };
  virtual std::vector<Part> parts() const = 0;
  virtual void get(int part, float* data) const = 0;
  virtual void set(int part, const float* data) = 0;
  // Windowed ops: padded input frames seen so far (folded, see TimeWindow::fold); -1 otherwise.
  virtual std::int64_t frames_seen() const noexcept { return -1; }
};

// Binding an op to the shapes of one plan.
class PrepareContext {
 public:
  PrepareContext(const NodeDef& node, const std::vector<ValueMeta>& values, OpState* state,
                 const std::vector<bool>* used = nullptr)
      : node_(node), values_(values), state_(state), used_(used) {}
  const NodeDef& node() const noexcept { return node_; }
  bool has(int i) const noexcept {
    return i < static_cast<int>(node_.inputs.size()) && node_.inputs[i] >= 0;
  }
  const ValueMeta& in(int i) const { return values_[node_.inputs[i]]; }
  const ValueMeta& out(int i) const { return values_[node_.outputs[i]]; }
  int in_id(int i) const noexcept { return has(i) ? node_.inputs[i] : -1; }
  int out_id(int i) const noexcept { return node_.outputs[i]; }
  // A stream's state for this node (streams only; null in a whole-sequence plan).
  OpState* state() const noexcept { return state_; }
  // Whether anything reads output i (a later node or the caller): an op may skip writing an
  // output nobody reads (a recurrent layer's h_n in a stream that only uses its outputs).
  bool used(int i) const noexcept { return used_ == nullptr || (*used_)[node_.outputs[i]]; }

 private:
  const NodeDef& node_;
  const std::vector<ValueMeta>& values_;
  OpState* state_;
  const std::vector<bool>* used_;
};

// How an op treats the time axis when a model streams: which axis of each output carries the
// time axis of its inputs, whether it keeps state across calls, and what it delays.
// A window sliding along time (convolution, pooling): an output frame once `span` frames of
// the left-padded input have arrived, then one every `stride` frames. A stream emits output j
// when input frame j*stride + span - 1 - pad_left arrives; padding on the right would only add
// frames after the end of the sequence, which a stream never reaches.
struct TimeWindow {
  std::int64_t stride = 1, span = 1, pad_left = 0;
  // Every input frame gives exactly the output frame of the same index: no delay, no stride.
  bool aligned() const noexcept { return stride == 1 && pad_left == span - 1; }
  // Whether the frame that brings the count of (padded) frames seen to `seen` completes a
  // window.
  bool emits(std::int64_t seen) const noexcept {
    return seen >= span && (seen - span) % stride == 0;
  }
  // `seen` reduced to an equivalent small count (same emissions and padding from here on).
  std::int64_t fold(std::int64_t seen) const noexcept {
    const std::int64_t settled = span + pad_left;
    return seen < settled + stride ? seen : settled + (seen - settled) % stride;
  }
};

struct TimeFlow {
  TimeFlow(std::vector<int> axes, bool carries_state) noexcept
      : output_axes(std::move(axes)), stateful(carries_state) {}
  // A window along time: outputs follow `w` (convolution, pooling).
  static TimeFlow windowed_by(std::vector<int> axes, const TimeWindow& w) {
    TimeFlow flow(std::move(axes), true);
    flow.windowed = true;
    flow.window = w;
    return flow;
  }

  std::vector<int> output_axes;  // per output: the time axis, or -1 (no time axis)
  bool stateful = false;         // carries an OpState between calls (recurrent layers, convs)
  bool windowed = false;
  TimeWindow window;
};

// Thrown by time_flow when the axis offered as time cannot be it (a recurrent layer's input
// carrying it on its batch or feature axis): the search for the time axis tries another rather
// than reporting this as the reason the model cannot stream.
struct NotTheTimeAxis : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Op {
 public:
  virtual ~Op() = default;
  virtual void infer(InferContext& ctx) const = 0;
  // Output 0 as a view of input 0's bytes, starting that many elements in (no copy, no kernel);
  // nullopt when the op must compute or copy.
  virtual std::optional<std::int64_t> view_offset(const ValueMeta& in, const ValueMeta& out,
                                                  const NodeDef& node,
                                                  const std::vector<ValueMeta>& values) const {
    (void)in, (void)out, (void)node, (void)values;
    return std::nullopt;
  }
  // The kernel for these shapes; nullptr when there is nothing to run (ints, views).
  virtual std::unique_ptr<Kernel> prepare(const PrepareContext& ctx) const = 0;

  // Streaming: given the time axis of each input (-1: none), where time goes. Throws
  // std::invalid_argument (naming the reason) if the op needs frames that have not arrived yet.
  // `values` holds the metas of a plan made with the time axis at a distinctive extent.
  virtual TimeFlow time_flow(const std::vector<int>& input_axes, const NodeDef& node,
                             const std::vector<ValueMeta>& values) const;
  // The state a stream keeps for this op, for the shapes of one step (stateful ops only).
  virtual std::unique_ptr<OpState> make_state(const NodeDef& node,
                                              const std::vector<ValueMeta>& values) const {
    (void)node, (void)values;
    return nullptr;
  }
  // Ops that pack weights: writes the weight they took as `operand` back from their packed
  // copy, bit-exactly, in its storage type and layout; false for any other operand.
  virtual bool read_weight(const NodeDef& node, int operand, void* out) const {
    (void)node, (void)operand, (void)out;
    return false;
  }
};

// The op named node.op, checked against its operands and attributes; throws
// std::invalid_argument for an unknown op or a malformed node.
std::unique_ptr<Op> make_op(const BuildContext& ctx);

}  // namespace pyrnn::graph
