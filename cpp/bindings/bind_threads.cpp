// Python view of the worker pool: how many threads pyrnn may use.
#include "bindings/bindings.h"
#include "runtime/thread_pool.h"

namespace pyrnn::bindings {

namespace py = pybind11;

void bind_threads(py::module_& m) {
  m.def(
      "set_num_threads", [](int threads) { ThreadPool::instance().set_threads(threads); },
      py::arg("threads"), "Threads a call may use, the caller included (clamped to [1, 1024]).");
  m.def(
      "get_num_threads", [] { return ThreadPool::instance().threads(); },
      "Threads a call may use, the caller included.");
  m.def("available_cpus", &available_cpus, "CPUs this process may run on (its affinity mask).");
  m.attr("max_threads") = ThreadPool::kMaxThreads;
}

}  // namespace pyrnn::bindings
