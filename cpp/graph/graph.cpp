// Building a graph: names, operands, ops, with every structural check (see graph.h).
#include "graph/graph.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

namespace pyrnn::graph {
namespace {

// Int ops produce ints; every other op produces tensors.
bool produces_int(const std::string& op) {
  return op == "size" || op == "int_add" || op == "int_sub" || op == "int_mul" ||
         op == "int_floordiv";
}

}  // namespace

int Graph::new_value(const std::string& name, bool is_int, int producer) {
  if (!name.empty()) {
    if (by_name_.count(name)) throw std::invalid_argument("value '" + name + "' is defined twice");
    by_name_[name] = static_cast<int>(values_.size());
  }
  values_.push_back({name, is_int, producer, std::nullopt});
  constant_of_value_.push_back(-1);
  return static_cast<int>(values_.size()) - 1;
}

int Graph::lookup(const std::string& name, const std::string& where) const {
  const auto found = by_name_.find(name);
  if (found == by_name_.end())
    throw std::invalid_argument(where + "'" + name +
                                "' is not defined before its use (dangling or cyclic edge)");
  return found->second;
}

void Graph::add_input(const std::string& name, DType dtype, const std::vector<std::int64_t>& dims) {
  if (!nodes_.empty()) throw std::logic_error("graph inputs must come before nodes");
  if (static_cast<int>(dims.size()) > kMaxRank)
    throw std::invalid_argument("input '" + name + "': rank " + std::to_string(dims.size()) +
                                " exceeds the limit of " + std::to_string(kMaxRank));
  for (std::int64_t d : dims)
    if (d < -1 || d > INT32_MAX)
      throw std::invalid_argument("input '" + name + "': dim " + std::to_string(d) +
                                  " is neither free (-1) nor in [0, 2^31)");
  inputs_.push_back({new_value(name, false, -1), dtype, dims});
}

void Graph::add_constant(const std::string& name, DType dtype, const Shape& shape, const void* data,
                         const float* scales) {
  add_deferred_constant(name, dtype, shape, scales);
  Constant& constant = constants_.back();
  auto copy =
      std::make_shared<AlignedBuffer>((constant.bytes() + sizeof(float) - 1) / sizeof(float));
  if (constant.bytes()) std::memcpy(copy->data(), data, constant.bytes());
  constant.data = std::move(copy);
  constant.held = true;
}

void Graph::add_deferred_constant(const std::string& name, DType dtype, const Shape& shape,
                                  const float* scales) {
  if (!nodes_.empty()) throw std::logic_error("graph constants must come before nodes");
  const std::string where = "constant '" + name + "': ";
  if (is_narrow(dtype) && shape.rank < 2)
    throw std::invalid_argument(where + dtype_name(dtype) + " constants are weight matrices, got " +
                                "shape " + shape.str());
  if ((dtype == DType::I8) != (scales != nullptr))
    throw std::invalid_argument(
        where + (scales ? "only int8 constants take scales, got " + std::string(dtype_name(dtype))
                        : std::string("int8 needs one scale per row")));
  const std::int64_t rows = shape.rank ? shape[0] : 0;
  for (std::int64_t row = 0; scales != nullptr && row < rows; ++row)
    if (!(std::isfinite(scales[row]) && scales[row] > 0.0f))
      throw std::invalid_argument(where + "scale of row " + std::to_string(row) + " is " +
                                  std::to_string(scales[row]) + "; expected finite and > 0");
  Constant constant{-1, dtype, shape, nullptr, AlignedBuffer()};
  (void)constant.bytes();  // throws on absurd sizes, before the name is taken
  constant.value = new_value(name, false, -1);
  if (scales != nullptr) {
    constant.scales.resize(static_cast<std::size_t>(rows));
    if (rows) std::memcpy(constant.scales.data(), scales, static_cast<std::size_t>(rows) * 4);
  }
  constant_of_value_[constant.value] = static_cast<int>(constants_.size());
  constants_.push_back(std::move(constant));
}

std::size_t Constant::bytes() const {
  return checked_mul(static_cast<std::size_t>(shape.numel()), dtype_size(dtype));
}

ConstantBytes Graph::bytes(const Constant& c) const {
  if (c.held) return {c.values(), nullptr};
  const std::string& name = values_[c.value].name;
  if (!source_) throw std::logic_error("constant '" + name + "' has no bytes and no source");
  ConstantBytes found = source_(name);
  if (found.data == nullptr && c.bytes() != 0)
    throw std::invalid_argument("constant '" + name + "': the source gave no bytes");
  return found;
}

const Constant& Graph::hold(int value) {
  Constant& c = constants_[constant_of_value_[value]];
  c.as_value = true;
  if (!c.held) {
    const Constant* theirs = shared(c);
    if (theirs != nullptr && theirs->held) {
      c.data = theirs->data;
    } else {
      auto copy = std::make_shared<AlignedBuffer>((c.bytes() + sizeof(float) - 1) / sizeof(float));
      if (c.bytes()) {
        const ConstantBytes found = bytes(c);
        std::memcpy(copy->data(), found.data, c.bytes());
      }
      c.data = std::move(copy);
    }
    c.held = true;
  }
  return c;
}

void Graph::share_from(std::shared_ptr<const Graph> base, const std::vector<std::string>& names) {
  if (!nodes_.empty()) throw std::logic_error("a graph shares constants before its nodes");
  base_ = std::move(base);
  shared_names_ = std::unordered_set<std::string>(names.begin(), names.end());
}

const Constant* Graph::shared(const Constant& c) const {
  if (base_ == nullptr) return nullptr;
  const std::string& name = values_[c.value].name;
  if (shared_names_.count(name) == 0) return nullptr;
  const Constant* theirs = base_->constant(name);
  if (theirs == nullptr || theirs->dtype != c.dtype || theirs->shape != c.shape ||
      theirs->scales.size() != c.scales.size())
    return nullptr;
  if (c.scales.size() &&
      std::memcmp(theirs->scales.data(), c.scales.data(), c.scales.size() * sizeof(float)) != 0)
    return nullptr;
  return theirs;
}

const std::vector<PackedPanels>* Graph::packed(const std::string& name,
                                               const PackLayout& layout) const {
  const auto found = packed_.find(name);
  if (found == packed_.end()) return nullptr;
  for (const Packed& entry : found->second)
    if (entry.layout == layout) return &entry.panels;
  return nullptr;
}

std::vector<PackedPanels> Graph::pack(const Constant& c, const PackLayout& layout) {
  const std::string& name = values_[c.value].name;
  // The layout must cover the matrix exactly: then it alone says where each element goes.
  const std::int64_t block = static_cast<std::int64_t>(layout.gates) * layout.units;
  const std::int64_t rows = c.shape.rank >= 2 ? c.shape[0] : -1;
  if (rows < 0 || layout.groups < 1 || block < 0 || layout.k < 0 ||
      (block == 0 ? rows != 0 : rows % block != 0 || rows / block != layout.groups) ||
      (rows > 0 && c.shape.numel() / rows != layout.k))
    throw std::logic_error("constant '" + name + "' " + c.shape.str() +
                           " does not fit the packing asked of it");
  if (const std::vector<PackedPanels>* found = packed(name, layout)) return *found;
  const std::vector<PackedPanels>* reused = nullptr;
  if (shared(c) != nullptr) reused = base_->packed(name, layout);
  std::vector<PackedPanels> panels;
  if (reused != nullptr) {
    panels = *reused;
  } else {
    const ConstantBytes found = bytes(c);
    const BuildContext::ConstantView view{c.dtype, c.shape, found.data,
                                          c.scales.size() ? c.scales.data() : nullptr, nullptr};
    for (int g = 0; g < layout.groups; ++g)
      panels.emplace_back(view.matrix(g * block), layout.gates, layout.units, layout.k);
  }
  packed_[name].push_back({layout, panels});
  return panels;
}

void Graph::read(const Constant& c, void* out) const {
  if (c.held) {
    if (c.bytes()) std::memcpy(out, c.values(), c.bytes());
    return;
  }
  if (c.packer < 0 || !ops_[c.packer]->read_weight(nodes_[c.packer], c.operand, out))
    throw std::logic_error("constant '" + values_[c.value].name + "' cannot be read back");
}

const Constant* Graph::constant(const std::string& name) const noexcept {
  const auto found = by_name_.find(name);
  return found == by_name_.end() ? nullptr : constant(found->second);
}

const Constant* Graph::constant(int value) const noexcept {
  if (value < 0 || value >= value_count() || constant_of_value_[value] < 0) return nullptr;
  return &constants_[constant_of_value_[value]];
}

std::string Graph::describe(int node) const {
  const NodeDef& def = nodes_[node];
  std::string text = "node " + std::to_string(node) + " (" + def.op;
  if (!def.source.empty()) text += "; " + def.source;
  return text + ")";
}

void Graph::add_node(const std::string& op, const std::vector<Operand>& inputs,
                     const std::vector<std::string>& outputs, Attrs attrs,
                     const std::string& source) {
  const int index = static_cast<int>(nodes_.size());
  NodeDef node{op, {}, {}, std::move(attrs), source};
  const std::string where =
      "node " + std::to_string(index) + " (" + op + (source.empty() ? "" : "; " + source) + "): ";
  try {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Operand& operand = inputs[i];
      if (operand.kind == Operand::Absent) {
        node.inputs.push_back(-1);
      } else if (operand.kind == Operand::Literal) {
        const int value = new_value("", true, -1);
        values_[value].literal = operand.literal;
        node.inputs.push_back(value);
      } else {
        node.inputs.push_back(lookup(operand.name, "input " + std::to_string(i) + " "));
      }
    }
    if (outputs.empty()) throw std::invalid_argument("a node needs at least one output");
    node.outputs.assign(outputs.size(), -1);  // named once the op accepts the node
    nodes_.push_back(std::move(node));
    std::unique_ptr<Op> made;
    try {
      std::vector<char> packed(inputs.size(), 0);  // operands the op took as packed weights
      made = make_op(BuildContext(*this, nodes_.back(), &packed));
      refuse_narrow_operands(nodes_.back(), packed);
      settle_operands(index, packed);
    } catch (...) {
      nodes_.pop_back();
      throw;
    }
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      if (outputs[i].empty()) throw std::invalid_argument("an output name is empty");
      nodes_.back().outputs[i] = new_value(outputs[i], produces_int(op), index);
    }
    ops_.push_back(std::move(made));
  } catch (const std::exception& error) {
    if (static_cast<int>(nodes_.size()) > index) nodes_.pop_back();
    throw std::invalid_argument(where + error.what());
  }
}

void Graph::refuse_narrow_operands(const NodeDef& node, const std::vector<char>& packed) const {
  for (std::size_t i = 0; i < node.inputs.size(); ++i) {
    const Constant* found = node.inputs[i] >= 0 ? constant(node.inputs[i]) : nullptr;
    if (found != nullptr && is_narrow(found->dtype) && !packed[i])
      throw std::invalid_argument(
          "input " + std::to_string(i) + " '" + values_[node.inputs[i]].name + "' is a " +
          dtype_name(found->dtype) + " weight; op '" + node.op +
          "' takes it as a float32 value (only the weight matrices of linear, conv1d, rnn and "
          "rnn_cell may be stored narrow; keep this constant float32)");
  }
}

void Graph::settle_operands(int index, const std::vector<char>& packed) {
  const NodeDef& node = nodes_[index];
  for (std::size_t i = 0; i < node.inputs.size(); ++i) {
    const int value = node.inputs[i];
    if (value < 0 || constant_of_value_[value] < 0) continue;
    Constant& c = constants_[constant_of_value_[value]];
    if (!packed[i]) {
      hold(value);
    } else if (c.packer < 0) {
      c.packer = index;
      c.operand = static_cast<int>(i);
    }
  }
}

void Graph::set_outputs(const std::vector<std::string>& names) {
  outputs_.clear();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const int value = lookup(names[i], "output " + std::to_string(i) + " ");
    if (values_[value].is_int)
      throw std::invalid_argument("output " + std::to_string(i) + " '" + names[i] +
                                  "' is an int, not a tensor");
    const Constant* found = constant(value);
    if (found != nullptr && is_narrow(found->dtype))
      throw std::invalid_argument("output " + std::to_string(i) + " '" + names[i] + "' is a " +
                                  dtype_name(found->dtype) +
                                  " weight; outputs are float32 or int64 (keep it float32)");
    outputs_.push_back(value);
  }
  for (int value : outputs_)
    if (constant(value) != nullptr) hold(value);
  for (Constant& c : constants_) {
    if (c.packer < 0 || c.as_value) {
      hold(c.value);
    } else if (c.held) {
      c.data = nullptr;  // the packed panels are its copy now
      c.held = false;
    }
  }
  source_ = nullptr;
  base_ = nullptr;
  shared_names_.clear();
}

// -- BuildContext / InferContext ------------------------------------------------------------

void BuildContext::require_inputs(int low, int high) const {
  const int n = inputs();
  if (n < low || (high >= 0 && n > high))
    throw std::invalid_argument("expected " +
                                (high < 0 ? "at least " + std::to_string(low)
                                 : low == high
                                     ? std::to_string(low)
                                     : std::to_string(low) + " to " + std::to_string(high)) +
                                " inputs, got " + std::to_string(n));
}

void BuildContext::require_outputs(int count) const {
  const int n = static_cast<int>(node_.outputs.size());
  if (n != count)
    throw std::invalid_argument("expected " + std::to_string(count) + " outputs, got " +
                                std::to_string(n));
}

void BuildContext::require_tensor(int i, const char* role) const {
  if (!has(i))
    throw std::invalid_argument(std::string(role) + " (input " + std::to_string(i) +
                                ") is required");
  if (graph_.value(node_.inputs[i]).is_int)
    throw std::invalid_argument(std::string(role) + " (input " + std::to_string(i) +
                                ") must be a tensor, got an int");
}

void BuildContext::require_int(int i, const char* role) const {
  if (!has(i))
    throw std::invalid_argument(std::string(role) + " (input " + std::to_string(i) +
                                ") is required");
  if (!graph_.value(node_.inputs[i]).is_int)
    throw std::invalid_argument(std::string(role) + " (input " + std::to_string(i) +
                                ") must be an int, got a tensor");
}

bool BuildContext::is_constant(int i) const {
  return has(i) && graph_.constant(node_.inputs[i]) != nullptr;
}

const Constant& BuildContext::find(int i, const char* role) const {
  require_tensor(i, role);
  const Constant* found = graph_.constant(node_.inputs[i]);
  if (found == nullptr)
    throw std::invalid_argument(std::string(role) + " '" + graph_.value(node_.inputs[i]).name +
                                "' must be a constant (a parameter or buffer), not computed");
  return *found;
}

BuildContext::ConstantView BuildContext::view(const Constant& c, ConstantBytes bytes) const {
  return {c.dtype, c.shape, bytes.data, c.scales.size() ? c.scales.data() : nullptr,
          std::move(bytes.keep)};
}

BuildContext::ConstantView BuildContext::weight_info(int i, const char* role) const {
  const Constant& c = find(i, role);
  return view(c, {});
}

std::vector<PackedPanels> BuildContext::pack(int i, const char* role,
                                             const PackLayout& layout) const {
  const Constant& c = find(i, role);
  std::vector<PackedPanels> panels = graph_.pack(c, layout);
  if (packed_ != nullptr && i < static_cast<int>(packed_->size())) (*packed_)[i] = 1;
  return panels;
}

BuildContext::ConstantView BuildContext::constant(int i, const char* role) const {
  const Constant& c = find(i, role);
  const ConstantView found = view(c, {graph_.hold(node_.inputs[i]).values(), nullptr});
  if (is_narrow(found.dtype))
    throw std::invalid_argument(std::string(role) + " '" + graph_.value(node_.inputs[i]).name +
                                "' is a " + dtype_name(found.dtype) +
                                " weight; this op takes float32 (only the weight matrices of "
                                "linear, conv1d, rnn and rnn_cell may be stored narrow)");
  return found;
}

WeightMatrix BuildContext::ConstantView::matrix(std::int64_t first_row) const {
  const std::int64_t rows = shape.rank ? shape[0] : 1;
  const std::size_t row = rows ? static_cast<std::size_t>(shape.numel() / rows) : 0;
  const std::size_t offset = static_cast<std::size_t>(first_row) * row * dtype_size(dtype);
  const void* at = static_cast<const unsigned char*>(data) + offset;
  switch (dtype) {
    case DType::F16:
      return {WeightType::F16, at, nullptr};
    case DType::BF16:
      return {WeightType::BF16, at, nullptr};
    case DType::I8:
      return {WeightType::I8, at, scales + first_row};
    default:
      return {WeightType::F32, at, nullptr};
  }
}

void InferContext::set_tensor(int i, DType dtype, const Shape& shape) {
  ValueMeta& meta = values_[node_.outputs[i]];  // keeps time_axis, set before inference
  meta.is_int = false;
  meta.dtype = dtype;
  meta.shape = shape;
  (void)meta.shape.numel();  // throws on absurd sizes
}

void InferContext::set_int(int i, std::int64_t value) {
  ValueMeta& meta = values_[node_.outputs[i]];
  meta.is_int = true;
  meta.int_value = value;
}

TimeFlow Op::time_flow(const std::vector<int>& input_axes, const NodeDef& node,
                       const std::vector<ValueMeta>& values) const {
  (void)values;
  for (int axis : input_axes)
    if (axis >= 0) throw std::invalid_argument("op '" + node.op + "' cannot run frame by frame");
  return {std::vector<int>(node.outputs.size(), -1), false};
}

}  // namespace pyrnn::graph
