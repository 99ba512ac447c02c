// Reaching the C++ object behind a bound Python instance with pybind11's public API only.
// pybind11 hands a method of an instance whose __init__ never ran (Stream.__new__(Stream).step(x))
// raw, unconstructed storage (py::cast<T*> allocates it on the spot), so each class keeps its own
// record: one pointer slot appended to its Python objects (py::custom_type_setup), set when an
// __init__ succeeds. A null slot raises TypeError instead of crashing; a non-null one is the whole
// lookup of the hot path (py::cast<T*> costs ~16 ns more per call, of a ~95 ns tiny step).
#pragma once

#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "bindings/fast_method.h"
#include "bindings/python_error.h"

namespace pyrnn::bindings {

namespace py = pybind11;

template <class T>
struct InstanceSlot {
  // Byte offset of the slot in every Python object of T's class and its Python subclasses
  // (which extend the base object, so the offset holds); 0 until the class exists.
  static inline Py_ssize_t offset = 0;
  // pybind11's own __init__ (every py::init overload), called by the recording one.
  static inline PyObject* init = nullptr;
};

template <class T>
T*& instance_slot(PyObject* self) noexcept {
  return *reinterpret_cast<T**>(reinterpret_cast<char*>(self) + InstanceSlot<T>::offset);
}

// The py::class_ option that appends the slot: pybind11 runs the callback just before
// PyType_Ready, after it has laid out its own part of the object (and a __dict__, if any), so the
// slot goes after all of it. The allocator zeroes new objects: the slot starts null.
template <class T>
py::custom_type_setup with_instance_slot() {
  return py::custom_type_setup([](PyHeapTypeObject* heap_type) {
    PyTypeObject& type = heap_type->ht_type;
    InstanceSlot<T>::offset = type.tp_basicsize;
    type.tp_basicsize += static_cast<Py_ssize_t>(sizeof(T*));
  });
}

// Fills the slot of an object that holds a constructed T: after a successful __init__, or an
// object the bindings return from C++ (pybind11 constructs those fully).
template <class T>
py::object remember_instance(py::object self) {
  instance_slot<T>(self.ptr()) = py::cast<T*>(self);
  return self;
}

template <class T>
PyObject* recording_init(PyObject* self, PyObject* args, PyObject* kwargs) {
  try {
    // pybind11's __init__ takes self first; a second __init__ on a constructed object is a no-op
    // there and leaves the same T, so the slot never goes stale.
    const Py_ssize_t count = PyTuple_GET_SIZE(args);
    py::tuple with_self(count + 1);
    with_self[0] = py::handle(self);
    for (Py_ssize_t i = 0; i < count; ++i) with_self[i + 1] = py::handle(PyTuple_GET_ITEM(args, i));
    PyObject* result = PyObject_Call(InstanceSlot<T>::init, with_self.ptr(), kwargs);
    if (result == nullptr) return nullptr;
    remember_instance<T>(py::reinterpret_borrow<py::object>(self));
    return result;
  } catch (...) {
    set_python_error();
    return nullptr;
  }
}

// Call after the last py::init of `cls`: wraps its __init__ in one that fills the slot. Plain
// CPython (a method descriptor), not a pybind11 function: pybind11 treats an __init__ it did not
// make with py::init as an old-style constructor.
template <class T>
void record_instances(py::handle cls) {
  if (InstanceSlot<T>::offset == 0)
    throw std::logic_error("record_instances: the class was made without with_instance_slot");
  InstanceSlot<T>::init = py::getattr(cls, "__init__").release().ptr();  // kept for the process
  static const std::string doc = py::str(py::getattr(InstanceSlot<T>::init, "__doc__"));
  static PyMethodDef def = {
      "__init__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(recording_init<T>)),
      METH_VARARGS | METH_KEYWORDS, doc.c_str()};
  add_fast_method(cls, &def);
}

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
  T* value = instance_slot<T>(self.ptr());
  if (value == nullptr) throw_uninitialised(class_name);
  return *value;
}

}  // namespace pyrnn::bindings
