# cython: language_level=3, boundscheck=False, wraparound=False
# Built by benchmarks/capi_step.py against the installed pyrnn: the step loop a Cython user of
# pyrnn's C API would write, timed like the core's own C++ loop (Stream._time_steps).
from time import perf_counter

from pyrnn cimport capi

capi.import_pyrnn()


def time_steps(stream, const float[::1] x, float[::1] y, long count):
    """Seconds per step of `count` steps of x through the C API, with the GIL released."""
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef long i
    cdef int status = capi.PYRNN_OK
    start = perf_counter()
    with nogil:
        for i in range(count):
            status = capi.step(s, &x[0], &y[0])
            if status != capi.PYRNN_OK:
                break
    elapsed = perf_counter() - start
    capi.check(status)
    return elapsed / max(count, 1)
