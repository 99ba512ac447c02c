// Turning numpy arrays into the core's views, with the shape checks the core asserts.
// Python validates everything first with friendlier messages; these guard the C++ boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/sequence.h"

namespace pyrnn::bindings {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

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
  if (!(py::detail::array_proxy(array.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
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

// Native float32, by numpy's own equivalence, not object identity: every unpickled array
// (pickle, multiprocessing, dask) carries its own copy of the dtype object.
inline bool is_float32(const py::dtype& dtype) {
  const py::dtype float32 = py::dtype::of<float>();
  return dtype.is(float32) ||
         py::detail::npy_api::get().PyArray_EquivTypes_(dtype.ptr(), float32.ptr());
}

inline void require_float32(const py::array& array, const char* name) {
  if (!is_float32(array.dtype())) {
    throw std::invalid_argument(std::string(name) + ": expected dtype float32, got " +
                                std::string(py::str(array.dtype())));
  }
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
