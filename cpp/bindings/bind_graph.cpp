// Python bindings of model graphs: building one from the plain description pyrnn.graph makes,
// and running it (one call per forward, GIL released, plans cached per input shape).
// Conversion of user inputs (dtypes, layouts) is Python's job; here every array must already be
// a C-contiguous, aligned array of the dtype the graph declares.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

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

g::DType constant_dtype(const std::string& name, const std::string& where) {
  if (name == "float32") return g::DType::F32;
  if (name == "int64") return g::DType::I64;
  if (name == "fp16") return g::DType::F16;
  if (name == "bf16") return g::DType::BF16;
  if (name == "int8") return g::DType::I8;
  throw std::invalid_argument(where +
                              ": dtype: expected 'float32', 'int64', 'fp16', 'bf16' or "
                              "'int8', got '" +
                              name + "'");
}

py::dtype numpy_dtype(g::DType dtype) {
  switch (dtype) {
    case g::DType::I64:
      return py::dtype::of<std::int64_t>();
    case g::DType::F16:
      return weight_storage_dtype(WeightType::F16);
    case g::DType::BF16:
      return weight_storage_dtype(WeightType::BF16);
    case g::DType::I8:
      return weight_storage_dtype(WeightType::I8);
    case g::DType::F32:
      break;
  }
  return py::dtype::of<float>();
}

void add_nodes(g::Graph& graph, const py::list& nodes);

// The constants' bytes come from `fetch(name)` when a node first needs them: a weight that is
// only packed is fetched, packed and let go, so that (with a fetch reading a file tensor by
// tensor) the plain weights never all exist beside the packed ones. A Python exception raised
// by `fetch` is the one the caller sees. With `base` (a Graph), the constants named in `shared`
// hold the same bytes as base's of those names: this graph shares base's copies and packed
// panels of them instead of making its own.
GraphHandle build(const py::list& inputs, const py::list& constants, const py::list& nodes,
                  const std::vector<std::string>& outputs, const py::function& fetch,
                  const py::object& base, const std::vector<std::string>& shared) {
  // Constants copied and weights packed (once per layout: nodes packing one weight alike share
  // the panels) are held to physical memory, refused before the buffer that would exceed it.
  const AllocationBudget budget(g::plan_memory_limit(), "the graph's constants and packed weights");
  auto graph = std::make_shared<g::Graph>();
  if (!base.is_none()) graph->share_from(graph_of(base).plans->graph(), shared);
  std::optional<py::error_already_set> failed;
  graph->set_source([&](const std::string& name) -> g::ConstantBytes {
    const g::Constant* c = graph->constant(name);
    const std::string where = "constant '" + name + "'";
    py::array array;
    try {
      array = fetch(name).cast<py::array>();
    } catch (py::error_already_set& error) {
      failed.emplace(std::move(error));
      throw std::invalid_argument(where + ": could not be read");
    }
    if (!array.dtype().equal(numpy_dtype(c->dtype)))
      throw std::invalid_argument(where + ": expected dtype " +
                                  std::string(py::str(numpy_dtype(c->dtype))) + ", got " +
                                  std::string(py::str(array.dtype())));
    if (shape_of(array, where) != c->shape)
      throw std::invalid_argument(where + ": expected shape " + c->shape.str() + ", got " +
                                  shape_of(array, where).str());
    if (!(array.flags() & py::array::c_style) || !(array.flags() & kNpyAligned))
      throw std::invalid_argument(where + ": expected a C-contiguous, aligned array");
    // Released with the GIL held: the graph is built with it.
    auto held = std::make_shared<py::array>(std::move(array));
    return {held->data(), std::shared_ptr<const void>(held, held->data())};
  });
  try {
    for (py::handle item : inputs) {
      const auto [name, dtype, dims] =
          item.cast<std::tuple<std::string, std::string, std::vector<std::int64_t>>>();
      graph->add_input(name, parse_dtype(dtype), dims);
    }
    for (py::handle item : constants) {
      const auto entry = item.cast<py::tuple>();
      if (entry.size() != 4)
        throw std::invalid_argument("constant: expected (name, dtype, shape, scales)");
      const auto name = entry[0].cast<std::string>();
      const std::string where = "constant '" + name + "'";
      const g::DType dtype = constant_dtype(entry[1].cast<std::string>(), where);
      const auto dims = entry[2].cast<std::vector<std::int64_t>>();
      if (static_cast<int>(dims.size()) > g::kMaxRank)
        throw std::invalid_argument(where + ": rank " + std::to_string(dims.size()) +
                                    " exceeds the limit of " + std::to_string(g::kMaxRank));
      g::Shape shape;
      for (std::int64_t d : dims) {
        if (d < 0) throw std::invalid_argument(where + ": negative dim " + std::to_string(d));
        shape.push_back(d);
      }
      std::optional<FloatArray> scales;
      if (!entry[3].is_none()) {
        scales = entry[3].cast<FloatArray>();
        require_shape(*scales, {shape.rank ? static_cast<py::ssize_t>(shape[0]) : 0},
                      (where + " scales").c_str());
      }
      graph->add_deferred_constant(name, dtype, shape, scales ? scales->data() : nullptr);
    }
    add_nodes(*graph, nodes);
    graph->set_outputs(outputs);
  } catch (...) {
    if (failed) throw std::move(*failed);
    throw;
  }
#ifdef __GLIBC__
  // The fetched weights are freed by now, but glibc keeps freed heap memory below an adaptive
  // threshold (twice the largest block freed, up to 64 MiB); return it.
  malloc_trim(0);
#endif
  return {std::make_shared<g::PlanCache>(std::move(graph))};
}

void add_nodes(g::Graph& graph, const py::list& nodes) {
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
    graph.add_node(node[0].cast<std::string>(), operands, node[2].cast<std::vector<std::string>>(),
                   std::move(attrs), node[4].cast<std::string>());
  }
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

// Constant `name` as a fresh array of its storage dtype: its copy, or read back from the
// packed panels of the node that packed it.
py::array read_constant(GraphHandle& self, const std::string& name) {
  const g::Graph& graph = *self.plans->graph();
  const g::Constant* c = graph.constant(name);
  if (c == nullptr) throw std::invalid_argument("name: no constant '" + name + "' in the graph");
  std::vector<py::ssize_t> shape(c->shape.dims, c->shape.dims + c->shape.rank);
  py::array out(numpy_dtype(c->dtype), shape);
  graph.read(*c, out.mutable_data());
  return out;
}

}  // namespace

void bind_graph(py::module_& m) {
  py::class_<GraphHandle> cls(m, "Graph", with_instance_slot<GraphHandle>());
  cls.def(py::init(&build), py::arg("inputs"), py::arg("constants"), py::arg("nodes"),
          py::arg("outputs"), py::arg("fetch"), py::arg("base") = py::none(),
          py::arg("shared") = std::vector<std::string>())
      .def(
          "constant",
          [](py::handle self, const std::string& name) {
            return read_constant(initialized<GraphHandle>(self, "Graph"), name);
          },
          py::arg("name"))
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
