// Python bindings of whole-model streams: step and feed with the GIL released, state parts,
// forks. Arrays already in the exact form (C-contiguous, aligned, the graph's dtype, the
// frame's shape) are used in place; anything else goes through pyrnn.model's converter first.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/capi.h"
#include "bindings/fast_method.h"
#include "bindings/graph_handle.h"
#include "bindings/in_core.h"
#include "bindings/instance.h"
#include "bindings/python_error.h"
#include "core/dispatch.h"
#include "graph/model_stream.h"

namespace pyrnn::bindings {
namespace {

namespace g = pyrnn::graph;

// The shape the caller sees of one input or output, on the stack: a feed's shapes depend on its
// frame count, so they are made per call, and as std::vector they cost 2-3 allocations each.
struct Dims {
  py::ssize_t dims[g::kMaxRank] = {};
  std::size_t rank = 0;

  void push_back(py::ssize_t extent) { dims[rank++] = extent; }
  std::size_t size() const { return rank; }
  py::ssize_t operator[](std::size_t axis) const { return dims[axis]; }
  const py::ssize_t* begin() const { return dims; }
  const py::ssize_t* end() const { return dims + rank; }
  std::vector<py::ssize_t> vector() const { return {begin(), end()}; }
};

// A core stream plus the shapes its caller sees: frames without the time axis and, for an
// unbatched stream, without the batch axis too.
struct ModelStreamHandle {
  ModelStreamHandle(g::ModelStream stream_, bool batched_)
      : stream(std::move(stream_)), batched(batched_) {}

  g::ModelStream stream;
  bool batched;
  bool single_tensor = false;  // the model returns one tensor (not a tuple of one)
  // The model returns a flat tuple of tensors (an imported ONNX graph's outputs): built here
  // from the list, not by the Python rebuild (a call that cost ~2 us per step of three outputs).
  bool flat_tuple = false;
  py::object structure;    // the model's output structure, to rebuild results
  int user_time_axis = 0;  // input 0's time axis as the caller sees it
  pyrnn_stream capi{};     // the C API's handle of this stream, filled when first asked for

  void describe(py::handle output_structure) {
    structure = py::reinterpret_borrow<py::object>(output_structure);
    single_tensor = py::isinstance<py::dict>(structure) && structure.contains("tensor");
    flat_tuple = py::isinstance<py::dict>(structure) && py::len(structure) == 1 &&
                 structure.contains("tuple");
    if (flat_tuple)
      for (py::handle part : structure["tuple"])
        flat_tuple = flat_tuple && py::isinstance<py::dict>(part) && py::len(part) == 1 &&
                     part.contains("tensor");
    const g::StreamLayout& layout = stream.layout();
    step_inputs.clear();
    step_outputs.clear();
    for (std::size_t i = 0; i < layout.input_time.size(); ++i)
      step_inputs.push_back(shape(true, static_cast<int>(i), -1));
    for (std::size_t j = 0; j < layout.output_time.size(); ++j)
      step_outputs.push_back(shape(false, static_cast<int>(j), -1));
    user_time_axis = layout.input_time[0];
    if (!batched && layout.input_batch[0] >= 0 && layout.input_batch[0] < user_time_axis)
      --user_time_axis;
  }

  // The caller's shapes of one step, made once (step is the hot path).
  std::vector<Dims> step_inputs, step_outputs;

  const Dims& step_shape(bool input, int i) const {
    return input ? step_inputs[i] : step_outputs[i];
  }
  // The caller's shape of input i (or output i) for `frames` frames (-1: one step, no axis).
  Dims shape(bool input, int i, std::int64_t frames) const {
    const g::ValueMeta& meta = input ? stream.step_input(i) : stream.step_output(i);
    const g::StreamLayout& layout = stream.layout();
    const int time = input ? layout.input_time[i] : layout.output_time[i];
    const int batch = input ? layout.input_batch[i] : layout.output_batch[i];
    // Strided or delayed windows give an output fewer frames than its inputs.
    const std::int64_t count =
        !input && frames >= 0 && time >= 0 ? stream.feed_frames(i, frames) : frames;
    Dims dims;
    for (int a = 0; a < meta.shape.rank; ++a) {
      if (a == time && frames < 0) continue;
      if (a == batch && !batched) continue;
      dims.push_back(a == time ? count : meta.shape[a]);
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

// The numpy descriptors of the graph's dtypes, fetched once and kept for the process.
PyObject* descriptor(g::DType type) {
  static PyObject* f32 = py::dtype::of<float>().release().ptr();
  static PyObject* i64 = py::dtype::of<std::int64_t>().release().ptr();
  return type == g::DType::F32 ? f32 : i64;
}

// True when `value` is a numpy array of exactly this dtype (by equivalence: a pickled array's
// descriptor is equal but not the same object), shape and flags, usable in place. An input must
// be exactly a numpy.ndarray: subclasses (a masked array is one, and its mask must not be
// ignored) go through the converter, which refuses what it cannot take. An output (`writable`)
// may be a subclass; the caller has refused masked ones.
bool exact(py::handle value, g::DType type, const Dims& shape, bool writable) {
  if (writable ? !py::array::check_(value) : Py_TYPE(value.ptr()) != ndarray_type()) return false;
  const py::array array = borrow_array(value);
  const int needed = kNpyCContiguous | kNpyAligned | (writable ? kNpyWriteable : 0);
  if ((array.flags() & needed) != needed) return false;
  if (array.ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  for (std::size_t a = 0; a < shape.size(); ++a)
    if (array.shape()[a] != shape[a]) return false;
  const py::dtype dtype = array.dtype();
  PyObject* want = descriptor(type);
  return dtype.ptr() == want || dtype.equal(py::reinterpret_borrow<py::dtype>(want));
}

std::string shape_text(const Dims& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Whether two C-contiguous arrays (exact() held for both) share bytes.
bool overlap(py::handle a, py::handle b) {
  const py::array x = borrow_array(a), y = borrow_array(b);
  const auto* pa = static_cast<const char*>(x.data());
  const auto* pb = static_cast<const char*>(y.data());
  const py::ssize_t na = x.nbytes(), nb = y.nbytes();
  return na && nb && pa < pb + nb && pb < pa + na;
}

// Up to this many inputs/outputs, pointers live on the stack (no allocation per call).
constexpr std::size_t kInline = 8;

// One call: inputs converted and checked, outputs given (checked) or made, the run, errors.
// Returns the outputs in the model's structure.
py::object run(ModelStreamHandle& self, PyObject* const* inputs, std::size_t count, py::handle out,
               std::int64_t frames) {
  const g::Graph& graph = self.stream.graph();
  const std::size_t n_in = graph.inputs().size(), n_out = graph.outputs().size();
  if (count != n_in)
    throw py::type_error("expected " + std::to_string(n_in) + " input" + (n_in == 1 ? "" : "s") +
                         ", got " + std::to_string(count));
  static PyObject* convert =
      py::object(py::module_::import("pyrnn.model").attr("_as_input")).release().ptr();
  std::vector<py::object> held;  // converted copies, kept alive through the run
  const void* in_inline[kInline];
  void* out_inline[kInline];
  std::vector<const void*> in_heap;
  std::vector<void*> out_heap;
  if (n_in > kInline) in_heap.resize(n_in);
  if (n_out > kInline) out_heap.resize(n_out);
  const void** input_data = n_in > kInline ? in_heap.data() : in_inline;
  void** output_data = n_out > kInline ? out_heap.data() : out_inline;
  py::handle in_arrays_inline[kInline];
  std::vector<py::handle> in_arrays_heap(n_in > kInline ? n_in : 0);
  py::handle* in_arrays = n_in > kInline ? in_arrays_heap.data() : in_arrays_inline;
  Dims feed_shape;
  for (std::size_t i = 0; i < n_in; ++i) {
    if (frames >= 0) feed_shape = self.shape(true, static_cast<int>(i), frames);
    const auto& shape = frames >= 0 ? feed_shape : self.step_shape(true, static_cast<int>(i));
    const g::DType type = self.dtype(true, static_cast<int>(i));
    py::handle value = inputs[i];
    if (!exact(value, type, shape, false)) {
      const std::string name = graph.value(graph.inputs()[i].value).name;
      PyObject* converted =
          PyObject_CallFunction(convert, "Oss", value.ptr(), name.c_str(), g::dtype_name(type));
      if (converted == nullptr) throw py::error_already_set();
      held.push_back(py::reinterpret_steal<py::object>(converted));
      value = held.back();
      if (!exact(value, type, shape, false))
        throw std::invalid_argument(name + ": expected shape " + shape_text(shape) + ", got " +
                                    shape_string(py::reinterpret_borrow<py::array>(value)));
    }
    in_arrays[i] = value;
    input_data[i] = borrow_array(value).data();
  }
  // out: one array (a one-output model) or a sequence of arrays in output order.
  py::object results;
  // The outputs as a list, made only when the model has several (or a structured one): a step
  // of a one-tensor model with out= must not allocate even an empty list.
  const bool listed = n_out != 1 || !self.single_tensor;
  py::object made = listed ? py::object(py::list()) : py::object();
  const bool given = !out.is_none();
  for (std::size_t j = 0; j < n_out; ++j) {
    if (frames >= 0) feed_shape = self.shape(false, static_cast<int>(j), frames);
    const auto& shape = frames >= 0 ? feed_shape : self.step_shape(false, static_cast<int>(j));
    const g::DType type = self.dtype(false, static_cast<int>(j));
    py::object array;
    if (given) {
      py::object value;
      if (n_out == 1 && py::array::check_(out)) {
        value = py::reinterpret_borrow<py::object>(out);
      } else if (py::isinstance<py::sequence>(out) && py::len(out) == n_out) {
        value = py::reinterpret_borrow<py::sequence>(out)[j];
      } else {
        throw std::invalid_argument("out: expected " +
                                    (n_out == 1
                                         ? std::string("an array")
                                         : "a list of " + std::to_string(n_out) + " arrays") +
                                    " in the model's output order");
      }
      const std::string name = n_out == 1 ? "out" : "out[" + std::to_string(j) + "]";
      if (Py_TYPE(value.ptr()) != ndarray_type()) refuse_masked(value, name.c_str());
      if (!exact(value, type, shape, true))
        throw std::invalid_argument(name + ": expected a writable, C-contiguous " +
                                    std::string(g::dtype_name(type)) + " array of shape " +
                                    shape_text(shape));
      for (std::size_t i = 0; i < n_in; ++i)
        if (overlap(value, in_arrays[i]))
          throw std::invalid_argument(name + " overlaps input '" +
                                      graph.value(graph.inputs()[i].value).name +
                                      "': the model would overwrite data it still reads");
      for (std::size_t k = 0; k < j; ++k)
        if (overlap(value, PyList_GET_ITEM(made.ptr(), k)))
          throw std::invalid_argument(name + " overlaps another output");
      array = value;
    } else {
      array = py::array(py::reinterpret_borrow<py::dtype>(descriptor(type)), shape.vector());
    }
    output_data[j] = const_cast<void*>(borrow_array(array).data());
    if (listed) {
      if (PyList_Append(made.ptr(), array.ptr()) != 0) throw py::error_already_set();
    } else {
      results = array;
    }
  }
  const KernelTable& kernels = active_kernels();
  g::RunStatus status;
  {
    py::gil_scoped_release release;
    const InCore in_core;
    status = frames < 0 ? self.stream.step(kernels, input_data, output_data)
                        : self.stream.feed(kernels, frames, input_data, output_data);
  }
  if (status.message != nullptr)
    throw std::invalid_argument(graph.describe(status.node) + ": " + status.message + " (" +
                                std::to_string(status.detail) + ")");
  // A step whose strided or delayed window emitted nothing gives None for that output; so does
  // a feed of no frames for an output without a time axis (nothing ran to give its value).
  if (frames <= 0) {
    for (std::size_t j = 0; j < n_out; ++j) {
      const bool given_value = frames < 0 ? self.stream.output_ticked(static_cast<int>(j))
                                          : self.stream.layout().output_time[j] >= 0;
      if (given_value) continue;
      if (listed)
        PyList_SetItem(made.ptr(), static_cast<py::ssize_t>(j), py::none().release().ptr());
      else
        results = py::none();
    }
  }
  if (!listed) return results;
  if (self.flat_tuple) {
    PyObject* tuple = PyList_AsTuple(made.ptr());
    if (tuple == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(tuple);
  }
  static PyObject* rebuild =
      py::object(py::module_::import("pyrnn.model").attr("_rebuild_list")).release().ptr();
  PyObject* structured =
      PyObject_CallFunctionObjArgs(rebuild, self.structure.ptr(), made.ptr(), nullptr);
  if (structured == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(structured);
}

// The frame count of a feed: the extent of input 0 along its time axis as the caller sees it.
std::int64_t frames_of(const ModelStreamHandle& self, PyObject* first) {
  const int axis = self.user_time_axis;
  if (!py::array::check_(first)) {
    static PyObject* shape_of =
        py::object(py::module_::import("numpy").attr("shape")).release().ptr();
    PyObject* shape = PyObject_CallFunctionObjArgs(shape_of, first, nullptr);
    if (shape == nullptr) throw py::error_already_set();
    const auto dims = py::reinterpret_steal<py::tuple>(shape);
    if (static_cast<int>(dims.size()) <= axis)
      throw std::invalid_argument("expected frames along axis " + std::to_string(axis));
    return dims[axis].cast<std::int64_t>();
  }
  const py::array input = borrow_array(first);
  if (input.ndim() <= axis)
    throw std::invalid_argument("input 0: expected frames along axis " + std::to_string(axis) +
                                ", got an array of rank " + std::to_string(input.ndim()));
  return input.shape()[axis];
}

ModelStreamHandle& handle_of(py::handle self) {
  return initialized<ModelStreamHandle>(self, "ModelStream");
}

// step(*frames, out=None) and feed(*chunks, out=None) with METH_FASTCALL: positional inputs
// and an `out` keyword arrive without pybind11 building an args tuple or kwargs dict.
template <bool kFeed>
PyObject* fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  try {
    PyObject* out = Py_None;
    const Py_ssize_t keywords = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < keywords; ++i) {
      PyObject* name = PyTuple_GET_ITEM(kwnames, i);
      if (PyUnicode_CompareWithASCIIString(name, "out") != 0)
        throw py::type_error("unexpected keyword argument '" + py::cast<std::string>(name) + "'");
      out = args[nargs + i];
    }
    ModelStreamHandle& handle =
        initialized<ModelStreamHandle>(py::handle(self), "ModelStream", true);
    std::int64_t frames = -1;
    if (kFeed) {
      if (nargs < 1) throw py::type_error("feed: missing the input frames");
      frames = frames_of(handle, args[0]);
    }
    return run(handle, args, static_cast<std::size_t>(nargs), out, frames).release().ptr();
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

template <bool kFeed>
PyCFunction as_pycfunction() {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fastcall<kFeed>));
}

PyMethodDef model_step_def = {
    "step", as_pycfunction<false>(), METH_FASTCALL | METH_KEYWORDS,
    "step($self, *frames, out=None)\n--\n\nOne frame of every input -> the model's outputs for "
    "it, written into out (an array, or a list in output order) when given."};
PyMethodDef model_feed_def = {
    "feed", as_pycfunction<true>(), METH_FASTCALL | METH_KEYWORDS,
    "feed($self, *chunks, out=None)\n--\n\nT frames of every input along its time axis -> "
    "the outputs of every frame (equal to T steps)."};

// Floats per row of one frame of input (output) 0, for the C API's (N, features) layout: the
// batch axis, if any, must come first once the time axis is left out.
int capi_features(const ModelStreamHandle& self, bool input) {
  const g::StreamLayout& layout = self.stream.layout();
  const g::ValueMeta& meta = input ? self.stream.step_input(0) : self.stream.step_output(0);
  const int time = input ? layout.input_time[0] : layout.output_time[0];
  const int batch = input ? layout.input_batch[0] : layout.output_batch[0];
  const char* name = input ? "input" : "output";
  if (meta.dtype != g::DType::F32)
    throw std::invalid_argument(std::string("stream: the C API steps float32 models; the ") + name +
                                " is " + g::dtype_name(meta.dtype));
  if (time < 0)
    throw std::invalid_argument(std::string("stream: the C API needs an ") + name +
                                " with a time axis (one frame per step); this one has none");
  const int first = time == 0 ? 1 : 0;  // the first axis of a frame
  if (batch >= 0 && batch != first)
    throw std::invalid_argument(std::string("stream: the C API takes frames as (batch, "
                                            "features); the ") +
                                name + "'s batch axis " + std::to_string(batch) +
                                " is not the first axis after time (" + std::to_string(first) +
                                ")");
  return static_cast<int>(meta.shape.numel() / self.stream.rows());
}

}  // namespace

pyrnn_stream* capi_model_stream(py::handle object) {
  if (!py::isinstance<ModelStreamHandle>(object)) return nullptr;
  ModelStreamHandle& self = handle_of(object);
  pyrnn_stream& handle = self.capi;
  if (handle.magic == kCapiMagic) return &handle;
  const g::Graph& graph = self.stream.graph();
  if (graph.inputs().size() != 1 || graph.outputs().size() != 1)
    throw std::invalid_argument(
        "stream: the C API steps models of one input and one output; "
        "this one has " +
        std::to_string(graph.inputs().size()) + " inputs and " +
        std::to_string(graph.outputs().size()) + " outputs");
  const g::StreamLayout& layout = self.stream.layout();
  if (layout.clocks.size() > 1)
    throw std::invalid_argument(
        "stream: the C API needs one output frame per input frame; this model has a strided "
        "or delayed window along time");
  handle.input_size = capi_features(self, true);
  handle.output_size = capi_features(self, false);
  handle.batch = static_cast<int>(self.stream.rows());
  handle.model_stream = &self.stream;
  handle.model_feed_in_place = layout.input_time[0] == 0 && layout.output_time[0] == 0;
  handle.magic = kCapiMagic;
  return &handle;
}

void bind_model_stream(py::module_& m) {
  py::class_<ModelStreamHandle> cls(m, "ModelStream", with_instance_slot<ModelStreamHandle>());
  cls.def(py::init([](py::handle graph, py::handle structure, std::int64_t rows, bool batched,
                      const std::optional<std::vector<int>>& time_axes, int chunk) {
            const GraphHandle& source = graph_of(graph);
            if (!batched && rows != 1)
              throw std::invalid_argument("rows: an unbatched stream has 1 row");
            g::StreamLayout layout =
                g::find_stream_layout(*source.plans->graph(), time_axes ? &*time_axes : nullptr);
            auto handle = std::unique_ptr<ModelStreamHandle>(new ModelStreamHandle(
                g::ModelStream(source.plans->graph(), std::move(layout), rows, chunk), batched));
            handle->describe(structure);
            return handle;
          }),
          py::arg("graph"), py::arg("structure"), py::arg("rows"), py::arg("batched"),
          py::arg("time_axes"), py::arg("chunk"))
      .def(py::init([](py::handle other) {
             return std::unique_ptr<ModelStreamHandle>(new ModelStreamHandle(handle_of(other)));
           }),
           py::arg("other"))
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
             return handle_of(self).shape(input, i, frames).vector();
           })
      .def_property_readonly("rows", [](py::handle self) { return handle_of(self).stream.rows(); })
      .def_property_readonly(
          "time_axes", [](py::handle self) { return handle_of(self).stream.layout().input_time; })
      .def_property_readonly("output_time_axes", [](py::handle self) {
        return handle_of(self).stream.layout().output_time;
      });
  record_instances<ModelStreamHandle>(cls);
  add_fast_method(cls, &model_step_def);
  add_fast_method(cls, &model_feed_def);
}

}  // namespace pyrnn::bindings
