// Installing a METH_FASTCALL method on a pybind11 class: for hot methods (stream steps) whose
// arguments pybind11's dispatcher would pack into a tuple and a kwargs dict on every call.
#pragma once

#include <pybind11/pybind11.h>

namespace pyrnn::bindings {

// `def` must have static storage: the interpreter keeps a pointer to it.
inline void add_fast_method(pybind11::handle cls, PyMethodDef* def) {
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), def);
  if (descr == nullptr) throw pybind11::error_already_set();
  pybind11::setattr(cls, def->ml_name, pybind11::reinterpret_steal<pybind11::object>(descr));
}

}  // namespace pyrnn::bindings
