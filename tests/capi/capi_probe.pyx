# cython: language_level=3, boundscheck=False, wraparound=False
# A Cython extension built against the installed pyrnn by tests/test_capi.py: every call of the
# C API the tests need, each loop run with the GIL released.
from libc.stdint cimport uintptr_t

from pyrnn cimport capi

capi.import_pyrnn()


cdef extern from *:
    """
    /* A flag another thread sets: read from memory on every loop, never hoisted. */
    static int load_flag(const int* flag) { return *(const volatile int*)flag; }
    static void store_flag(int* flag, int value) { *(volatile int*)flag = value; }
    """
    int load_flag(const int* flag) noexcept nogil
    void store_flag(int* flag, int value) noexcept nogil


def reimport():
    """Fetches the C API table again (the tests swap the capsule to check version checks)."""
    capi.import_pyrnn()


def address(stream):
    return <uintptr_t>capi.stream_handle(stream)


def sizes(stream):
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    return capi.input_size(s), capi.output_size(s), capi.batch(s)


def sizes_at(uintptr_t handle):
    """The sizes of a raw handle: (-1, -1, -1) and the message for a bad one."""
    cdef const capi.pyrnn_stream* s = <const capi.pyrnn_stream*>handle
    return capi.input_size(s), capi.output_size(s), capi.batch(s), capi.last_error().decode()


def step_at(uintptr_t handle, float[::1] x, float[::1] y):
    """One step through a raw handle and raw pointers: (status, message)."""
    cdef int status
    cdef const float* xp = &x[0] if x.shape[0] else NULL
    cdef float* yp = &y[0] if y.shape[0] else NULL
    with nogil:
        status = capi.step(<capi.pyrnn_stream*>handle, xp, yp)
    return status, capi.last_error().decode() if status else ""


def feed_at(uintptr_t handle, float[::1] x, int steps, float[::1] y):
    cdef int status
    with nogil:
        status = capi.feed(<capi.pyrnn_stream*>handle, &x[0], steps, &y[0])
    return status, capi.last_error().decode() if status else ""


def steps(stream, const float[:, :, ::1] xs, float[:, :, ::1] ys):
    """xs (T, N, I) -> ys (T, N, P), one step at a time in a loop without the GIL."""
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef Py_ssize_t t, count = xs.shape[0]
    cdef int status = capi.PYRNN_OK
    with nogil:
        for t in range(count):
            status = capi.step(s, &xs[t, 0, 0], &ys[t, 0, 0])
            if status != capi.PYRNN_OK:
                break
    capi.check(status)


def repeat_step(stream, const float[:, ::1] x, float[:, ::1] y, long count):
    """`count` steps of the same x; returns seconds per step (timed in C, no GIL)."""
    from time import perf_counter
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef long i
    cdef int status = capi.PYRNN_OK
    start = perf_counter()
    with nogil:
        for i in range(count):
            status = capi.step(s, &x[0, 0], &y[0, 0])
            if status != capi.PYRNN_OK:
                break
    elapsed = perf_counter() - start
    capi.check(status)
    return elapsed / max(count, 1)


def feed(stream, const float[:, :, ::1] xs, float[:, :, ::1] ys):
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef int status
    with nogil:
        status = capi.feed(s, &xs[0, 0, 0], <int>xs.shape[0], &ys[0, 0, 0])
    capi.check(status)


def reset(stream):
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef int status
    with nogil:
        status = capi.reset(s)
    capi.check(status)


def feed_until(stream, const float[:, :, ::1] xs, float[:, :, ::1] ys, int[::1] flags):
    """Feeds xs again and again until flags[0] is set (by another thread), counting finished
    feeds in flags[1]; a feed refused as busy (the other thread is inside a step) is retried.
    Returns (feeds, refusals)."""
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef long feeds = 0, refusals = 0
    cdef int status = capi.PYRNN_OK
    with nogil:
        while load_flag(&flags[0]) == 0:
            status = capi.feed(s, &xs[0, 0, 0], <int>xs.shape[0], &ys[0, 0, 0])
            if status == capi.PYRNN_BUSY:
                refusals += 1
            elif status != capi.PYRNN_OK:
                break
            else:
                feeds += 1
                store_flag(&flags[1], <int>feeds)
    if status != capi.PYRNN_BUSY:
        capi.check(status)
    return feeds, refusals


def step_until_busy(stream, const float[:, ::1] x, float[:, ::1] y, long attempts,
                    int[::1] flags):
    """Once feed_until (on another thread) has finished a feed, and so is feeding back to back,
    steps until a call comes back other than PYRNN_OK (PYRNN_BUSY: the feeding thread holds
    the stream) or `attempts` ran out, then sets flags[0]; returns (status, message, attempts
    made)."""
    cdef capi.pyrnn_stream* s = capi.stream_handle(stream)
    cdef long i = 0
    cdef int status = capi.PYRNN_OK
    with nogil:
        while load_flag(&flags[1]) == 0:
            pass
        while i < attempts:
            status = capi.step(s, &x[0, 0], &y[0, 0])
            i += 1
            if status != capi.PYRNN_OK:
                break
        store_flag(&flags[0], 1)
    return status, capi.last_error().decode() if status else "", i


def raise_for(int status):
    """The exception pyrnn_raise makes of a status (with this thread's last message)."""
    capi.check(status)
