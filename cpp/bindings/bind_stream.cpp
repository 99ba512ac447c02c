// Python bindings of streams: step/feed with the GIL released, state in PyTorch's h_n/c_n layout,
// forks. All argument checking is here, in C++, so that step(x, out=y) on a well-formed float32
// array costs a few pointer comparisons: the Python-side overhead budget is 1 microsecond.
// Anything not already a C-contiguous native float32 array goes through the slow path
// (pyrnn._arrays.as_float32: torch tensors, lists, float64 ...), which converts or names the error.
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <optional>
#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/capi.h"
#include "bindings/fast_method.h"
#include "bindings/in_core.h"
#include "bindings/instance.h"
#include "bindings/python_error.h"
#include "core/dispatch.h"
#include "core/stream.h"

namespace pyrnn::bindings {
namespace {

// A core stream plus how Python shapes its inputs: unbatched streams take x (I,) per step and
// (T, I) per feed; batched ones (N, I) and (T, N, I), or (N, T, I) when batch_first.
struct StreamHandle {
  Stream stream;
  bool batched;
  bool batch_first;
  pyrnn_stream capi{};  // the C API's handle of this stream, filled when first asked for

  py::ssize_t rows() const { return stream.rows(); }
  py::ssize_t input_size() const { return stream.config().input_size; }
  py::ssize_t output_size() const { return stream.config().output_size(); }
  py::ssize_t hidden_size() const { return stream.config().hidden_size; }
  py::ssize_t layers() const { return stream.config().num_layers; }
  bool lstm() const { return stream.config().kind == CellKind::Lstm; }
};

// True when `x` is exactly a numpy.ndarray (no subclass: a masked array is one, and its mask
// must not be ignored) of native float32 with all of `flags` set. Subclasses take the slow path.
bool is_float32_array(py::handle x, int flags) {
  if (Py_TYPE(x.ptr()) != ndarray_type()) return false;
  const ArrayView array(x);
  return (array->flags() & flags) == flags && has_float32_dtype(*array);
}

// For an array (is_float32_array was true).
bool has_shape(py::handle x, std::initializer_list<py::ssize_t> shape) {
  const ArrayView array(x);
  if (array->ndim() != static_cast<py::ssize_t>(shape.size())) return false;
  const py::ssize_t* extents = array->shape();
  for (py::ssize_t extent : shape)
    if (*extents++ != extent) return false;
  return true;
}

// The data of an array known to be float32 (is_float32_array was true).
float* float32_data(py::handle x) {
  return static_cast<float*>(const_cast<void*>(ArrayView(x)->data()));
}

// The slow path: pyrnn._arrays.as_float32 turns anything float-like into a float32 array with
// a unit-stride, aligned last axis, or raises TypeError naming `name`.
py::array as_float32(py::handle x, const char* name) {
  static PyObject* convert =
      py::object(py::module_::import("pyrnn._arrays").attr("as_float32")).release().ptr();
  PyObject* array = PyObject_CallFunction(convert, "Os", x.ptr(), name);
  if (array == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::array>(array);
}

constexpr int kContiguous = kNpyCContiguous | kNpyAligned;
constexpr int kWritable = kContiguous | kNpyWriteable;

std::vector<py::ssize_t> step_shape(const StreamHandle& self, py::ssize_t features) {
  if (self.batched) return {self.rows(), features};
  return {features};
}

std::string step_layout(const StreamHandle& self, const char* features) {
  return self.batched ? "(batch, " + std::string(features) + ")"
                      : "(" + std::string(features) + ",)";
}

// Checks a caller-provided output array: exactly `shape`, float32, C-contiguous, writable.
// Never converts: writing into a copy would silently lose the result.
float* checked_out(py::handle out, const std::vector<py::ssize_t>& shape, const char* layout) {
  if (!py::array::check_(out))
    throw py::type_error("out: expected a numpy float32 array of shape " + shape_string(shape) +
                         " " + layout + ", got " + std::string(py::str(py::type::of(out))));
  const auto array = py::reinterpret_borrow<py::array>(out);
  require_float32(array, "out");
  require_shape(array, shape, "out");
  if ((array.flags() & kContiguous) != kContiguous)
    throw std::invalid_argument(
        "out: expected a C-contiguous, aligned array (np.empty(shape, np.float32) makes one), "
        "got strides " +
        [&] {
          std::string text = "(";
          for (py::ssize_t i = 0; i < array.ndim(); ++i)
            text += (i ? ", " : "") + std::to_string(array.strides(i));
          return text + ")";
        }());
  if (!array.writeable()) throw std::invalid_argument("out: the array is read-only");
  return float32_data(out);
}

// out may be x itself (same shape and strides): the core reads all of a step's input, and each
// chunk of a feed's, before it writes that step's or chunk's output. Any other overlap is refused.
constexpr const char* kAliasHint = ", or x itself (same shape and strides)";

// Two C-contiguous arrays of `x_floats` and `out_floats` floats: overlapping but not the same.
void check_step_overlap(const float* x, py::ssize_t x_floats, const float* out,
                        py::ssize_t out_floats) {
  if (contiguous_span(x, x_floats).overlaps(contiguous_span(out, out_floats)) &&
      !(x == out && x_floats == out_floats))
    throw_overlap("out", "x", kAliasHint);
}

py::object stream_step(StreamHandle& self, py::handle x, py::handle out) {
  const py::ssize_t I = self.input_size(), P = self.output_size(), N = self.rows();
  py::object converted;  // keeps a slow-path copy of x alive
  const float* x_data;
  if (is_float32_array(x, kContiguous) &&
      (self.batched ? has_shape(x, {N, I}) : has_shape(x, {I}))) {
    x_data = float32_data(x);
  } else {
    py::array array = as_float32(x, "x");
    require_shape(array, step_shape(self, I), "x");
    array = py::array_t<float, py::array::c_style>::ensure(array);
    x_data = static_cast<const float*>(array.data());
    converted = std::move(array);
  }
  py::object result;
  float* out_data;
  if (out.is_none()) {
    py::array_t<float> array(step_shape(self, P));
    out_data = array.mutable_data();
    result = std::move(array);
  } else {
    out_data =
        is_float32_array(out, kWritable) &&
                (self.batched ? has_shape(out, {N, P}) : has_shape(out, {P}))
            ? float32_data(out)
            : checked_out(out, step_shape(self, P), step_layout(self, "output_size").c_str());
    result = py::reinterpret_borrow<py::object>(out);
    check_step_overlap(x_data, N * I, out_data, N * P);
  }
  const KernelTable& kernels = active_kernels();
  if (self.stream.tiny()) {
    // A tiny step (tens of ns) keeps the GIL: releasing and retaking it cost about as much as
    // the step itself, and other threads could not have used the gap.
    self.stream.step(kernels, x_data, I, out_data, P);
  } else {
    py::gil_scoped_release release;
    const InCore in_core;
    self.stream.step(kernels, x_data, I, out_data, P);
  }
  return result;
}

// Seconds per step of `count` steps run back to back in C++ on validated arrays (the stream's
// state advances): the test hook that times the core without Python.
double time_steps(StreamHandle& self, const py::handle x, const py::handle out, int count) {
  const py::ssize_t I = self.input_size(), P = self.output_size(), N = self.rows();
  if (!is_float32_array(x, kContiguous) ||
      py::reinterpret_borrow<py::array>(x).size() != self.rows() * I)
    throw std::invalid_argument("x: expected a C-contiguous float32 array of one step's input");
  float* out_data = checked_out(out, step_shape(self, P), "");
  const float* x_data = float32_data(x);
  check_step_overlap(x_data, N * I, out_data, N * P);
  const KernelTable& kernels = active_kernels();
  py::gil_scoped_release release;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) self.stream.step(kernels, x_data, I, out_data, P);
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / std::max(count, 1);
}

// Axis order of a feed's (steps, rows) in the caller's layout.
struct FeedLayout {
  int time_axis;
  int row_axis;  // -1: unbatched, no row axis
  std::vector<py::ssize_t> shape(const StreamHandle& self, py::ssize_t T, py::ssize_t F) const {
    if (row_axis < 0) return {T, F};
    return time_axis == 0 ? std::vector<py::ssize_t>{T, self.rows(), F}
                          : std::vector<py::ssize_t>{self.rows(), T, F};
  }
  // "(steps, batch, input_size) = (T, 4, 3)"
  std::string text(const StreamHandle& self, const char* name, py::ssize_t features) const {
    const std::string n = std::to_string(self.rows()), f = std::to_string(features);
    if (row_axis < 0) return "(steps, " + std::string(name) + ") = (T, " + f + ")";
    return time_axis == 0 ? "(steps, batch, " + std::string(name) + ") = (T, " + n + ", " + f + ")"
                          : "(batch, steps, " + std::string(name) + ") = (" + n + ", T, " + f + ")";
  }
};

template <class Float>
SequenceView<Float> feed_view(const py::array& array, const FeedLayout& layout, int rows) {
  const auto stride = [&](int axis) { return array.strides(axis) / py::ssize_t(sizeof(float)); };
  void* data = const_cast<void*>(array.data());
  return {static_cast<Float*>(data),
          stride(layout.time_axis),
          layout.row_axis < 0 ? 0 : stride(layout.row_axis),
          static_cast<int>(array.shape(layout.time_axis)),
          rows,
          static_cast<int>(array.shape(array.ndim() - 1))};
}

py::object stream_feed(StreamHandle& self, py::handle x_in, py::handle out) {
  const FeedLayout layout = !self.batched      ? FeedLayout{0, -1}
                            : self.batch_first ? FeedLayout{1, 0}
                                               : FeedLayout{0, 1};
  const py::ssize_t I = self.input_size(), P = self.output_size();
  // Fast path: an aligned native float32 array with a unit-stride last axis is read in place.
  const bool direct = is_float32_array(x_in, kNpyAligned) && [&] {
    const ArrayView array(x_in);
    const py::ssize_t last = array->ndim() - 1;
    return last >= 0 && (array->shape()[last] <= 1 || array->strides()[last] == 4);
  }();
  const py::array x = direct ? borrow_array(x_in) : as_float32(x_in, "x");  // a view if it can
  const py::ssize_t rank = layout.row_axis < 0 ? 2 : 3;
  if (x.ndim() != rank || x.shape(rank - 1) != I ||
      (layout.row_axis >= 0 && x.shape(layout.row_axis) != self.rows())) {
    throw std::invalid_argument("x: expected shape " + layout.text(self, "input_size", I) +
                                ", got " + shape_string(x));
  }
  const py::ssize_t T = x.shape(layout.time_axis);
  if (T > std::numeric_limits<int>::max())
    throw std::invalid_argument("x: " + std::to_string(T) +
                                " steps in one feed, more than the core's limit of 2^31-1; feed "
                                "it in chunks");
  // As in step: the well-formed case is checked without building shapes or messages.
  const py::ssize_t N = self.rows();
  const bool out_ok = !out.is_none() && is_float32_array(out, kWritable) &&
                      (layout.row_axis < 0     ? has_shape(out, {T, P})
                       : layout.time_axis == 0 ? has_shape(out, {T, N, P})
                                               : has_shape(out, {N, T, P}));
  py::object out_object;
  if (out.is_none()) {
    out_object = py::array_t<float>(layout.shape(self, T, P));
  } else {
    if (!out_ok) checked_out(out, layout.shape(self, T, P), layout.text(self, "output", P).c_str());
    out_object = py::reinterpret_borrow<py::object>(out);
  }
  const auto out_array = py::reinterpret_borrow<py::array>(out_object);
  if (T == 0) return out_object;
  if (!out.is_none() && float32_span(x).overlaps(float32_span(out_array)) &&
      !same_view(x, out_array))
    throw_overlap("out", "x", kAliasHint);
  const SequenceIn in = feed_view<const float>(x, layout, self.stream.rows());
  const SequenceOut dst = feed_view<float>(out_array, layout, self.stream.rows());
  const KernelTable& kernels = active_kernels();
  {
    py::gil_scoped_release release;
    const InCore in_core;
    self.stream.feed(kernels, in, dst);
  }
  return out_object;
}

py::tuple stream_get_state(const StreamHandle& self) {
  const py::ssize_t L = self.layers(), N = self.rows();
  FloatArray h({L, N, self.output_size()});
  std::optional<FloatArray> c;
  if (self.lstm()) c = FloatArray({L, N, self.hidden_size()});
  {
    py::gil_scoped_release release;
    self.stream.get_state(h.mutable_data(), c ? c->mutable_data() : nullptr);
  }
  return py::make_tuple(h, c ? py::object(*c) : py::object(py::none()));
}

void stream_set_state(StreamHandle& self, const FloatArray& h, const std::optional<FloatArray>& c) {
  const py::ssize_t L = self.layers(), N = self.rows();
  require_shape(h, {L, N, self.output_size()}, "h");
  if (self.lstm()) {
    if (!c) throw std::invalid_argument("c: required for an LSTM stream");
    require_shape(*c, {L, N, self.hidden_size()}, "c");
  }
  py::gil_scoped_release release;
  self.stream.set_state(h.data(), self.lstm() ? c->data() : nullptr);
}

// step and feed are called with METH_FASTCALL rather than through pybind11's dispatcher: a
// keyword argument (out=y) then arrives as a names tuple the interpreter already has, where
// pybind11's tp_call path would build a kwargs dict on every call (53 bytes, ~190 ns measured).
using StreamMethod = py::object (*)(StreamHandle&, py::handle, py::handle);

template <StreamMethod method>
PyObject* fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  try {
    PyObject* slots[2] = {nullptr, Py_None};  // x, out
    if (nargs > 2) throw py::type_error("expected at most 2 arguments (x, out)");
    for (Py_ssize_t i = 0; i < nargs; ++i) slots[i] = args[i];
    const Py_ssize_t keywords = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
    // Keyword names arrive interned when written literally (out=y): a pointer comparison then
    // settles them, before the string comparison that any other spelling needs.
    static PyObject* const x_name = PyUnicode_InternFromString("x");
    static PyObject* const out_name = PyUnicode_InternFromString("out");
    for (Py_ssize_t i = 0; i < keywords; ++i) {
      PyObject* name = PyTuple_GET_ITEM(kwnames, i);
      const int slot = name == out_name                                     ? 1
                       : name == x_name                                     ? 0
                       : PyUnicode_CompareWithASCIIString(name, "x") == 0   ? 0
                       : PyUnicode_CompareWithASCIIString(name, "out") == 0 ? 1
                                                                            : -1;
      if (slot < 0 || (slot < nargs))
        throw py::type_error((slot < 0 ? "unexpected keyword argument '" : "duplicate argument '") +
                             py::cast<std::string>(name) + "'");
      slots[slot] = args[nargs + i];
    }
    if (slots[0] == nullptr) throw py::type_error("missing required argument 'x'");
    // The method descriptor has checked the type of self already.
    StreamHandle& handle = initialized<StreamHandle>(py::handle(self), "Stream", true);
    return method(handle, slots[0], slots[1]).release().ptr();
  } catch (...) {
    // The Python exception pybind11's dispatcher would raise (these methods bypass it; pyrnn
    // registers no translators of its own): ValueError for invalid_argument, and so on.
    set_python_error();
    return nullptr;
  }
}

StreamHandle& stream_of(py::handle self) { return initialized<StreamHandle>(self, "Stream"); }

// An int argument the core takes as int: anything else is named, instead of pybind11's list of
// overloads for a Python int beyond 2**31-1.
int int_argument(py::handle value, const char* name, long long low) {
  if (!PyLong_Check(value.ptr()) || PyBool_Check(value.ptr()))
    throw py::type_error(std::string(name) + ": expected an int, got " +
                         std::string(py::str(py::type::of(value).attr("__name__"))));
  int overflow = 0;
  const long long number = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow != 0 || number < low || number > std::numeric_limits<int>::max())
    throw std::invalid_argument(std::string(name) + ": expected an int in [" + std::to_string(low) +
                                ", 2**31-1], got " + std::string(py::str(value)));
  return static_cast<int>(number);
}

// PyCFunction is the declared type of every ml_meth; the flags tell CPython the real signature.
template <StreamMethod method>
PyCFunction as_pycfunction() {
  return reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fastcall<method>));
}

// Static storage: the interpreter keeps pointers to these definitions.
PyMethodDef step_def = {
    "step", as_pycfunction<&stream_step>(), METH_FASTCALL | METH_KEYWORDS,
    "step($self, x, out=None)\n--\n\nOne step: x (I,) or (N, I) -> the top layer's "
    "output (P,) or (N, P), written into out when given (out shares no memory with x, or is "
    "x itself)."};
PyMethodDef feed_def = {
    "feed", as_pycfunction<&stream_feed>(), METH_FASTCALL | METH_KEYWORDS,
    "feed($self, x, out=None)\n--\n\nT steps in one call: (T, I), (T, N, I) or, "
    "batch_first, (N, T, I) -> every step's output in the same layout, written into out when "
    "given (out shares no memory with x, or is x itself)."};

}  // namespace

double stream_time_steps(py::handle stream, py::handle x, py::handle out, int count) {
  if (!py::isinstance<StreamHandle>(stream))
    throw py::type_error("stream: expected a pyrnn Stream, got " +
                         std::string(py::str(py::type::handle_of(stream))));
  return time_steps(stream_of(stream), x, out, count);
}

pyrnn_stream* capi_module_stream(py::handle object) {
  if (!py::isinstance<StreamHandle>(object)) return nullptr;
  StreamHandle& self = stream_of(object);
  pyrnn_stream& handle = self.capi;
  if (handle.magic != kCapiMagic) {
    handle.module_stream = &self.stream;
    handle.input_size = static_cast<int>(self.input_size());
    handle.output_size = static_cast<int>(self.output_size());
    handle.batch = self.stream.rows();
    handle.magic = kCapiMagic;
  }
  return &handle;
}

void bind_stream(py::module_& m) {
  py::class_<StreamHandle> cls(m, "Stream",
                               "The C++ half of pyrnn.Stream: state of every layer for N rows.",
                               with_instance_slot<StreamHandle>());
  cls.def(py::init([](const std::shared_ptr<Network>& network, int rows, bool batched,
                      bool batch_first) {
            if (!batched && rows != 1)
              throw std::invalid_argument("rows: an unbatched stream has 1 row, got " +
                                          std::to_string(rows));
            return std::unique_ptr<StreamHandle>(
                new StreamHandle{Stream(network, rows), batched, batch_first});
          }),
          py::arg("network"), py::arg("rows"), py::arg("batched"), py::arg("batch_first"))
      .def(py::init([](py::handle other) {
             return std::unique_ptr<StreamHandle>(new StreamHandle(stream_of(other)));
           }),
           py::arg("other"), "A fork of `other`: same network, a copy of its state.")
      .def("_reset", [](py::handle self) { stream_of(self).stream.reset(); })
      .def("_reset_row",
           [](py::handle self, py::handle row) {
             stream_of(self).stream.reset_row(int_argument(row, "rows", 0));
           })
      .def(
          "_get_state", [](py::handle self) { return stream_get_state(stream_of(self)); },
          "(h (L, N, P), c (L, N, H) or None)")
      .def(
          "_set_state",
          [](py::handle self, const FloatArray& h, const std::optional<FloatArray>& c) {
            stream_set_state(stream_of(self), h, c);
          },
          py::arg("h"), py::arg("c"))
      .def_property_readonly("rows", [](py::handle self) { return stream_of(self).rows(); })
      .def_property_readonly("batched", [](py::handle self) { return stream_of(self).batched; })
      .def_property_readonly("batch_first",
                             [](py::handle self) { return stream_of(self).batch_first; })
      .def_property_readonly("chunk_steps",
                             [](py::handle self) { return stream_of(self).stream.chunk_steps(); })
      .def_property_readonly(
          "_tiny", [](py::handle self) { return stream_of(self).stream.tiny(); },
          "Whether step and feed run the tiny kernels (one row of a small network).");
  record_instances<StreamHandle>(cls);
  add_fast_method(cls, &step_def);
  add_fast_method(cls, &feed_def);
}

}  // namespace pyrnn::bindings
