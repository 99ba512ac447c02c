# pyrnn's C API for Cython: `from pyrnn cimport capi`, build with pyrnn.get_include() on the
# include path, call capi.import_pyrnn() once at module level. The functions, lifetime and
# threading rules, and the array layouts are documented in pyrnn/include/pyrnn/capi.h.
#
#     from pyrnn cimport capi
#     capi.import_pyrnn()
#
#     def run(stream, float[:, ::1] x, float[:, ::1] y):
#         cdef capi.pyrnn_stream* s = capi.stream_handle(stream)  # borrowed; keep `stream`
#         cdef int status
#         with nogil:
#             status = capi.step(s, &x[0, 0], &y[0, 0])
#         capi.check(status)  # raises what s.step would (RuntimeError when busy)

cdef extern from "pyrnn/capi.h":
    ctypedef struct pyrnn_stream:
        pass

    enum:
        PYRNN_CAPI_VERSION
        PYRNN_OK
        PYRNN_BUSY
        PYRNN_ERROR_HANDLE
        PYRNN_ERROR_ARGUMENT
        PYRNN_ERROR_RUNTIME

    # GIL held.
    int pyrnn_import() except -1
    pyrnn_stream* pyrnn_stream_handle(object stream) except NULL
    int pyrnn_raise(int status) except -1

    # No GIL needed.
    int pyrnn_stream_step(pyrnn_stream* stream, const float* x, float* y) noexcept nogil
    int pyrnn_stream_feed(pyrnn_stream* stream, const float* x, int steps,
                          float* y) noexcept nogil
    int pyrnn_stream_reset(pyrnn_stream* stream) noexcept nogil
    int pyrnn_stream_input_size(const pyrnn_stream* stream) noexcept nogil
    int pyrnn_stream_output_size(const pyrnn_stream* stream) noexcept nogil
    int pyrnn_stream_batch(const pyrnn_stream* stream) noexcept nogil
    const char* pyrnn_last_error() noexcept nogil


cdef inline int import_pyrnn() except -1:
    """Fetches the C API from the installed pyrnn; ImportError naming both versions when the
    installed pyrnn's C API differs from the one this extension was built against."""
    return pyrnn_import()


cdef inline pyrnn_stream* stream_handle(object stream) except NULL:
    """A borrowed handle of a pyrnn.Stream or pyrnn.ModelStream, valid while `stream` lives."""
    return pyrnn_stream_handle(stream)


cdef inline int step(pyrnn_stream* stream, const float* x, float* y) noexcept nogil:
    return pyrnn_stream_step(stream, x, y)


cdef inline int feed(pyrnn_stream* stream, const float* x, int steps, float* y) noexcept nogil:
    return pyrnn_stream_feed(stream, x, steps, y)


cdef inline int reset(pyrnn_stream* stream) noexcept nogil:
    return pyrnn_stream_reset(stream)


cdef inline int input_size(const pyrnn_stream* stream) noexcept nogil:
    return pyrnn_stream_input_size(stream)


cdef inline int output_size(const pyrnn_stream* stream) noexcept nogil:
    return pyrnn_stream_output_size(stream)


cdef inline int batch(const pyrnn_stream* stream) noexcept nogil:
    return pyrnn_stream_batch(stream)


cdef inline const char* last_error() noexcept nogil:
    return pyrnn_last_error()


cdef inline int check(int status) except -1:
    """0 for PYRNN_OK; otherwise raises the Python API's exception with the message (GIL held)."""
    return pyrnn_raise(status)
