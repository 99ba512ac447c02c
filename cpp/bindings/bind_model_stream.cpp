// Python bindings of whole-model streams: step and feed with the GIL released, state parts,
// forks. Arrays already in the exact form (C-contiguous, aligned, the graph's dtype, the
// frame's shape) are used in place; anything else goes through pyrnn.model's converter first.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/graph_handle.h"
#include "bindings/instance.h"
#include "core/dispatch.h"
#include "graph/model_stream.h"

namespace pyrnn::bindings {
namespace {

namespace g = pyrnn::graph;

// A core stream plus the shapes its caller sees: frames without the time axis and, for an
// unbatched stream, without the batch axis too.
struct ModelStreamHandle {
  g::ModelStream stream;
  bool batched;

  // The caller's shape of input i (or output i) for `frames` frames (-1: one step, no axis).
  std::vector<py::ssize_t> shape(bool input, int i, std::int64_t frames) const {
    const g::ValueMeta& meta = input ? stream.step_input(i) : stream.step_output(i);
    const g::StreamLayout& layout = stream.layout();
    const int time = input ? layout.input_time[i] : layout.output_time[i];
    const int batch = input ? layout.input_batch[i] : layout.output_batch[i];
    std::vector<py::ssize_t> dims;
    for (int a = 0; a < meta.shape.rank; ++a) {
      if (a == time && frames < 0) continue;
      if (a == batch && !batched) continue;
      dims.push_back(a == time ? frames : meta.shape[a]);
    }
    return dims;
  }
  g::DType dtype(bool input, int i) const {
    return (input ? stream.step_input(i) : stream.step_output(i)).dtype;
  }
};

py::dtype numpy_dtype(g::DType type) {
  return type == g::DType::F32 ? py::dtype::of<float>() : py::dtype::of<std::int64_t>();
}

bool exact(py::handle value, const py::dtype& dtype, const std::vector<py::ssize_t>& shape,
           bool writable) {
  if (!py::isinstance<py::array>(value)) return false;
  const auto array = py::reinterpret_borrow<py::array>(value);
  const int flags = py::detail::array_proxy(value.ptr())->flags;
  const int needed = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                     py::detail::npy_api::NPY_ARRAY_ALIGNED_ |
                     (writable ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0);
  if ((flags & needed) != needed || !array.dtype().equal(dtype)) return false;
  if (array.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  for (std::size_t a = 0; a < shape.size(); ++a)
    if (array.shape(a) != shape[a]) return false;
  return true;
}

std::string shape_text(const std::vector<py::ssize_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Bytes [begin, end) an array may touch.
std::pair<const char*, const char*> extent(const py::array& a) {
  const auto* begin = static_cast<const char*>(a.data());
  return {begin, begin + a.nbytes()};
}

bool overlap(const py::array& a, const py::array& b) {
  const auto [a0, a1] = extent(a);
  const auto [b0, b1] = extent(b);
  return a0 < b1 && b0 < a1 && a.nbytes() && b.nbytes();
}

// One call: inputs converted and checked, outputs given (checked) or made, the run, errors.
py::list run(ModelStreamHandle& self, const py::sequence& inputs, py::handle outs,
             std::int64_t frames) {
  const g::Graph& graph = self.stream.graph();
  const std::size_t n_in = graph.inputs().size(), n_out = graph.outputs().size();
  if (inputs.size() != n_in)
    throw std::invalid_argument("expected " + std::to_string(n_in) + " inputs, got " +
                                std::to_string(inputs.size()));
  static PyObject* convert =
      py::object(py::module_::import("pyrnn.model").attr("_as_input")).release().ptr();
  std::vector<py::array> arrays;
  std::vector<const void*> input_data;
  for (std::size_t i = 0; i < n_in; ++i) {
    const std::string name = graph.value(graph.inputs()[i].value).name;
    const auto shape = self.shape(true, static_cast<int>(i), frames);
    const g::DType type = self.dtype(true, static_cast<int>(i));
    py::handle value = inputs[i];
    py::array array;
    if (exact(value, numpy_dtype(type), shape, false)) {
      array = py::reinterpret_borrow<py::array>(value);
    } else {
      PyObject* converted = PyObject_CallFunction(convert, "Oss", value.ptr(), name.c_str(),
                                                  g::dtype_name(type));
      if (converted == nullptr) throw py::error_already_set();
      array = py::reinterpret_steal<py::array>(converted);
      if (!exact(array, numpy_dtype(type), shape, false))
        throw std::invalid_argument(name + ": expected shape " + shape_text(shape) + ", got " +
                                    shape_string(array));
    }
    input_data.push_back(array.data());
    arrays.push_back(std::move(array));
  }
  py::list results;
  std::vector<void*> output_data;
  const bool given = !outs.is_none();
  if (given && py::len(outs) != n_out)
    throw std::invalid_argument("out: expected " + std::to_string(n_out) + " arrays, got " +
                                std::to_string(py::len(outs)));
  for (std::size_t j = 0; j < n_out; ++j) {
    const auto shape = self.shape(false, static_cast<int>(j), frames);
    const py::dtype type = numpy_dtype(self.dtype(false, static_cast<int>(j)));
    py::array array;
    if (given) {
      py::handle value = outs[py::int_(j)];
      if (!exact(value, type, shape, true))
        throw std::invalid_argument("out" + (n_out > 1 ? "[" + std::to_string(j) + "]" : "") +
                                    ": expected a writable C-contiguous " +
                                    std::string(py::str(type)) + " array of shape " +
                                    shape_text(shape));
      array = py::reinterpret_borrow<py::array>(value);
      for (std::size_t i = 0; i < n_in; ++i)
        if (overlap(array, arrays[i]))
          throw std::invalid_argument("out overlaps input '" +
                                      graph.value(graph.inputs()[i].value).name +
                                      "': the stream would overwrite frames it still reads");
      for (std::size_t k = 0; k < j; ++k)
        if (overlap(array, results[k].cast<py::array>()))
          throw std::invalid_argument("out: two output arrays overlap");
    } else {
      array = py::array(type, shape);
    }
    output_data.push_back(array.mutable_data());
    results.append(array);
  }
  const KernelTable& kernels = active_kernels();
  g::RunStatus status;
  {
    py::gil_scoped_release release;
    status = frames < 0 ? self.stream.step(kernels, input_data.data(), output_data.data())
                        : self.stream.feed(kernels, frames, input_data.data(), output_data.data());
  }
  if (status.message != nullptr)
    throw std::invalid_argument(graph.describe(status.node) + ": " + status.message + " (" +
                                std::to_string(status.detail) + ")");
  return results;
}

ModelStreamHandle& handle_of(py::handle self) {
  return initialized<ModelStreamHandle>(self, "ModelStream");
}

}  // namespace

void bind_model_stream(py::module_& m) {
  py::class_<ModelStreamHandle>(m, "ModelStream")
      .def(py::init([](py::handle graph, std::int64_t rows, bool batched,
                       const std::optional<std::vector<int>>& time_axes, int chunk) {
             const GraphHandle& source = graph_of(graph);
             if (!batched && rows != 1)
               throw std::invalid_argument("rows: an unbatched stream has 1 row");
             g::StreamLayout layout = g::find_stream_layout(
                 *source.plans->graph(), time_axes ? &*time_axes : nullptr);
             return std::unique_ptr<ModelStreamHandle>(new ModelStreamHandle{
                 g::ModelStream(source.plans->graph(), std::move(layout), rows, chunk), batched});
           }),
           py::arg("graph"), py::arg("rows"), py::arg("batched"), py::arg("time_axes"),
           py::arg("chunk"))
      .def(py::init([](py::handle other) {
             return std::unique_ptr<ModelStreamHandle>(new ModelStreamHandle(handle_of(other)));
           }),
           py::arg("other"))
      .def(
          "_step",
          [](py::handle self, const py::sequence& inputs, py::handle outs) {
            return run(handle_of(self), inputs, outs, -1);
          },
          py::arg("inputs"), py::arg("outs"))
      .def(
          "_feed",
          [](py::handle self, const py::sequence& inputs, py::handle outs, std::int64_t frames) {
            if (frames < 0) throw std::invalid_argument("frames: expected >= 0");
            return run(handle_of(self), inputs, outs, frames);
          },
          py::arg("inputs"), py::arg("outs"), py::arg("frames"))
      .def("_reset", [](py::handle self) { handle_of(self).stream.reset(); })
      .def("_reset_row",
           [](py::handle self, std::int64_t row) { handle_of(self).stream.reset_row(row); })
      .def("_state_parts",
           [](py::handle self) {
             py::list parts;
             for (const auto& p : handle_of(self).stream.state_parts())
               parts.append(py::make_tuple(
                   p.name, std::vector<std::int64_t>(p.shape.dims, p.shape.dims + p.shape.rank)));
             return parts;
           })
      .def("_get_state",
           [](py::handle self, int index) {
             ModelStreamHandle& h = handle_of(self);
             const auto& part = h.stream.state_parts().at(index);
             py::array_t<float> data(
                 std::vector<py::ssize_t>(part.shape.dims, part.shape.dims + part.shape.rank));
             h.stream.get_state(index, data.mutable_data());
             return data;
           })
      .def("_set_state",
           [](py::handle self, int index,
              const py::array_t<float, py::array::c_style | py::array::forcecast>& data) {
             ModelStreamHandle& h = handle_of(self);
             const auto& part = h.stream.state_parts().at(index);
             const std::vector<py::ssize_t> shape(part.shape.dims,
                                                  part.shape.dims + part.shape.rank);
             require_shape(data, shape, part.name.c_str());
             h.stream.set_state(index, data.data());
           })
      .def("_shape",
           [](py::handle self, bool input, int i, std::int64_t frames) {
             return handle_of(self).shape(input, i, frames);
           })
      .def_property_readonly("rows", [](py::handle self) { return handle_of(self).stream.rows(); })
      .def_property_readonly("time_axes",
                             [](py::handle self) { return handle_of(self).stream.layout().input_time; })
      .def_property_readonly("output_time_axes", [](py::handle self) {
        return handle_of(self).stream.layout().output_time;
      });
}

}  // namespace pyrnn::bindings
