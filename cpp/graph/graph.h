// A model's graph, built once and then immutable: named values (inputs, constants, int
// literals, node outputs), nodes in execution order each holding its op, and the outputs.
// Building checks everything that does not depend on shapes: every operand is defined before
// its use (so there are no cycles or dangling edges), names are unique, ops and attributes are
// valid, weights are constants (packed once here). Shapes are checked when a plan is made.
//
// A weight matrix that ops only pack is held once, in their packed panels: its plain bytes are
// fetched from the caller's source when a node packs it and let go after, and read back from
// the panels (bit-exactly) on demand. Constants read as values (biases, tables, operands of
// element-wise ops) and constants no node packs are held as a copy.
//
// A graph built on another one's constants (a model's graph without some of its inputs) takes
// the other's copies and packed panels of the constants both hold, rather than its own: both
// are immutable, shared by the graphs that read them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/aligned_buffer.h"
#include "core/packed_panels.h"
#include "graph/op.h"
#include "graph/tensor.h"

namespace pyrnn::graph {

struct ValueInfo {
  std::string name;
  bool is_int = false;
  int producer = -1;  // node index; -1 for inputs, constants and literals
  std::optional<std::int64_t> literal;
};

struct GraphInput {
  int value;
  DType dtype;
  std::vector<std::int64_t> dims;  // -1 where the dim is free
};

struct Constant {
  int value;
  DType dtype;
  Shape shape;
  // 64-byte aligned copy while `held` (read-only, maybe another graph's); null when only packed.
  std::shared_ptr<const AlignedBuffer> data;
  AlignedBuffer scales;  // I8 only: one scale per row (dim 0), weight = q * scale
  bool held = false;
  bool as_value = false;  // read as a value by some node or the caller: the copy stays
  int packer = -1;        // a node that packed it (to read it back), or -1
  int operand = -1;       // and the operand it took it as

  std::size_t bytes() const;
  // The copy's elements (null when not held or empty).
  const float* values() const noexcept { return data ? data->data() : nullptr; }
};

// The bytes of a constant added without them, from the caller: `keep` holds `data` alive for
// as long as the graph reads it (a node packing it), then lets it go.
struct ConstantBytes {
  const void* data = nullptr;
  std::shared_ptr<const void> keep;
};
using ConstantSource = std::function<ConstantBytes(const std::string& name)>;

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Building, in order: inputs and constants, then nodes, then outputs. Each throws
  // std::invalid_argument naming what is wrong.
  void add_input(const std::string& name, DType dtype, const std::vector<std::int64_t>& dims);
  // A narrow (F16, BF16, I8) constant is a weight matrix that only ops packing weights may
  // take (linear, conv1d, rnn, rnn_cell); I8 needs `scales`, one finite, positive float per
  // row (dim 0), copied; other dtypes take none.
  void add_constant(const std::string& name, DType dtype, const Shape& shape, const void* data,
                    const float* scales = nullptr);
  // A constant whose bytes come from `source` when a node first needs them (set_source first).
  void add_deferred_constant(const std::string& name, DType dtype, const Shape& shape,
                             const float* scales = nullptr);
  void set_source(ConstantSource source) { source_ = std::move(source); }
  // Before any node: the constants named in `names` hold the same bytes here as in `base`
  // (a complete graph), so this graph shares base's copy and packed panels of each rather
  // than making its own, where dtype, shape, scales and packing layout agree.
  void share_from(std::shared_ptr<const Graph> base, const std::vector<std::string>& names);
  // An operand is a value name, an int literal, or absent.
  struct Operand {
    enum Kind { Name, Literal, Absent } kind = Absent;
    std::string name;
    std::int64_t literal = 0;
  };
  void add_node(const std::string& op, const std::vector<Operand>& inputs,
                const std::vector<std::string>& outputs, Attrs attrs, const std::string& source);
  // Completes the graph: every constant no node packed is held as a copy, the copies of those
  // only packed are released, and the source (and the graph shared from) is let go.
  void set_outputs(const std::vector<std::string>& names);

  int value_count() const noexcept { return static_cast<int>(values_.size()); }
  const ValueInfo& value(int id) const { return values_[id]; }
  int node_count() const noexcept { return static_cast<int>(nodes_.size()); }
  const NodeDef& node(int index) const { return nodes_[index]; }
  const Op& op(int index) const { return *ops_[index]; }
  const std::vector<GraphInput>& inputs() const noexcept { return inputs_; }
  const std::vector<int>& outputs() const noexcept { return outputs_; }
  const std::vector<Constant>& constants() const noexcept { return constants_; }
  // The constant behind a value, or null.
  const Constant* constant(int value) const noexcept;
  // The constant named `name`, or null.
  const Constant* constant(const std::string& name) const noexcept;
  // Writes the bytes of `c` (shape.numel() elements of its dtype) to `out`: its copy, or read
  // back from the panels of the node that packed it.
  void read(const Constant& c, void* out) const;
  // Building only: the bytes of constant `c` as they are now (its copy, or fetched); and
  // making sure it has a copy (for ops that keep pointers into it).
  ConstantBytes bytes(const Constant& c) const;
  const Constant& hold(int value);
  // Building only: the matrix of constant `c` packed in `layout` (one PackedPanels per group),
  // packed once: a second node packing it alike, or a graph sharing this one's constants,
  // gets the same panels.
  std::vector<PackedPanels> pack(const Constant& c, const PackLayout& layout);
  // "node 3 (linear; fc (model.py:12))" for messages.
  std::string describe(int node) const;

 private:
  int new_value(const std::string& name, bool is_int, int producer);
  // Narrow constants among `node`'s operands that the op did not take as packed weights.
  void refuse_narrow_operands(const NodeDef& node, const std::vector<char>& packed) const;
  // After node `index` is built: records which node packed each weight, and holds a copy of
  // every constant it reads as a value.
  void settle_operands(int index, const std::vector<char>& packed);
  int lookup(const std::string& name, const std::string& where) const;
  // The constant of base_ that `c` may share (same name, dtype, shape and scales), or null.
  const Constant* shared(const Constant& c) const;
  // Panels this graph packed `name` into in `layout`, or null.
  const std::vector<PackedPanels>* packed(const std::string& name, const PackLayout& layout) const;

  struct Packed {
    PackLayout layout;
    std::vector<PackedPanels> panels;  // sharing the ops' elements
  };

  std::vector<ValueInfo> values_;
  std::unordered_map<std::string, int> by_name_;
  std::vector<int> constant_of_value_;  // index into constants_, or -1
  std::vector<GraphInput> inputs_;
  std::vector<Constant> constants_;
  std::vector<NodeDef> nodes_;
  std::vector<std::unique_ptr<Op>> ops_;
  std::vector<int> outputs_;
  ConstantSource source_;
  std::unordered_map<std::string, std::vector<Packed>> packed_;  // by constant name
  std::shared_ptr<const Graph> base_;                            // while building
  std::unordered_set<std::string> shared_names_;
};

}  // namespace pyrnn::graph
