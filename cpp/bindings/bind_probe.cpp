// Python view of the machine probes used by `pyrnn bench` (private: the benchmark wraps them).
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "probe/probe.h"

namespace pyrnn::bindings {

namespace py = pybind11;

void bind_probe(py::module_& m) {
  m.def("_probe_isas", &probe::probe_isas, "ISAs whose probe loops this CPU runs, worst to best.");
  m.def(
      "_probe_fma_peak",
      [](double seconds, const std::string& isa) {
        probe::FmaPeak peak;
        {
          py::gil_scoped_release release;
          peak = probe::fma_peak(seconds, isa);
        }
        py::dict result;
        result["gflops"] = peak.gflops;
        result["isa"] = peak.isa;
        return result;
      },
      py::arg("seconds"), py::arg("isa") = "",
      "Single-thread FMA peak in GFLOP/s (best ~5 ms trial over `seconds`).");
  m.def(
      "_probe_read_bandwidth",
      [](std::size_t bytes, double seconds, const std::string& isa) {
        probe::ReadBandwidth bandwidth;
        {
          py::gil_scoped_release release;
          bandwidth = probe::read_bandwidth(bytes, seconds, isa);
        }
        py::dict result;
        result["gbytes_per_s"] = bandwidth.gbytes_per_s;
        result["bytes"] = bandwidth.bytes;
        result["isa"] = bandwidth.isa;
        return result;
      },
      py::arg("bytes"), py::arg("seconds"), py::arg("isa") = "",
      "Single-thread read bandwidth in GB/s over a buffer of `bytes` (best ~5 ms trial).");
}

}  // namespace pyrnn::bindings
