// Reaching the C++ object behind a bound Python instance safely. pybind11 hands a method an
// uninitialised value when __init__ never ran (e.g. Stream.__new__(Stream).step(x)); every
// method of our classes goes through here so that such misuse raises TypeError, not a crash.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace pyrnn::bindings {

namespace py = pybind11;

// `type_checked`: the caller already knows self is a T (a method descriptor checked it), which
// skips isinstance on the hot path (it allocates a little on each call).
template <class T>
T& initialized(py::handle self, const char* class_name, bool type_checked = false) {
  if (!type_checked && !py::isinstance<T>(self)) {
    throw py::type_error(std::string("self: expected a pyrnn ") + class_name + ", got " +
                         std::string(py::str(py::type::handle_of(self))));
  }
  auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
  const auto value_and_holder =
      instance->get_value_and_holder(py::detail::get_type_info(typeid(T)));
  if (!value_and_holder || !value_and_holder.holder_constructed()) {
    throw py::type_error(std::string("self: this ") + class_name +
                         " was never initialised (its __init__ did not run); make one "
                         "the documented way instead of calling __new__");
  }
  return *static_cast<T*>(value_and_holder.value_ptr());
}

}  // namespace pyrnn::bindings
