// One registration function per bound concept; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace pyrnn::bindings {
void bind_network(pybind11::module_& m);
void bind_dispatch(pybind11::module_& m);
void bind_threads(pybind11::module_& m);
void bind_testing_hooks(pybind11::module_& m);
void bind_probe(pybind11::module_& m);
void bind_stream(pybind11::module_& m);
void bind_graph(pybind11::module_& m);
void bind_model_stream(pybind11::module_& m);
void bind_capi(pybind11::module_& m);

// For the test hooks: seconds per step of a Stream stepped `count` times back to back in C++
// (the state advances), GIL released; x and out as step() takes them.
double stream_time_steps(pybind11::handle stream, pybind11::handle x, pybind11::handle out,
                         int count);
}  // namespace pyrnn::bindings
