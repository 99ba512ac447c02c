// One registration function per bound concept; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace pyrnn::bindings {
void bind_network(pybind11::module_& m);
void bind_dispatch(pybind11::module_& m);
void bind_threads(pybind11::module_& m);
void bind_testing(pybind11::module_& m);
void bind_probe(pybind11::module_& m);
void bind_stream(pybind11::module_& m);
void bind_graph(pybind11::module_& m);
void bind_model_stream(pybind11::module_& m);
void bind_capi(pybind11::module_& m);
}  // namespace pyrnn::bindings
