// The test hooks into the engine, passed from _core to the pyrnn._testing extension in a
// private capsule (_core._testing_hooks). A hook that sets state (the pretended CPU, the split
// policy, the call counter, the physical memory) must act on _core's copy of the core, the one
// the engine uses; the kernels' activations and the ISA choice come from it too, so that
// _testing need not link a second copy of every kernel (it links only the oracle).
#pragma once

#include <Python.h>

#include <cstddef>
#include <string>

#include "core/dispatch.h"
#include "core/kernel_table.h"

namespace pyrnn::bindings {

inline constexpr const char* kTestingHooksCapsule = "pyrnn._core._testing_hooks";
// Changed whenever the struct changes: both extensions come from one build, so a mismatch
// means a stale build directory, refused with both versions named.
inline constexpr int kTestingHooksVersion = 2;

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
  // Activation `name` ("sigmoid" or "tanh") of kernel table `isa`; throws std::invalid_argument
  // naming the argument otherwise.
  ActivationKernel (*activation)(const std::string& isa, const std::string& name);
  // The ISA PYRNN_ISA=`requested` (nullptr: unset) selects on a CPU with `features`, and why
  // `requested` cannot run there ("" if it can).
  IsaChoice (*choose_isa)(const char* requested, const CpuFeatures& features);
  std::string (*isa_unusable_reason)(const std::string& name, const CpuFeatures& features);
};

}  // namespace pyrnn::bindings
