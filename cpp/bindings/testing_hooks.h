// The state-changing test hooks, passed from _core to the pyrnn._testing extension in a private
// capsule (_core._testing_hooks). Each extension links its own copy of the core, so a hook that
// sets state (the pretended CPU, the split policy, the call counter, the physical memory) must
// run in _core's copy, the one the engine uses; _testing only wraps them for Python.
#pragma once

#include <Python.h>

#include <cstddef>

#include "core/dispatch.h"

namespace pyrnn::bindings {

inline constexpr const char* kTestingHooksCapsule = "pyrnn._core._testing_hooks";
// Changed whenever the struct changes: both extensions come from one build, so a mismatch
// means a stale build directory, refused with both versions named.
inline constexpr int kTestingHooksVersion = 1;

struct TestingHooks {
  int version;
  void (*set_split_every_step)(bool split);
  void (*pretend_cpu_features)(const CpuFeatures* features);  // nullptr: the real CPU
  // on: start counting from zero and return 0; off: stop and return the most at once.
  int (*count_core_calls)(bool on);
  void (*set_physical_memory)(std::size_t bytes);  // 0: the real machine's
  // Seconds per step of `count` steps of `stream` on validated arrays x and out, stepped back to
  // back in C++ with the GIL released. Returns -1 with a Python exception set on bad input.
  double (*time_steps)(PyObject* stream, PyObject* x, PyObject* out, int count);
};

}  // namespace pyrnn::bindings
