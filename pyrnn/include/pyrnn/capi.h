/* pyrnn's C API: stream steps from C, C++ and Cython extensions, callable without the GIL.
 *
 * The functions live in pyrnn's own extension module, behind one versioned PyCapsule
 * (pyrnn._core._C_API); an extension includes this header, calls pyrnn_import() once (in its
 * module init, GIL held) and never links against pyrnn. Add pyrnn.get_include() to the include
 * path.
 *
 *     #include <pyrnn/capi.h>
 *     if (pyrnn_import() < 0) return NULL;                // ImportError set
 *     pyrnn_stream* s = pyrnn_stream_handle(py_stream);  // GIL held; NULL: exception set
 *     Py_BEGIN_ALLOW_THREADS
 *     status = pyrnn_stream_step(s, x, y);                // no GIL needed
 *     Py_END_ALLOW_THREADS
 *     if (status != PYRNN_OK) return pyrnn_raise(status), NULL;
 *
 * Handles. pyrnn_stream_handle() takes a pyrnn.Stream (module.stream(), any module kind that can
 * stream: RNN, LSTM, GRU and their cells, unidirectional) or a pyrnn.ModelStream (model.stream())
 * and returns a borrowed handle owned by that Python object: it stays valid as long as the caller
 * holds a reference to the stream object, and must not be used after the last reference is gone.
 * A clone() has a handle of its own. Handles are not freed by the caller.
 *
 * Threads. Every function but pyrnn_import, pyrnn_stream_handle and pyrnn_raise may be called
 * without the GIL, from any thread. One stream is one sequence: a call on a handle while another
 * thread is inside a call on the same stream (through this API or the Python one) returns
 * PYRNN_BUSY at once and changes nothing, where Python's step raises RuntimeError. Different
 * streams, even of the same module, run in parallel.
 *
 * Layout (N = batch rows, I = input size, P = output size, T = steps), contiguous float32:
 *     step: x (N, I) -> y (N, P)
 *     feed: x (T, N, I) -> y (T, N, P), time-major even for a batch_first module (the Python
 *           feed's default layout); equal to the Python feed of the same steps, and to T steps
 *           up to rounding (a chunk's input projections are one GEMM). N = 1 when unbatched.
 * A model stream's frame is one step of its single input (output), batch axis first and the
 * remaining axes flattened into I (P), in the model's order. On a module stream y may be x
 * itself (same pointer and size); any other overlap of x and y (any at all on a model stream,
 * which may read its input after writing its output) is refused with PYRNN_ERROR_ARGUMENT.
 *
 * Errors. Functions return a status; on anything but PYRNN_OK, pyrnn_last_error() gives the
 * message of the calling thread's last failed call (valid until its next failing call), and
 * pyrnn_raise(status) (GIL held) turns it into the Python exception the Python API would raise.
 * The size functions return -1 for a bad handle.
 */
#ifndef PYRNN_CAPI_H
#define PYRNN_CAPI_H

#include <Python.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Raised whenever a change makes extensions built against an older header incompatible. */
#define PYRNN_CAPI_VERSION 1
#define PYRNN_CAPI_CAPSULE "pyrnn._core._C_API"

enum pyrnn_status {
  PYRNN_OK = 0,
  PYRNN_BUSY = 1,           /* another thread is using this stream: nothing was done */
  PYRNN_ERROR_HANDLE = 2,   /* NULL, or not a handle from pyrnn_stream_handle */
  PYRNN_ERROR_ARGUMENT = 3, /* NULL x or y, negative steps, x and y partly overlapping */
  PYRNN_ERROR_RUNTIME = 4   /* the model refused its input (message names the op) */
};

typedef struct pyrnn_stream pyrnn_stream; /* opaque */

/* The table behind the capsule. Fields are only ever appended; abi_version changes when any
 * existing one changes meaning. */
typedef struct pyrnn_capi {
  uint32_t abi_version;
  uint32_t struct_size; /* sizeof(pyrnn_capi) in the installed pyrnn */
  pyrnn_stream* (*stream_handle)(PyObject* stream);
  int (*stream_step)(pyrnn_stream* stream, const float* x, float* y);
  int (*stream_feed)(pyrnn_stream* stream, const float* x, int steps, float* y);
  int (*stream_reset)(pyrnn_stream* stream);
  int (*stream_input_size)(const pyrnn_stream* stream);
  int (*stream_output_size)(const pyrnn_stream* stream);
  int (*stream_batch)(const pyrnn_stream* stream);
  const char* (*last_error)(void);
} pyrnn_capi;

/* This translation unit's copy of the table, set by pyrnn_import(). */
static const pyrnn_capi* pyrnn_api = NULL;

/* Fetches the table from the installed pyrnn (GIL held). 0 on success; -1 with ImportError set
 * when pyrnn cannot be imported or its C API version differs from this header's. */
static inline int pyrnn_import(void) {
  PyObject* module = PyImport_ImportModule("pyrnn._core");
  PyObject* capsule;
  const pyrnn_capi* api;
  if (module == NULL) return -1;
  capsule = PyObject_GetAttrString(module, "_C_API");
  Py_DECREF(module);
  if (capsule == NULL) {
    PyErr_Clear();
    PyErr_SetString(PyExc_ImportError,
                    "pyrnn C API: the installed pyrnn._core has no _C_API capsule; install a "
                    "pyrnn with the C API (version " Py_STRINGIFY(PYRNN_CAPI_VERSION) ")");
    return -1;
  }
  api = (const pyrnn_capi*)PyCapsule_GetPointer(capsule, PYRNN_CAPI_CAPSULE);
  Py_DECREF(capsule);
  if (api == NULL) {
    PyErr_Clear();
    PyErr_SetString(PyExc_ImportError,
                    "pyrnn C API: pyrnn._core._C_API is not a capsule named " PYRNN_CAPI_CAPSULE);
    return -1;
  }
  if (api->abi_version != PYRNN_CAPI_VERSION || api->struct_size < sizeof(pyrnn_capi)) {
    PyErr_Format(PyExc_ImportError,
                 "pyrnn C API version mismatch: this extension was built against version %d "
                 "(table of %d bytes), the installed pyrnn provides version %u (table of %u "
                 "bytes); rebuild the extension against the installed pyrnn",
                 PYRNN_CAPI_VERSION, (int)sizeof(pyrnn_capi), (unsigned)api->abi_version,
                 (unsigned)api->struct_size);
    return -1;
  }
  pyrnn_api = api;
  return 0;
}

/* GIL held. A borrowed handle of a pyrnn.Stream or pyrnn.ModelStream; NULL with TypeError or
 * ValueError set when `stream` is neither or cannot be stepped through this API. */
static inline pyrnn_stream* pyrnn_stream_handle(PyObject* stream) {
  if (pyrnn_api == NULL) {
    PyErr_SetString(PyExc_RuntimeError,
                    "pyrnn C API: call pyrnn_import() (Cython: capi.import_pyrnn()) first");
    return NULL;
  }
  return pyrnn_api->stream_handle(stream);
}

/* No GIL needed. */
static inline int pyrnn_stream_step(pyrnn_stream* stream, const float* x, float* y) {
  return pyrnn_api->stream_step(stream, x, y);
}
static inline int pyrnn_stream_feed(pyrnn_stream* stream, const float* x, int steps, float* y) {
  return pyrnn_api->stream_feed(stream, x, steps, y);
}
/* Zeroes the state of every row (as Stream.reset()). */
static inline int pyrnn_stream_reset(pyrnn_stream* stream) {
  return pyrnn_api->stream_reset(stream);
}
static inline int pyrnn_stream_input_size(const pyrnn_stream* stream) {
  return pyrnn_api->stream_input_size(stream);
}
static inline int pyrnn_stream_output_size(const pyrnn_stream* stream) {
  return pyrnn_api->stream_output_size(stream);
}
static inline int pyrnn_stream_batch(const pyrnn_stream* stream) {
  return pyrnn_api->stream_batch(stream);
}
static inline const char* pyrnn_last_error(void) { return pyrnn_api->last_error(); }

/* GIL held. Sets the Python exception for a failed status (RuntimeError for PYRNN_BUSY and
 * PYRNN_ERROR_RUNTIME, ValueError otherwise) with pyrnn_last_error()'s message; returns -1. */
static inline int pyrnn_raise(int status) {
  PyObject* type;
  if (status == PYRNN_OK) return 0;
  type =
      status == PYRNN_BUSY || status == PYRNN_ERROR_RUNTIME ? PyExc_RuntimeError : PyExc_ValueError;
  PyErr_SetString(type, pyrnn_last_error());
  return -1;
}

#ifdef __cplusplus
}
#endif

#endif /* PYRNN_CAPI_H */
