// The capsule of test hooks that pyrnn._testing calls (see testing_hooks.h): the switches that
// change the engine's state, its step-timing loop, its activations and ISA choice. Nothing here
// is an attribute a user would reach for: _core exposes only the capsule.
#include <pybind11/pybind11.h>

#include "bindings/bindings.h"
#include "bindings/in_core.h"
#include "bindings/python_error.h"
#include "bindings/testing_hooks.h"
#include "core/dispatch.h"
#include "core/sequence.h"
#include "graph/memory_limit.h"

namespace pyrnn::bindings {

namespace py = pybind11;

namespace {

int count_core_calls(bool on) {
  if (on) {
    g_most_core_calls.store(0);
    g_count_core_calls.store(true);
    return 0;
  }
  g_count_core_calls.store(false);
  return g_most_core_calls.load();
}

void set_physical_memory(std::size_t bytes) {
  graph::set_physical_memory_for_testing(bytes == 0 ? std::nullopt
                                                    : std::optional<std::size_t>(bytes));
}

double time_steps(PyObject* stream, PyObject* x, PyObject* out, int count) {
  try {
    return stream_time_steps(stream, x, out, count);
  } catch (...) {
    set_python_error();
    return -1.0;
  }
}

ActivationKernel activation(const std::string& isa, const std::string& name) {
  const KernelTable& table = kernels_for(isa);
  if (name == "sigmoid") return table.sigmoid;
  if (name == "tanh") return table.tanh;
  throw std::invalid_argument("name: expected 'sigmoid' or 'tanh', got '" + name + "'");
}

// In the struct's order (the comments name each member).
const TestingHooks kHooks = {
    /*version=*/kTestingHooksVersion,
    /*set_split_every_step=*/&set_split_every_step,
    /*pretend_cpu_features=*/&pretend_cpu_features_for_testing,
    /*count_core_calls=*/&count_core_calls,
    /*set_physical_memory=*/&set_physical_memory,
    /*time_steps=*/&time_steps,
    /*activation=*/&activation,
    /*choose_isa=*/&choose_isa,
    /*isa_unusable_reason=*/&isa_unusable_reason,
};

}  // namespace

void bind_testing_hooks(py::module_& m) {
  m.attr("_testing_hooks") = py::capsule(const_cast<TestingHooks*>(&kHooks), kTestingHooksCapsule);
}

}  // namespace pyrnn::bindings
