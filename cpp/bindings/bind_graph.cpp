// Python bindings of model graphs: building one from the plain description pyrnn.graph makes,
// and running it (one call per forward, GIL released, plans cached per input shape).
// Conversion of user inputs (dtypes, layouts) is Python's job; here every array must already be
// a C-contiguous, aligned array of the dtype the graph declares.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <variant>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/graph_handle.h"
#include "bindings/in_core.h"
#include "bindings/instance.h"
#include "core/dispatch.h"
#include "graph/memory_limit.h"
#include "graph/plan_cache.h"

namespace pyrnn::bindings {
namespace {

namespace g = pyrnn::graph;

g::DType parse_dtype(const std::string& name) {
  if (name == "float32") return g::DType::F32;
  if (name == "int64") return g::DType::I64;
  throw std::invalid_argument("dtype: expected 'float32' or 'int64', got '" + name + "'");
}

g::DType dtype_of(const py::array& array, const std::string& name) {
  const py::dtype type = array.dtype();
  if (type.equal(py::dtype::of<float>())) return g::DType::F32;
  if (type.equal(py::dtype::of<std::int64_t>())) return g::DType::I64;
  throw std::invalid_argument(name + ": expected a float32 or int64 array, got " +
                              std::string(py::str(type)));
}

g::Shape shape_of(const py::array& array, const std::string& name) {
  if (array.ndim() > g::kMaxRank)
    throw std::invalid_argument(name + ": rank " + std::to_string(array.ndim()) +
                                " exceeds the limit of " + std::to_string(g::kMaxRank));
  g::Shape shape;
  for (py::ssize_t i = 0; i < array.ndim(); ++i) shape.push_back(array.shape(i));
  return shape;
}

g::AttrValue attr_value(const std::string& key, py::handle value) {
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::isinstance<py::int_>(value)) return value.cast<std::int64_t>();
  if (py::isinstance<py::float_>(value)) return value.cast<double>();
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    // A list holding any float is a float list; otherwise an int list.
    bool floats = false;
    for (py::handle item : value) floats = floats || py::isinstance<py::float_>(item);
    std::vector<std::int64_t> ints;
    std::vector<double> numbers;
    for (py::handle item : value) {
      const bool is_int = py::isinstance<py::int_>(item) && !py::isinstance<py::bool_>(item);
      if (!is_int && !(floats && py::isinstance<py::float_>(item)))
        throw std::invalid_argument("attribute '" + key + "': a list must hold ints or floats");
      if (floats)
        numbers.push_back(item.cast<double>());
      else
        ints.push_back(item.cast<std::int64_t>());
    }
    if (floats) return numbers;
    return ints;
  }
  throw std::invalid_argument("attribute '" + key + "': unsupported type " +
                              std::string(py::str(py::type::of(value))));
}

GraphHandle build(const py::list& inputs, const py::list& constants, const py::list& nodes,
                  const std::vector<std::string>& outputs) {
  // Constants copied and weights packed (once per use: a weight shared by many nodes is packed
  // for each) are held to physical memory, refused before the buffer that would exceed it.
  const AllocationBudget budget(g::plan_memory_limit(), "the graph's constants and packed weights");
  auto graph = std::make_shared<g::Graph>();
  for (py::handle item : inputs) {
    const auto [name, dtype, dims] =
        item.cast<std::tuple<std::string, std::string, std::vector<std::int64_t>>>();
    graph->add_input(name, parse_dtype(dtype), dims);
  }
  for (py::handle item : constants) {
    const auto entry = item.cast<py::tuple>();
    if (entry.size() != 2 && entry.size() != 4)
      throw std::invalid_argument(
          "constant: expected (name, array) or (name, array, weight_type, scales)");
    const auto name = entry[0].cast<std::string>();
    const std::string where = "constant '" + name + "'";
    const auto array = entry[1].cast<py::array>();
    if (!(array.flags() & py::array::c_style) || !(array.flags() & kNpyAligned))
      throw std::invalid_argument(where + ": expected a C-contiguous, aligned array");
    if (entry.size() == 2) {
      graph->add_constant(name, dtype_of(array, where), shape_of(array, where), array.data());
      continue;
    }
    // A weight matrix stored narrow: its storage dtype must be the one its weight type names.
    const WeightType type = parse_weight_type(entry[2].cast<std::string>(), where);
    require_weight_dtype(array, type, where);
    const g::DType dtype = type == WeightType::F32    ? g::DType::F32
                           : type == WeightType::F16  ? g::DType::F16
                           : type == WeightType::BF16 ? g::DType::BF16
                                                      : g::DType::I8;
    std::optional<FloatArray> scales;
    if (!entry[3].is_none()) {
      scales = entry[3].cast<FloatArray>();
      require_shape(*scales, {array.ndim() ? array.shape(0) : 0}, (where + " scales").c_str());
    }
    graph->add_constant(name, dtype, shape_of(array, where), array.data(),
                        scales ? scales->data() : nullptr);
  }
  for (py::handle item : nodes) {
    const auto node = item.cast<py::tuple>();
    if (node.size() != 5)
      throw std::invalid_argument("node: expected (op, inputs, outputs, attrs, source)");
    std::vector<g::Graph::Operand> operands;
    for (py::handle operand : node[1].cast<py::list>()) {
      g::Graph::Operand o;
      if (operand.is_none()) {
        o.kind = g::Graph::Operand::Absent;
      } else if (py::isinstance<py::str>(operand)) {
        o.kind = g::Graph::Operand::Name;
        o.name = operand.cast<std::string>();
      } else if (py::isinstance<py::int_>(operand) && !py::isinstance<py::bool_>(operand)) {
        o.kind = g::Graph::Operand::Literal;
        o.literal = operand.cast<std::int64_t>();
      } else {
        throw std::invalid_argument("node input: expected a name, an int or None");
      }
      operands.push_back(std::move(o));
    }
    g::Attrs attrs;
    for (const auto& [key, value] : node[3].cast<py::dict>()) {
      const auto name = key.cast<std::string>();
      attrs.set(name, attr_value(name, value));
    }
    graph->add_node(node[0].cast<std::string>(), operands, node[2].cast<std::vector<std::string>>(),
                    std::move(attrs), node[4].cast<std::string>());
  }
  graph->set_outputs(outputs);
  return {std::make_shared<g::PlanCache>(std::move(graph))};
}

py::list forward(GraphHandle& self, const py::list& arrays) {
  const g::Graph& graph = *self.plans->graph();
  if (arrays.size() != graph.inputs().size())
    throw std::invalid_argument("expected " + std::to_string(graph.inputs().size()) +
                                " inputs, got " + std::to_string(arrays.size()));
  std::vector<py::array> held;
  std::vector<g::ValueMeta> metas;
  std::vector<const void*> input_data;
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    const std::string name = "input '" + graph.value(graph.inputs()[i].value).name + "'";
    auto array = arrays[i].cast<py::array>();
    if (!(array.flags() & py::array::c_style) || !(array.flags() & kNpyAligned))
      throw std::invalid_argument(name + ": expected a C-contiguous, aligned array");
    g::ValueMeta meta;
    meta.dtype = dtype_of(array, name);
    meta.shape = shape_of(array, name);
    metas.push_back(meta);
    input_data.push_back(array.data());
    held.push_back(std::move(array));
  }
  std::unique_ptr<g::Plan> plan = self.plans->acquire(metas);
  py::list results;
  std::vector<void*> output_data;
  for (int j = 0; j < static_cast<int>(graph.outputs().size()); ++j) {
    const g::ValueMeta& meta = plan->output(j);
    std::vector<py::ssize_t> shape(meta.shape.dims, meta.shape.dims + meta.shape.rank);
    py::array array = meta.dtype == g::DType::F32 ? py::array(py::dtype::of<float>(), shape)
                                                  : py::array(py::dtype::of<std::int64_t>(), shape);
    output_data.push_back(array.mutable_data());
    results.append(array);
  }
  const KernelTable& kernels = active_kernels();
  g::RunStatus status;
  {
    py::gil_scoped_release release;
    const InCore in_core;
    status = plan->run(kernels, input_data.data(), output_data.data());
  }
  self.plans->release(metas, std::move(plan));
  if (status.message != nullptr)
    throw std::invalid_argument(graph.describe(status.node) + ": " + status.message + " (" +
                                std::to_string(status.detail) + ")");
  return results;
}

// Shapes of every value for these input shapes: name -> shape or int. Shape inference only:
// nothing is allocated or run, so a model file can be checked with it at load. Refuses, like
// a plan, any tensor larger than this machine's physical memory.
py::dict infer(GraphHandle& self,
               const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& inputs) {
  std::vector<g::ValueMeta> metas;
  for (const auto& [dtype, dims] : inputs) {
    g::ValueMeta meta;
    meta.dtype = parse_dtype(dtype);
    for (std::int64_t d : dims) meta.shape.push_back(d);
    metas.push_back(meta);
  }
  const g::Graph& graph = *self.plans->graph();
  const std::vector<g::ValueMeta> values = g::infer_values(graph, metas);
  g::check_value_memory(graph, values);
  py::dict result;
  for (int v = 0; v < graph.value_count(); ++v) {
    const g::ValueInfo& info = graph.value(v);
    if (info.name.empty()) continue;
    const g::ValueMeta& meta = values[v];
    if (meta.is_int) {
      result[py::str(info.name)] = meta.int_value;
    } else {
      result[py::str(info.name)] = py::tuple(
          py::cast(std::vector<std::int64_t>(meta.shape.dims, meta.shape.dims + meta.shape.rank)));
    }
  }
  return result;
}

}  // namespace

void bind_graph(py::module_& m) {
  py::class_<GraphHandle> cls(m, "Graph", with_instance_slot<GraphHandle>());
  cls.def(py::init(&build), py::arg("inputs"), py::arg("constants"), py::arg("nodes"),
          py::arg("outputs"))
      .def(
          "forward",
          [](py::handle self, const py::list& arrays) {
            return forward(initialized<GraphHandle>(self, "Graph"), arrays);
          },
          py::arg("inputs"))
      .def(
          "infer",
          [](py::handle self,
             const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& inputs) {
            return infer(initialized<GraphHandle>(self, "Graph"), inputs);
          },
          py::arg("inputs"))
      .def_property_readonly("cached_plans", [](py::handle self) {
        return initialized<GraphHandle>(self, "Graph").plans->size();
      });
  record_instances<GraphHandle>(cls);
}

}  // namespace pyrnn::bindings
