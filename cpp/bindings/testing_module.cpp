// The pyrnn._testing extension: test-only entry points kept out of _core. The double-precision
// oracle runs here (readable C++ of its own, not the engine); everything that touches the engine
// (its state, its kernels, its ISA choice) goes through _core's private capsule
// (testing_hooks.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "bindings/network_args.h"
#include "bindings/testing_hooks.h"
#include "core/dispatch.h"
#include "reference/reference.h"

namespace py = pybind11;

namespace pyrnn::bindings {
namespace {

const TestingHooks& hooks() {
  static const TestingHooks* table = [] {
    auto* found = static_cast<const TestingHooks*>(
        PyCapsule_Import(kTestingHooksCapsule, /*no_block=*/0));  // imports _core
    if (found == nullptr) throw py::error_already_set();
    if (found->version != kTestingHooksVersion)
      throw py::import_error("pyrnn._testing: _core's test hooks are version " +
                             std::to_string(found->version) + ", this extension expects " +
                             std::to_string(kTestingHooksVersion) +
                             "; rebuild both from one source tree");
    return found;
  }();
  return *table;
}

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

py::tuple reference_forward(const std::string& kind, int input_size, int hidden_size,
                            int num_layers, bool bidirectional, int proj_size,
                            const std::vector<WeightTuple>& weights, const FloatArray& x,
                            const std::optional<FloatArray>& h0,
                            const std::optional<FloatArray>& c0, const std::string& weight_type,
                            const OptionalScales& scales) {
  const NetworkConfig config =
      make_config(kind, input_size, hidden_size, num_layers, bidirectional, proj_size);
  const RawWeights raw = raw_weights(config, weights, weight_type, scales);
  if (x.ndim() != 3 || x.shape(2) != input_size)
    throw std::invalid_argument("x: expected (T, N, " + std::to_string(input_size) + "), got " +
                                shape_string(x));
  const py::ssize_t T = x.shape(0), N = x.shape(1), LD = num_layers * config.directions();
  const float* h0_data = optional_state(h0, {LD, N, config.output_size()}, "h0");
  const float* c0_data = optional_state(c0, {LD, N, hidden_size}, "c0");
  FloatArray out({T, N, static_cast<py::ssize_t>(config.output_size() * config.directions())});
  FloatArray hn({LD, N, static_cast<py::ssize_t>(config.output_size())});
  FloatArray cn({LD, N, static_cast<py::ssize_t>(hidden_size)});
  {
    py::gil_scoped_release release;
    reference::forward(config, raw.layers, static_cast<int>(T), static_cast<int>(N), x.data(),
                       h0_data, c0_data, out.mutable_data(), hn.mutable_data(), cn.mutable_data());
  }
  return py::make_tuple(out, hn, cn);
}

FloatArray activation(const std::string& isa, const std::string& name, const FloatArray& x) {
  const ActivationKernel kernel = hooks().activation(isa, name);
  const py::buffer_info in = x.request();
  FloatArray y(in.shape);
  const float* src = x.data();
  float* dst = y.mutable_data();
  const auto n = static_cast<std::size_t>(x.size());
  py::gil_scoped_release release;
  kernel(src, dst, n);
  return y;
}

}  // namespace
}  // namespace pyrnn::bindings

PYBIND11_MODULE(_testing, m) {
  using namespace pyrnn;
  using namespace pyrnn::bindings;
  m.doc() =
      "pyrnn's test hooks: the double-precision oracle, the kernels' activations, the ISA "
      "choice on pretended CPUs, and switches that make the engine exercise rare paths. Not "
      "part of the API.";
  m.def("reference_forward", &reference_forward, py::arg("kind"), py::arg("input_size"),
        py::arg("hidden_size"), py::arg("num_layers"), py::arg("bidirectional"),
        py::arg("proj_size"), py::arg("weights"), py::arg("x"), py::arg("h0") = py::none(),
        py::arg("c0") = py::none(), py::arg("weight_type") = "fp32", py::arg("scales") = py::none(),
        "The readable double-precision oracle: (out, hn, cn) for contiguous x (T, N, I).");
  m.def("activation", &activation, py::arg("isa"), py::arg("name"), py::arg("x"),
        "The vectorised activation `name` ('sigmoid' or 'tanh') of kernel table `isa` on x.");
  m.def(
      "isa_choice",
      [](const std::optional<std::string>& requested, const std::map<std::string, bool>& flags) {
        const CpuFeatures features = features_from(flags);
        const IsaChoice choice =
            hooks().choose_isa(requested ? requested->c_str() : nullptr, features);
        return py::make_tuple(choice.isa, choice.warning,
                              requested && !requested->empty()
                                  ? hooks().isa_unusable_reason(*requested, features)
                                  : "");
      },
      py::arg("requested"), py::arg("features"),
      "(ISA chosen, warning, why `requested` cannot run) for PYRNN_ISA=`requested` on a CPU "
      "with `features` (avx2, fma, f16c, avx512f, neon: bool; absent ones false).");
  m.def(
      "pretend_cpu_features",
      [](const std::optional<std::map<std::string, bool>>& flags) {
        if (!flags) return hooks().pretend_cpu_features(nullptr);
        const CpuFeatures features = features_from(*flags);
        hooks().pretend_cpu_features(&features);
      },
      py::arg("features"),
      "CPU detection reports `features` (as for isa_choice) until called with None, so "
      "set_isa and available_isas see a CPU without some of this one's features.");
  m.def(
      "set_split_every_step", [](bool split) { hooks().set_split_every_step(split); },
      py::arg("split"),
      "Split every step across threads, however small (results must not change).");
  m.def(
      "count_core_calls", [](bool on) { return hooks().count_core_calls(on); }, py::arg("on"),
      "True starts counting the forward/step/feed calls computing at once (GIL released); "
      "False stops and returns the most that were at once since the start.");
  m.def(
      "set_physical_memory",
      [](std::optional<std::size_t> bytes) {
        if (bytes && *bytes == 0) throw std::invalid_argument("bytes: expected > 0 or None");
        hooks().set_physical_memory(bytes ? *bytes : 0);
      },
      py::arg("bytes"),
      "Graph plans see a machine of `bytes` physical memory (None: the real one).");
  m.def(
      "time_steps",
      [](py::handle stream, py::handle x, py::handle out, long long count) {
        if (count < 0 || count > std::numeric_limits<int>::max())
          throw std::invalid_argument("count: expected an int in [0, 2**31-1], got " +
                                      std::to_string(count));
        const double seconds =
            hooks().time_steps(stream.ptr(), x.ptr(), out.ptr(), static_cast<int>(count));
        if (seconds < 0) throw py::error_already_set();
        return seconds;
      },
      py::arg("stream"), py::arg("x"), py::arg("out"), py::arg("count"),
      "Seconds per step of `count` steps of `stream` run back to back in C++ (GIL released; "
      "the state advances); x and out are one step's C-contiguous float32 arrays.");
}
