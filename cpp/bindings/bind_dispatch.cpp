// Python view of ISA dispatch: what the CPU has, what was compiled, what runs.
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "core/dispatch.h"

namespace pyrnn::bindings {

namespace py = pybind11;

void bind_dispatch(py::module_& m) {
  m.def(
      "available_isas", [] { return available_isas(); },
      "ISAs compiled in and runnable on this CPU, worst to best.");
  m.def("compiled_isas", &compiled_isas, "Every ISA compiled into this build.");
  m.def("active_isa", [] { return std::string(active_kernels().name); });
  m.def("isa_environment_warning", &isa_environment_warning,
        "Why PYRNN_ISA was not followed and what runs instead; '' if it was, or is unset.");
  m.def("set_isa", &set_isa, py::arg("name"), "Forces the kernels of one ISA.");
  m.def("cpu_features", [] {
    const CpuFeatures f = detect_cpu_features();
    py::dict features;
    features["avx2"] = f.avx2;
    features["fma"] = f.fma;
    features["f16c"] = f.f16c;
    features["avx512f"] = f.avx512f;
    features["neon"] = f.neon;
    return features;
  });
}

}  // namespace pyrnn::bindings
