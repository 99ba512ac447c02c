/* A C extension that steps pyrnn streams without the GIL, through pyrnn's C API.
 *
 *     import numpy as np, pyrnn, pyrnn_c_example
 *     stream = pyrnn.LSTM(16, 32).stream(batch=4)
 *     xs = np.ones((100, 4, 16), np.float32)        # (T, N, I)
 *     ys = np.empty((100, 4, 32), np.float32)       # (T, N, P)
 *     pyrnn_c_example.run(stream, xs, ys)           # T steps, equal to stream.feed(xs)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pyrnn/capi.h>

/* A C-contiguous float32 buffer of `floats` floats from `object`; -1 with an exception set. */
static int float32_buffer(PyObject* object, Py_buffer* view, int writable, const char* name) {
  int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(object, view, flags) < 0) return -1;
  if (view->format == NULL || view->format[0] != 'f' || view->format[1] != '\0') {
    PyErr_Format(PyExc_TypeError, "%s: expected a float32 array, got format '%s'", name,
                 view->format ? view->format : "B");
    PyBuffer_Release(view);
    return -1;
  }
  return 0;
}

/* run(stream, xs, ys): xs (T, N, I) -> ys (T, N, P), one pyrnn_stream_step per step. */
static PyObject* run(PyObject* self, PyObject* args) {
  PyObject *stream_object, *x_object, *y_object;
  Py_buffer x, y;
  pyrnn_stream* stream;
  Py_ssize_t t, steps, x_step, y_step;
  int status = PYRNN_OK;
  (void)self;
  if (!PyArg_ParseTuple(args, "OOO", &stream_object, &x_object, &y_object)) return NULL;
  stream = pyrnn_stream_handle(stream_object); /* borrowed: stream_object outlives the loop */
  if (stream == NULL) return NULL;
  if (float32_buffer(x_object, &x, 0, "xs") < 0) return NULL;
  if (float32_buffer(y_object, &y, 1, "ys") < 0) {
    PyBuffer_Release(&x);
    return NULL;
  }
  x_step = (Py_ssize_t)pyrnn_stream_batch(stream) * pyrnn_stream_input_size(stream);
  y_step = (Py_ssize_t)pyrnn_stream_batch(stream) * pyrnn_stream_output_size(stream);
  steps = x.len / (Py_ssize_t)sizeof(float) / x_step;
  if (steps * x_step * (Py_ssize_t)sizeof(float) != x.len ||
      steps * y_step * (Py_ssize_t)sizeof(float) != y.len) {
    PyErr_Format(PyExc_ValueError,
                 "xs, ys: expected (T, N, I) and (T, N, P) with N*I = %zd and N*P = %zd floats "
                 "per step, got %zd and %zd floats",
                 x_step, y_step, x.len / (Py_ssize_t)sizeof(float),
                 y.len / (Py_ssize_t)sizeof(float));
    PyBuffer_Release(&x);
    PyBuffer_Release(&y);
    return NULL;
  }
  Py_BEGIN_ALLOW_THREADS
  for (t = 0; t < steps && status == PYRNN_OK; ++t)
    status = pyrnn_stream_step(stream, (const float*)x.buf + t * x_step,
                               (float*)y.buf + t * y_step);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&x);
  PyBuffer_Release(&y);
  if (status != PYRNN_OK) return pyrnn_raise(status), NULL;
  Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "run(stream, xs, ys): xs (T, N, I) -> ys (T, N, P), step by step."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "pyrnn_c_example",
                                    "Stepping pyrnn streams from C.", -1, methods};

PyMODINIT_FUNC PyInit_pyrnn_c_example(void) {
  if (pyrnn_import() < 0) return NULL; /* ImportError naming both C API versions */
  return PyModule_Create(&module);
}
