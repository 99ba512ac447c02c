// Test-only hooks into the kernels (underscore names, not public API): lets the Python tests
// measure each ISA's vectorised activations against float64 numpy over the whole float range,
// ask the ISA choice about CPUs other than this one (or make set_isa see one), count the calls
// computing at once (to prove threads overlapped), and pretend a machine with less memory to
// exercise the graph planner's memory limit.
#include <pybind11/stl.h>

#include <map>
#include <optional>
#include <string>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "bindings/in_core.h"
#include "core/dispatch.h"
#include "core/sequence.h"
#include "graph/memory_limit.h"

namespace pyrnn::bindings {

namespace {

// {"avx2": true, ...} -> CpuFeatures; names not given are false.
CpuFeatures features_from(const std::map<std::string, bool>& flags) {
  CpuFeatures features;
  const std::map<std::string, bool CpuFeatures::*> members = {{"avx2", &CpuFeatures::avx2},
                                                              {"fma", &CpuFeatures::fma},
                                                              {"f16c", &CpuFeatures::f16c},
                                                              {"avx512f", &CpuFeatures::avx512f},
                                                              {"neon", &CpuFeatures::neon}};
  for (const auto& [name, present] : flags) {
    const auto member = members.find(name);
    if (member == members.end())
      throw std::invalid_argument("features: unknown feature '" + name + "'");
    features.*member->second = present;
  }
  return features;
}

}  // namespace

void bind_testing(py::module_& m) {
  m.def("_set_split_every_step", &set_split_every_step, py::arg("split"),
        "Test hook: split every step across threads, however small (results must not change).");
  m.def(
      "_activation",
      [](const std::string& isa, const std::string& name, const FloatArray& x) {
        const KernelTable& table = kernels_for(isa);
        ActivationKernel kernel = nullptr;
        if (name == "sigmoid") kernel = table.sigmoid;
        if (name == "tanh") kernel = table.tanh;
        if (kernel == nullptr)
          throw std::invalid_argument("name: expected 'sigmoid' or 'tanh', got '" + name + "'");
        const py::buffer_info in = x.request();
        FloatArray y(in.shape);
        const float* src = x.data();
        float* dst = y.mutable_data();
        const auto n = static_cast<std::size_t>(x.size());
        {
          py::gil_scoped_release release;
          kernel(src, dst, n);
        }
        return y;
      },
      py::arg("isa"), py::arg("name"), py::arg("x"),
      "Test hook: the vectorised activation `name` of kernel table `isa` applied to x.");
  m.def(
      "_isa_choice",
      [](const std::optional<std::string>& requested, const std::map<std::string, bool>& flags) {
        const CpuFeatures features = features_from(flags);
        const IsaChoice choice = choose_isa(requested ? requested->c_str() : nullptr, features);
        return py::make_tuple(
            choice.isa, choice.warning,
            requested && !requested->empty() ? isa_unusable_reason(*requested, features) : "");
      },
      py::arg("requested"), py::arg("features"),
      "Test hook: (ISA chosen, warning, why `requested` cannot run) for PYRNN_ISA=`requested` "
      "on a CPU with `features` (avx2, fma, f16c, avx512f, neon: bool; absent ones false).");
  m.def(
      "_pretend_cpu_features",
      [](const std::optional<std::map<std::string, bool>>& flags) {
        if (!flags) return pretend_cpu_features_for_testing(nullptr);
        const CpuFeatures features = features_from(*flags);
        pretend_cpu_features_for_testing(&features);
      },
      py::arg("features"),
      "Test hook: the CPU detection reports `features` (as for _isa_choice) until called with "
      "None, so set_isa and available_isas see a CPU without some of this one's features.");
  m.def(
      "_count_core_calls",
      [](bool on) {
        if (on) {
          g_most_core_calls.store(0);
          g_count_core_calls.store(true);
          return 0;
        }
        g_count_core_calls.store(false);
        return g_most_core_calls.load();
      },
      py::arg("on"),
      "Test hook: True starts counting the forward/step/feed calls computing at once (GIL "
      "released); False stops and returns the most that were at once since the start.");
  m.def(
      "_set_physical_memory",
      [](std::optional<std::size_t> bytes) {
        if (bytes && *bytes == 0) throw std::invalid_argument("bytes: expected > 0 or None");
        graph::set_physical_memory_for_testing(bytes);
      },
      py::arg("bytes"),
      "Test hook: graph plans see a machine of `bytes` physical memory (None: the real one).");
}

}  // namespace pyrnn::bindings
