// The pyrnn._core extension module.
#include "bindings/bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "pyrnn's C++ core: packed recurrent networks and their kernels.";
  pyrnn::bindings::bind_dispatch(m);
  pyrnn::bindings::bind_threads(m);
  pyrnn::bindings::bind_network(m);
  pyrnn::bindings::bind_testing_hooks(m);
  pyrnn::bindings::bind_probe(m);
  pyrnn::bindings::bind_stream(m);
  pyrnn::bindings::bind_graph(m);
  pyrnn::bindings::bind_model_stream(m);
  pyrnn::bindings::bind_capi(m);
}
