// Reaching the C++ object behind a bound Python instance safely. pybind11 hands a method an
// uninitialised value when __init__ never ran (e.g. Stream.__new__(Stream).step(x)); every
// method of our classes goes through here so that such misuse raises TypeError, not a crash.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace pyrnn::bindings {

namespace py = pybind11;

[[noreturn]] inline void throw_uninitialised(const char* class_name) {
  throw py::type_error(std::string("self: this ") + class_name +
                       " was never initialised (its __init__ did not run); make one "
                       "the documented way instead of calling __new__");
}

// `type_checked`: the caller already knows self is a T (a method descriptor checked it), which
// skips isinstance on the hot path (it allocates a little on each call).
template <class T>
T& initialized(py::handle self, const char* class_name, bool type_checked = false) {
  if (!type_checked && !py::isinstance<T>(self)) {
    throw py::type_error(std::string("self: expected a pyrnn ") + class_name + ", got " +
                         std::string(py::str(py::type::handle_of(self))));
  }
  auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
  if (type_checked && instance->simple_layout) {
    // One pybind11 type in self's bases, and self is known to be a T: the value is the one slot.
    // Saves the lookup of T's type info and of self's Python type's bases (~20 ns of a step).
    if (!instance->simple_holder_constructed) throw_uninitialised(class_name);
    return *static_cast<T*>(instance->simple_value_holder[0]);
  }
  const auto value_and_holder =
      instance->get_value_and_holder(py::detail::get_type_info(typeid(T)));
  if (!value_and_holder || !value_and_holder.holder_constructed()) throw_uninitialised(class_name);
  return *static_cast<T*>(value_and_holder.value_ptr());
}

}  // namespace pyrnn::bindings
