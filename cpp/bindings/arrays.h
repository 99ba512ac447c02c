// Turning numpy arrays into the core's views, with the shape checks the core asserts.
// Python validates everything first with friendlier messages; these guard the C++ boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/sequence.h"
#include "core/weight_type.h"

namespace pyrnn::bindings {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// NumPy's array flags (numpy/ndarraytypes.h, part of its documented C API), for testing
// py::array::flags() without a call per flag.
constexpr int kNpyCContiguous = 0x0001;  // NPY_ARRAY_C_CONTIGUOUS
constexpr int kNpyAligned = 0x0100;      // NPY_ARRAY_ALIGNED
constexpr int kNpyWriteable = 0x0400;    // NPY_ARRAY_WRITEABLE

// numpy.ndarray itself, fetched once, for exact-type tests (subclasses such as masked arrays
// take the slow paths). Leaked on purpose: it must outlive every call, including ones during
// interpreter shutdown.
inline PyTypeObject* ndarray_type() {
  static PyObject* type = py::object(py::module_::import("numpy").attr("ndarray")).release().ptr();
  return reinterpret_cast<PyTypeObject*>(type);
}

// `object` as a py::array, for an object already known to be one: a reference, no allocation.
inline py::array borrow_array(py::handle object) {
  return py::reinterpret_borrow<py::array>(object);
}

inline std::string shape_string(const py::array& array) {
  std::string text = "(";
  for (py::ssize_t i = 0; i < array.ndim(); ++i)
    text += (i ? ", " : "") + std::to_string(array.shape(i));
  return text + (array.ndim() == 1 ? ",)" : ")");
}

inline std::string shape_string(const std::vector<py::ssize_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + (shape.size() == 1 ? ",)" : ")");
}

// The kernels load floats directly: a misaligned array (numpy allows them) would be undefined
// behaviour, so it is refused here (pyrnn._arrays.as_float32 copies such arrays first).
inline void require_aligned(const py::array& array, const char* name) {
  if (!(array.flags() & kNpyAligned)) {
    throw std::invalid_argument(std::string(name) +
                                ": the array's data is not aligned for float32; pass a copy "
                                "(np.array(x)) instead of a view at an odd address");
  }
}

inline void require_shape(const py::array& array, const std::vector<py::ssize_t>& shape,
                          const char* name) {
  require_aligned(array, name);
  bool ok = array.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = array.shape(i) == shape[i];
  if (!ok) {
    throw std::invalid_argument(std::string(name) + ": expected shape " + shape_string(shape) +
                                ", got " + shape_string(array));
  }
}

// The data of an optional state array of `shape`, or nullptr when absent.
inline const float* optional_state(const std::optional<FloatArray>& array,
                                   const std::vector<py::ssize_t>& shape, const char* name) {
  if (!array) return nullptr;
  require_shape(*array, shape, name);
  return array->data();
}

// The descriptor numpy uses for native float32 (a singleton), fetched once. Leaked on purpose:
// it must outlive every call, including ones during interpreter shutdown.
inline PyObject* float32_descr() {
  static PyObject* descr = py::dtype::of<float>().release().ptr();
  return descr;
}

// True for native-byte-order float32. Almost every array shares numpy's singleton descriptor, so
// identity answers first; an equal descriptor that is another object (an unpickled array, one
// made from ctypes, a dtype carrying metadata) goes through numpy's own equivalence test.
inline bool is_float32_dtype(const py::dtype& dtype) {
  return dtype.ptr() == float32_descr() ||
         dtype.equal(py::reinterpret_borrow<py::dtype>(float32_descr()));
}

// A py::array over an object already known to be a numpy array, holding no reference of its own
// (the caller's keeps the array alive): the step path's checks read a few fields, and a reference
// round trip through pybind11 is an out-of-line call per array.
class ArrayView {
 public:
  explicit ArrayView(py::handle array) : array_(py::reinterpret_steal<py::array>(array)) {}
  ~ArrayView() { array_.release(); }
  ArrayView(const ArrayView&) = delete;
  ArrayView& operator=(const ArrayView&) = delete;
  const py::array& operator*() const { return array_; }
  const py::array* operator->() const { return &array_; }

 private:
  py::array array_;
};

// is_float32_dtype(array.dtype()) with the common case (numpy's own descriptor) settled inline.
inline bool has_float32_dtype(const py::array& array) {
  PyObject* descr = array.dtype().release().ptr();  // the array keeps a reference of its own
  const bool singleton = descr == float32_descr();
  Py_DECREF(descr);
  return singleton || is_float32_dtype(array.dtype());
}

// numpy.ma.MaskedArray is an ndarray subclass whose data the core could read, but its mask
// would be ignored without a word: refused wherever an array is taken. Only slow paths ask.
inline bool is_masked_array(py::handle array) {
  static PyObject* masked =
      py::object(py::module_::import("numpy.ma").attr("MaskedArray")).release().ptr();
  const int found = PyObject_IsInstance(array.ptr(), masked);
  if (found < 0) throw py::error_already_set();
  return found == 1;
}

inline void refuse_masked(py::handle array, const char* name) {
  if (is_masked_array(array))
    throw py::type_error(std::string(name) +
                         ": expected a plain numpy array, got a numpy masked array, whose mask "
                         "would be ignored; pass a plain array (np.empty(shape, np.float32) "
                         "makes one)");
}

inline void require_float32(const py::array& array, const char* name) {
  refuse_masked(array, name);
  if (!is_float32_dtype(array.dtype())) {
    throw std::invalid_argument(std::string(name) + ": expected dtype float32, got " +
                                std::string(py::str(array.dtype())));
  }
}

// "fp32", "fp16", "bf16" or "int8", as pyrnn.quantize names them.
inline WeightType parse_weight_type(const std::string& name, const std::string& where) {
  if (name == "fp32") return WeightType::F32;
  if (name == "fp16") return WeightType::F16;
  if (name == "bf16") return WeightType::BF16;
  if (name == "int8") return WeightType::I8;
  throw std::invalid_argument(where +
                              ": weight_type: expected 'fp32', 'fp16', 'bf16' or 'int8', "
                              "got '" +
                              name + "'");
}

// The numpy dtype that holds a weight type: float32, float16, uint16 (bfloat16 bit patterns)
// or int8.
inline py::dtype weight_storage_dtype(WeightType type) {
  switch (type) {
    case WeightType::F16:
      return py::dtype("float16");
    case WeightType::BF16:
      return py::dtype::of<std::uint16_t>();
    case WeightType::I8:
      return py::dtype::of<std::int8_t>();
    case WeightType::F32:
      break;
  }
  return py::dtype::of<float>();
}

// A narrow weight matrix is taken as it is, never converted: its dtype must be the storage
// dtype of `type` (native byte order), C-contiguous and aligned.
inline void require_weight_dtype(const py::array& array, WeightType type, const std::string& name) {
  refuse_masked(array, name.c_str());
  const py::dtype expected = weight_storage_dtype(type);
  if (!array.dtype().equal(expected))
    throw std::invalid_argument(name + ": expected dtype " + std::string(py::str(expected)) +
                                " for weight_type '" + weight_type_name(type) + "', got " +
                                std::string(py::str(array.dtype())));
  if (!(array.flags() & py::array::c_style))
    throw std::invalid_argument(name + ": expected a C-contiguous array");
  require_aligned(array, name.c_str());
}

// The bytes [begin, end) that a float32 array's elements lie within, as numpy's
// may_share_memory bounds them; begin == end for an array without elements.
struct ByteSpan {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
  bool overlaps(const ByteSpan& other) const noexcept {
    return begin < other.end && other.begin < end;
  }
};

inline ByteSpan contiguous_span(const void* data, py::ssize_t floats) noexcept {
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  return {begin, begin + static_cast<std::uintptr_t>(floats) * sizeof(float)};
}

inline ByteSpan float32_span(const py::array& array) {
  const py::ssize_t *shape = array.shape(), *strides = array.strides();
  auto begin = reinterpret_cast<std::uintptr_t>(array.data()), end = begin;
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis) {
    if (shape[axis] == 0) return {begin, begin};
    const py::ssize_t reach = (shape[axis] - 1) * strides[axis];
    if (reach < 0)
      begin -= static_cast<std::uintptr_t>(-reach);
    else
      end += static_cast<std::uintptr_t>(reach);
  }
  return {begin, end + sizeof(float)};
}

// Same data pointer, shape and strides: every element of one is the same element of the other.
inline bool same_view(const py::array& a, const py::array& b) {
  if (a.data() != b.data() || a.ndim() != b.ndim()) return false;
  for (py::ssize_t axis = 0; axis < a.ndim(); ++axis)
    if (a.shape()[axis] != b.shape()[axis] || a.strides()[axis] != b.strides()[axis]) return false;
  return true;
}

// An output sharing memory with an input could overwrite values of the input before the core
// reads them (a feed reads its input a chunk at a time): refused, naming both. `also` lists
// what else is allowed, e.g. ", or x itself".
[[noreturn]] inline void throw_overlap(const char* output, const char* other, const char* also) {
  throw std::invalid_argument(std::string(output) + ": overlaps " + other +
                              " in memory; expected an array sharing no memory with " + other +
                              also + " (np.empty_like makes one): results written into " + output +
                              " would overwrite " + other + " while it is still needed");
}

// An output the caller allocated: float32, exactly `shape`, C-contiguous and writable. Never
// converted (as a FloatArray argument would be): writing into a copy would lose the result.
inline float* output_data(const py::array& array, const std::vector<py::ssize_t>& shape,
                          const char* name) {
  require_float32(array, name);
  require_shape(array, shape, name);
  if (!(array.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + ": expected a C-contiguous array");
  if (!array.writeable()) throw std::invalid_argument(std::string(name) + ": is read-only");
  return static_cast<float*>(const_cast<py::array&>(array).mutable_data());
}

// A (T, N, F) float32 array with any step/row strides (multiples of 4 bytes) and unit feature
// stride, viewed without copying.
template <class Float>
SequenceView<Float> sequence_view(const py::array& array, const char* name) {
  require_float32(array, name);
  require_aligned(array, name);
  if (array.ndim() != 3) {
    throw std::invalid_argument(std::string(name) + ": expected a 3-D (T, N, F) array, got " +
                                shape_string(array));
  }
  const auto stride = [&](int axis) { return array.strides(axis) / py::ssize_t(sizeof(float)); };
  for (int axis = 0; axis < 3; ++axis) {
    if (array.strides(axis) % py::ssize_t(sizeof(float)) != 0)
      throw std::invalid_argument(std::string(name) + ": strides must be multiples of 4 bytes");
  }
  if (array.shape(2) > 1 && stride(2) != 1)
    throw std::invalid_argument(std::string(name) + ": the feature axis must be contiguous");
  for (int axis = 0; axis < 3; ++axis) {
    if (array.shape(axis) > std::numeric_limits<int>::max())
      throw std::invalid_argument(std::string(name) + ": axis " + std::to_string(axis) + " has " +
                                  std::to_string(array.shape(axis)) +
                                  " entries, more than the core's limit of 2^31-1");
  }
  Float* data;
  if constexpr (std::is_const_v<Float>) {
    data = static_cast<Float*>(array.data());
  } else {
    if (!array.writeable()) throw std::invalid_argument(std::string(name) + ": is read-only");
    data = static_cast<Float*>(const_cast<py::array&>(array).mutable_data());
  }
  return {data,
          stride(0),
          stride(1),
          static_cast<int>(array.shape(0)),
          static_cast<int>(array.shape(1)),
          static_cast<int>(array.shape(2))};
}

}  // namespace pyrnn::bindings
