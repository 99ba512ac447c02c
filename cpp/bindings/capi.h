// The object behind a C API handle (pyrnn/include/pyrnn/capi.h): a member of the Python stream
// object that owns it, filled on the first pyrnn_stream_handle() call, so a handle lives exactly
// as long as its stream and costs nothing to streams that are never stepped from C.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "core/stream.h"
#include "graph/model_stream.h"
#include "pyrnn/capi.h"

// Named by the C header (an opaque struct there), hence global.
struct pyrnn_stream {
  // kCapiMagic while filled and owned by a live stream: catches NULL, stray pointers into
  // readable memory and most uses after the owner was freed.
  std::uint64_t magic = 0;
  pyrnn::Stream* module_stream = nullptr;  // exactly one of the two is set
  pyrnn::graph::ModelStream* model_stream = nullptr;
  int input_size = 0;   // floats per row of one step's x
  int output_size = 0;  // floats per row of one step's y
  int batch = 0;
  // A model stream whose input and output both have time outermost: its feed takes (T, N, I)
  // as is. Otherwise the C API's time-major feed runs step by step.
  bool model_feed_in_place = false;

  pyrnn_stream() = default;
  // A copied stream (a fork) must not inherit a handle pointing at its original.
  pyrnn_stream(const pyrnn_stream&) noexcept {}
  pyrnn_stream& operator=(const pyrnn_stream&) = delete;
  // volatile: a plain store to an object about to die may be dropped by the optimiser.
  ~pyrnn_stream() { *static_cast<volatile std::uint64_t*>(&magic) = 0; }
};

namespace pyrnn::bindings {

namespace py = pybind11;

inline constexpr std::uint64_t kCapiMagic = 0x707972726e5f7331;  // "pyrrn_s1"

// The handle of a _core.Stream (_core.ModelStream), filled if needed; nullptr when `object` is
// not one. Throws like the Python API for an uninitialised object or a model the C API cannot
// step. GIL held.
pyrnn_stream* capi_module_stream(pybind11::handle object);
pyrnn_stream* capi_model_stream(pybind11::handle object);

}  // namespace pyrnn::bindings
