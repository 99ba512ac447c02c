// The C API table (pyrnn/include/pyrnn/capi.h) and the capsule _core._C_API that exports it.
// Everything but stream_handle runs without the GIL: statuses instead of exceptions, messages
// kept per thread in a fixed buffer (an error path that cannot itself fail or allocate).
#include <algorithm>
#include <cstring>
#include <exception>
#include <string>

#include "bindings/bindings.h"
#include "bindings/capi.h"
#include "bindings/in_core.h"
#include "bindings/python_error.h"
#include "core/busy.h"
#include "core/dispatch.h"

namespace pyrnn::bindings {
namespace {

thread_local char t_last_error[512] = "";

int fail(int status, const char* message) noexcept {
  std::strncpy(t_last_error, message, sizeof t_last_error - 1);
  t_last_error[sizeof t_last_error - 1] = '\0';
  return status;
}

// The status of the exception being handled.
int fail_current() noexcept {
  try {
    throw;
  } catch (const StreamBusy& error) {
    return fail(PYRNN_BUSY, error.what());
  } catch (const std::exception& error) {
    return fail(PYRNN_ERROR_RUNTIME, error.what());
  } catch (...) {
    return fail(PYRNN_ERROR_RUNTIME, "unknown error");
  }
}

bool valid(const pyrnn_stream* s) noexcept { return s != nullptr && s->magic == kCapiMagic; }

int bad_handle(const pyrnn_stream* s) noexcept {
  return fail(PYRNN_ERROR_HANDLE,
              s == nullptr ? "stream: the handle is NULL"
                           : "stream: not a live pyrnn stream handle (get one from "
                             "pyrnn_stream_handle() and keep a reference to its stream object)");
}

// x and y may be the same array, or not overlap at all (as in the Python API).
bool overlap_refused(const pyrnn_stream* s, const float* x, std::size_t x_floats, const float* y,
                     std::size_t y_floats) noexcept {
  const bool disjoint = x + x_floats <= y || y + y_floats <= x;
  if (disjoint) return false;
  // A model may read an input after writing an output: any overlap is refused there.
  return s->model_stream != nullptr || !(x == y && x_floats == y_floats);
}

int overlap_error() noexcept {
  return fail(PYRNN_ERROR_ARGUMENT,
              "y: overlaps x; give y its own memory (a module stream also accepts y == x with "
              "input_size == output_size)");
}

int model_status(const graph::ModelStream& stream, const graph::RunStatus& status) {
  if (status.message == nullptr) return PYRNN_OK;
  const std::string text = stream.graph().describe(status.node) + ": " + status.message + " (" +
                           std::to_string(status.detail) + ")";
  return fail(PYRNN_ERROR_RUNTIME, text.c_str());
}

pyrnn_stream* stream_handle(PyObject* object) {
  try {
    const py::handle handle(object);
    if (pyrnn_stream* s = capi_module_stream(handle)) return s;
    if (pyrnn_stream* s = capi_model_stream(handle)) return s;
    throw py::type_error("stream: expected a pyrnn.Stream or pyrnn.ModelStream, got " +
                         std::string(py::str(py::type::handle_of(handle).attr("__name__"))));
  } catch (...) {
    set_python_error();  // as the Python API raises it
  }
  return nullptr;
}

int stream_step(pyrnn_stream* s, const float* x, float* y) noexcept {
  if (!valid(s)) return bad_handle(s);
  if (x == nullptr || y == nullptr)
    return fail(PYRNN_ERROR_ARGUMENT, x == nullptr ? "x: NULL" : "y: NULL");
  const auto rows = static_cast<std::size_t>(s->batch);
  if (overlap_refused(s, x, rows * s->input_size, y, rows * s->output_size)) return overlap_error();
  try {
    const KernelTable& kernels = active_kernels();
    const InCore in_core;
    if (s->module_stream != nullptr) {
      s->module_stream->step(kernels, x, s->input_size, y, s->output_size);
      return PYRNN_OK;
    }
    const void* inputs[1] = {x};
    void* outputs[1] = {y};
    return model_status(*s->model_stream, s->model_stream->step(kernels, inputs, outputs));
  } catch (...) {
    return fail_current();
  }
}

int stream_feed(pyrnn_stream* s, const float* x, int steps, float* y) noexcept {
  if (!valid(s)) return bad_handle(s);
  if (steps < 0) {
    const std::string text = "steps: expected at least 0, got " + std::to_string(steps);
    return fail(PYRNN_ERROR_ARGUMENT, text.c_str());
  }
  if (steps == 0) return PYRNN_OK;
  if (x == nullptr || y == nullptr)
    return fail(PYRNN_ERROR_ARGUMENT, x == nullptr ? "x: NULL" : "y: NULL");
  const int N = s->batch, I = s->input_size, P = s->output_size;
  const auto frames = static_cast<std::size_t>(steps) * static_cast<std::size_t>(N);
  if (overlap_refused(s, x, frames * I, y, frames * P)) return overlap_error();
  try {
    const KernelTable& kernels = active_kernels();
    const InCore in_core;
    if (s->module_stream != nullptr) {
      s->module_stream->feed(kernels, SequenceIn{x, std::ptrdiff_t{N} * I, I, steps, N, I},
                             SequenceOut{y, std::ptrdiff_t{N} * P, P, steps, N, P});
      return PYRNN_OK;
    }
    graph::ModelStream& stream = *s->model_stream;
    if (s->model_feed_in_place) {
      const void* inputs[1] = {x};
      void* outputs[1] = {y};
      return model_status(stream, stream.feed(kernels, steps, inputs, outputs));
    }
    for (int t = 0; t < steps; ++t) {
      const void* inputs[1] = {x + static_cast<std::size_t>(t) * N * I};
      void* outputs[1] = {y + static_cast<std::size_t>(t) * N * P};
      const int status = model_status(stream, stream.step(kernels, inputs, outputs));
      if (status != PYRNN_OK) return status;
    }
    return PYRNN_OK;
  } catch (...) {
    return fail_current();
  }
}

int stream_reset(pyrnn_stream* s) noexcept {
  if (!valid(s)) return bad_handle(s);
  try {
    if (s->module_stream != nullptr)
      s->module_stream->reset();
    else
      s->model_stream->reset();
    return PYRNN_OK;
  } catch (...) {
    return fail_current();
  }
}

int stream_input_size(const pyrnn_stream* s) noexcept {
  return valid(s) ? s->input_size : (bad_handle(s), -1);
}
int stream_output_size(const pyrnn_stream* s) noexcept {
  return valid(s) ? s->output_size : (bad_handle(s), -1);
}
int stream_batch(const pyrnn_stream* s) noexcept {
  return valid(s) ? s->batch : (bad_handle(s), -1);
}

const char* last_error() noexcept { return t_last_error; }

const pyrnn_capi kTable = {
    PYRNN_CAPI_VERSION, sizeof(pyrnn_capi), &stream_handle,      &stream_step,  &stream_feed,
    &stream_reset,      &stream_input_size, &stream_output_size, &stream_batch, &last_error};

}  // namespace

void bind_capi(py::module_& m) {
  // The capsule's pointer is to const data the C side only reads.
  m.attr("_C_API") = py::capsule(const_cast<pyrnn_capi*>(&kTable), PYRNN_CAPI_CAPSULE);
}

}  // namespace pyrnn::bindings
