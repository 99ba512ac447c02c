"""float32 arrays whose dtype is equal to numpy's float32 but a different object (arrays that went
through pickle or multiprocessing, arrays made from ctypes, dtypes carrying metadata) are
float32 everywhere an array is taken: module and cell calls, hx, stream step/feed/out=/state,
load_state_dict and the core call, with the same results as ordinary arrays."""

from __future__ import annotations

import ctypes
import multiprocessing
import pickle
from collections.abc import Callable

import numpy as np
import pytest

import pyrnn


def unpickled(array: np.ndarray) -> np.ndarray:
    return pickle.loads(pickle.dumps(array))


def from_ctypes(array: np.ndarray) -> np.ndarray:
    buffer = (ctypes.c_float * array.size)(*array.ravel().tolist())
    return np.asarray(buffer).reshape(array.shape)


def with_metadata(array: np.ndarray) -> np.ndarray:
    return array.view(np.dtype(np.float32, metadata={"unit": "volt"}))


FORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "unpickled": unpickled,
    "ctypes": from_ctypes,
    "metadata": with_metadata,
}


@pytest.fixture(params=list(FORMS))
def form(request: pytest.FixtureRequest) -> Callable[[np.ndarray], np.ndarray]:
    """One way of making a float32 array whose dtype object is not numpy's float32 singleton."""
    make = FORMS[request.param]

    def checked(array: np.ndarray) -> np.ndarray:
        result = make(np.ascontiguousarray(array, np.float32))
        assert result.dtype == np.float32 and result.dtype is not np.dtype(np.float32)
        np.testing.assert_array_equal(result, array)
        return result

    return checked


RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 2, 3)).astype(np.float32)
H = RNG.standard_normal((1, 2, 4)).astype(np.float32)
C = RNG.standard_normal((1, 2, 4)).astype(np.float32)


def test_module_inputs_and_states(form: Callable[[np.ndarray], np.ndarray]) -> None:
    gru, lstm = pyrnn.GRU(3, 4, seed=0), pyrnn.LSTM(3, 4, seed=1)
    for got, want in [
        (gru(form(X)), gru(X)),
        (gru(X, form(H)), gru(X, H)),
        (gru(form(X[:, 0])), gru(X[:, 0])),
    ]:
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    (out, (h, c)), (out_ref, (h_ref, c_ref)) = lstm(form(X), (form(H), form(C))), lstm(X, (H, C))
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(h, h_ref)
    np.testing.assert_array_equal(c, c_ref)


def test_cells(form: Callable[[np.ndarray], np.ndarray]) -> None:
    rnn, lstm = pyrnn.RNNCell(3, 4, seed=0), pyrnn.LSTMCell(3, 4, seed=1)
    np.testing.assert_array_equal(rnn(form(X[0]), form(H[0])), rnn(X[0], H[0]))
    got, want = lstm(form(X[0]), (form(H[0]), form(C[0]))), lstm(X[0], (H[0], C[0]))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_stream_step_feed_out_and_state(form: Callable[[np.ndarray], np.ndarray]) -> None:
    module = pyrnn.LSTM(3, 4, seed=2)
    stream, reference = module.stream(batch=2), module.stream(batch=2)  # same calls, plain arrays
    out = form(np.zeros((2, 4)))
    assert stream.step(form(X[0]), out=out) is out
    np.testing.assert_array_equal(out, reference.step(X[0]))
    np.testing.assert_array_equal(stream.step(form(X[1])), reference.step(X[1]))
    outs = form(np.zeros((4, 2, 4)))
    assert stream.feed(form(X[2:]), out=outs) is outs
    np.testing.assert_array_equal(outs, reference.feed(X[2:]))
    np.testing.assert_array_equal(stream.feed(form(X[:2])), reference.feed(X[:2]))

    h, c = reference.state
    stream.reset()
    stream.state = (form(h), form(c))
    np.testing.assert_array_equal(stream.step(X[0]), reference.step(X[0]))
    gru = pyrnn.GRU(3, 4, seed=2).stream()
    gru.state = form(H[:, 0])
    np.testing.assert_array_equal(gru.state, H[:, 0])


def test_load_state_dict(form: Callable[[np.ndarray], np.ndarray]) -> None:
    source, target = pyrnn.GRU(3, 4, seed=3), pyrnn.GRU(3, 4, seed=4)
    target.load_state_dict({key: form(value) for key, value in source.state_dict().items()})
    np.testing.assert_array_equal(target(X)[0], source(X)[0])


def test_core_forward_outputs(form: Callable[[np.ndarray], np.ndarray]) -> None:
    lstm = pyrnn.LSTM(3, 4, seed=5)
    out, hn, cn = form(np.zeros((6, 2, 4))), form(np.zeros((1, 2, 4))), form(np.zeros((1, 2, 4)))
    lstm._network.forward(form(X), out, None, None, hn, cn)
    out_ref, (h_ref, c_ref) = lstm(X)
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(hn, h_ref)
    np.testing.assert_array_equal(cn, c_ref)


def test_byte_swapped_float32_is_converted_not_taken_as_native() -> None:
    """Equivalence means native byte order: a big-endian input is converted, an output refused."""
    gru = pyrnn.GRU(3, 4, seed=0)
    np.testing.assert_array_equal(gru(X.astype(">f4"))[0], gru(X)[0])
    with pytest.raises(ValueError, match="out: expected dtype float32, got >f4"):
        gru.stream(batch=2).step(X[0], out=np.zeros((2, 4), ">f4"))


def test_arrays_back_from_a_worker_process() -> None:
    """Results computed in a multiprocessing.Pool worker come back unpickled; they go straight
    back into modules and streams as inputs, states and out=."""
    gru = pyrnn.GRU(4, 4, seed=6)  # input_size == output size: outputs can be inputs
    x = RNG.standard_normal((6, 2, 4)).astype(np.float32)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out, hn = pool.apply(gru, (x,))
        fed = pool.apply(gru.stream(batch=2).feed, (x,))
    for array in (out, hn, fed):
        assert array.dtype is not np.dtype(np.float32)  # really the unpickled kind
    np.testing.assert_array_equal(out, gru(x)[0])
    np.testing.assert_array_equal(fed, gru(x)[0])
    np.testing.assert_array_equal(gru(out, hn)[0], gru(out.copy(), hn.copy())[0])
    stream = gru.stream(batch=2)
    stream.state = hn
    y = fed[0]
    assert stream.step(out[0], out=y) is y
    np.testing.assert_array_equal(y, gru(out[:1].copy(), hn.copy())[0][0])
