"""Streams: step and feed agree with forward() for every kind, batch rows are independent, state
round-trips, forks and pickles are faithful, bad inputs fail with clear messages, the hot path
allocates nothing, threads share a module safely and memory stays flat over 10^6 steps."""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import threading
import time
import tracemalloc
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from overlap import run_until_overlapped

import pyrnn
from pyrnn import _core

# Streams and forward() run the same kernels; what differs is how the work is grouped: a step is
# a chunk of one time step, and a chunk's input projection is one GEMM over its (steps x rows)
# rows. The scalar kernels sum every dot product in the same order however the rows are grouped,
# so there the results are bit-identical and held exactly. The SIMD kernels are not: a one-step
# chunk may fold the input projection into the step kernel (kernels.use_input_step), and the
# GEMM's microkernels block a few rows and a single row differently, so a sum may round in
# another order: 1e-6 absolute plus 1e-6 relative (relu RNNs grow) allows that and no more.
SIMD_ATOL, SIMD_RTOL = 1e-6, 1e-6


def assert_close(actual: Any, expected: Any) -> None:
    """Stream results against forward() (or another grouping of the same work)."""
    if pyrnn.active_isa() == "scalar":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, atol=SIMD_ATOL, rtol=SIMD_RTOL)


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test that takes it runs once per ISA this CPU supports."""
    previous = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    yield request.param
    pyrnn.set_isa(previous)


def make(kind: str, input_size: int, hidden: int, **options: Any) -> pyrnn.Module:
    if kind == "rnn_relu":
        return pyrnn.RNN(input_size, hidden, nonlinearity="relu", seed=11, **options)
    return {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind](
        input_size, hidden, seed=11, **options
    )


SEQUENCE_CASES = [
    ("rnn", {}),
    ("rnn_relu", {"num_layers": 2}),
    ("gru", {}),
    ("gru", {"num_layers": 3}),
    ("lstm", {}),
    ("lstm", {"num_layers": 2}),
    ("lstm", {"num_layers": 2, "proj_size": 3}),
]


@pytest.mark.parametrize(("kind", "options"), SEQUENCE_CASES)
@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_step_and_feed_match_forward(
    isa: str, kind: str, options: dict[str, Any], batch: int | None, batch_first: bool
) -> None:
    module = make(kind, 5, 17, batch_first=batch_first, **options)
    rng = np.random.default_rng(0)
    steps = 300  # crosses the feed chunk (128 steps for one row) more than once
    if batch is None:
        x = rng.standard_normal((steps, 5)).astype(np.float32)
    elif batch_first:
        x = rng.standard_normal((batch, steps, 5)).astype(np.float32)
    else:
        x = rng.standard_normal((steps, batch, 5)).astype(np.float32)
    time_axis = 1 if batch is not None and batch_first else 0
    if batch is None:
        # Reference through the batched layout with one row (forward's unbatched output with
        # batch_first=True is checked elsewhere; it is not what this test is about).
        row_axis = 0 if batch_first else 1
        expected, state = module(np.expand_dims(x, row_axis))
        expected = np.take(expected, 0, axis=row_axis)
        state = tuple(h[:, 0] for h in state) if kind == "lstm" else state[:, 0]
    else:
        expected, state = module(x)

    stepped = module.stream(batch)
    outputs = [stepped.step(np.take(x, t, axis=time_axis)) for t in range(steps)]
    assert_close(np.stack(outputs, axis=time_axis), expected)

    fed = module.stream(batch)
    pieces, start = [], 0
    for length in itertools.cycle([1, 7, 130, 2, 60]):
        stop = min(steps, start + length)
        pieces.append(fed.feed(np.take(x, range(start, stop), axis=time_axis)))
        start = stop
        if start == steps:
            break
    assert_close(np.concatenate(pieces, axis=time_axis), expected)

    for stream in (stepped, fed):
        if kind == "lstm":
            assert_close(stream.state[0], state[0])
            assert_close(stream.state[1], state[1])
        else:
            assert_close(stream.state, state)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("batch", [None, 4])
def test_cell_streams_match_cell_calls(isa: str, kind: str, batch: int | None) -> None:
    cell = {"rnn": pyrnn.RNNCell, "gru": pyrnn.GRUCell, "lstm": pyrnn.LSTMCell}[kind](3, 9, seed=2)
    rng = np.random.default_rng(1)
    shape = (3,) if batch is None else (batch, 3)
    xs = rng.standard_normal((40, *shape)).astype(np.float32)
    hx: Any = None
    expected = []
    for x in xs:
        hx = cell(x, hx)
        expected.append(hx[0] if kind == "lstm" else hx)
    stream = cell.stream(batch)
    assert_close(np.stack([stream.step(x) for x in xs]), np.stack(expected))
    fed = cell.stream(batch)
    assert_close(np.concatenate([fed.feed(xs[:25]), fed.feed(xs[25:])]), np.stack(expected))
    for s in (stream, fed):
        if kind == "lstm":
            assert_close(s.state[0], hx[0])
            assert_close(s.state[1], hx[1])
            assert s.state[0].shape == (*shape[:-1], 9)
        else:
            assert_close(s.state, hx)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_stream_matches_torch_lstm_with_projection() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    reference = torch.nn.LSTM(4, 12, num_layers=2, proj_size=5)
    module = pyrnn.from_torch(reference)
    x = torch.randn(50, 2, 4)
    with torch.inference_mode():
        expected, (hn, cn) = reference(x)
    stream = module.stream(batch=2)
    outputs = np.stack([stream.step(step.numpy()) for step in x])  # tensors, via the slow path
    from parity_helpers import assert_close as assert_parity
    from parity_helpers import terms

    assert_parity(outputs, expected, False, "output", terms(module))
    assert_parity(stream.state[0], hn, False, "h_n", terms(module))
    assert_parity(stream.state[1], cn, False, "c_n", terms(module))


def test_out_is_written_in_place_and_returned() -> None:
    module = pyrnn.GRU(3, 6, num_layers=2, batch_first=True, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 9, 3)).astype(np.float32)
    expected, _ = module(x)
    stream = module.stream(batch=4)
    y = np.full((4, 6), np.nan, np.float32)
    assert stream.step(x[:, 0], out=y) is y
    assert_close(y, expected[:, 0])
    ys = np.full((4, 8, 6), np.nan, np.float32)
    assert stream.feed(x[:, 1:], ys) is ys
    assert_close(ys, expected[:, 1:])


def test_feed_reads_strided_and_converted_inputs() -> None:
    module = pyrnn.LSTM(3, 7, seed=5)
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((20, 2, 6))
    x64 = wide[:, :, ::2]  # float64, strided last axis: converted
    x32 = np.ascontiguousarray(x64, np.float32)[::2]  # float32, every other step: read in place
    expected, _ = module(x32)
    stream = module.stream(batch=2)
    assert_close(stream.feed(x64[::2]), expected)
    stream.reset()
    assert_close(stream.feed(x32), expected)
    stream.reset()
    assert_close(stream.feed(x32.tolist()), expected)


ALIAS_CASES = [
    ("rnn", {}),
    ("rnn_relu", {"num_layers": 2}),
    ("gru", {"num_layers": 2}),
    ("lstm", {}),
    ("lstm", {"num_layers": 2, "proj_size": 6}),  # output 6 == input 6, hidden 17
]


@pytest.mark.parametrize(("kind", "options"), ALIAS_CASES)
@pytest.mark.parametrize(("batch", "batch_first"), [(None, False), (3, False), (3, True)])
def test_out_may_be_x_itself(
    isa: str, kind: str, options: dict[str, Any], batch: int | None, batch_first: bool
) -> None:
    """step(x, out=x) and feed(x, out=x) (output size == input size): every step's input, and
    every feed chunk's, is read before that step's or chunk's output is written, so writing over
    x gives the results of a separate output array, across several feed chunks."""
    hidden = 17 if "proj_size" in options else 6
    module = make(kind, 6, hidden, batch_first=batch_first, **options)
    rng = np.random.default_rng(2)
    steps = 300  # more than two feed chunks of one row
    rows = () if batch is None else (batch,)
    shape = (*rows, steps, 6) if batch_first else (steps, *rows, 6)
    x = rng.standard_normal(shape).astype(np.float32)
    expected = module.stream(batch).feed(x)
    buffer = x.copy()
    assert module.stream(batch).feed(buffer, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)

    time_axis = 1 if batch is not None and batch_first else 0
    separate, aliased = module.stream(batch), module.stream(batch)
    for t in range(5):
        step = np.take(x, t, axis=time_axis)
        want = separate.step(step)
        step = step.copy()
        assert aliased.step(step, out=step) is step
        np.testing.assert_array_equal(step, want)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_out_overlapping_x_is_refused(kind: str) -> None:
    """An out that shares memory with x without being x itself could overwrite inputs before
    they are read (a feed reads x a chunk of 128 steps at a time; feed(buf[:-1], out=buf[1:])
    used to return wrong values from step 128 on): ValueError naming both, nothing computed."""
    module = make(kind, 4, 4)
    buffer = np.random.default_rng(3).standard_normal((301, 4)).astype(np.float32)
    flat = buffer.ravel()
    batched = buffer[:300].reshape(150, 2, 4)
    half_step = (flat[:-4].reshape(-1, 4), flat[2:-2].reshape(-1, 4))
    cases = [
        ("feed, out one step ahead", None, "feed", buffer[:-1], buffer[1:]),
        ("feed, out one step behind", None, "feed", buffer[1:], buffer[:-1]),
        ("feed, out half a step ahead", None, "feed", *half_step),
        ("feed, strided x", None, "feed", buffer[:40:2], buffer[1:21]),
        ("feed, batched", 2, "feed", batched[:-1], batched[1:]),
        ("step, half a step ahead", None, "step", flat[:4], flat[2:6]),
        ("step, batched rows shifted", 2, "step", buffer[:2], buffer[1:3]),
    ]  # fmt: skip
    for what, batch, method, x, out in cases:
        stream = module.stream(batch)
        before = buffer.copy()
        with pytest.raises(ValueError, match=r"^out: overlaps x in memory; expected an array "):
            getattr(stream, method)(x, out=out)
        np.testing.assert_array_equal(buffer, before, err_msg=what)
        state = stream.state[0] if kind == "lstm" else stream.state
        assert not np.any(state), what

    # Disjoint views of one buffer are fine.
    np.testing.assert_array_equal(
        module.stream().feed(buffer[:150], out=buffer[150:300]),
        module.stream().feed(before[:150]),
    )


def test_reset_rows_independently() -> None:
    module = pyrnn.LSTM(2, 8, num_layers=2, seed=3)
    rng = np.random.default_rng(4)
    first = rng.standard_normal((10, 4, 2)).astype(np.float32)
    second = rng.standard_normal((6, 4, 2)).astype(np.float32)
    stream = module.stream(batch=4)
    stream.feed(first)
    stream.reset([1, -1])  # rows 1 and 3 start new conversations
    out = stream.feed(second)
    continued, _ = module(np.concatenate([first, second]))
    fresh, _ = module(second)
    assert_close(out[:, [0, 2]], continued[10:, [0, 2]])
    assert_close(out[:, [1, 3]], fresh[:, [1, 3]])
    stream.reset(2)
    h, c = stream.state
    assert not h[:, 2].any() and not c[:, 2].any()
    assert h[:, 0].any() and c[:, 0].any()
    stream.reset()
    assert not stream.state[0].any() and not stream.state[1].any()


def test_batched_stream_equals_separate_streams() -> None:
    module = pyrnn.GRU(5, 16, seed=9)
    xs = np.random.default_rng(2).standard_normal((12, 64, 5)).astype(np.float32)
    together = module.stream(batch=64)
    separate = [module.stream() for _ in range(64)]
    for x in xs:
        joint = together.step(x)
        single = np.stack([s.step(row) for s, row in zip(separate, x, strict=True)])
        assert_close(joint, single)


@pytest.mark.parametrize(("kind", "options"), SEQUENCE_CASES)
def test_state_round_trips_and_seeds_the_sequence(kind: str, options: dict[str, Any]) -> None:
    module = make(kind, 3, 6, **options)
    layers = options.get("num_layers", 1)
    rng = np.random.default_rng(6)
    h = rng.standard_normal((layers, 2, options.get("proj_size") or 6)).astype(np.float32)
    c = rng.standard_normal((layers, 2, 6)).astype(np.float32)
    state = (h, c) if kind == "lstm" else h
    stream = module.stream(batch=2)
    stream.state = state
    got = stream.state
    if kind == "lstm":
        np.testing.assert_array_equal(got[0], h)
        np.testing.assert_array_equal(got[1], c)
    else:
        np.testing.assert_array_equal(got, h)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    expected, _ = module(x, state)
    assert_close(stream.feed(x), expected)
    # Unbatched streams take the unbatched (L, P) layout, as forward does.
    single = module.stream()
    single.state = (h[:, 0], c[:, 0]) if kind == "lstm" else h[:, 0]
    assert_close(single.feed(x[:, 0]), expected[:, 0])


def test_clone_and_copies_are_independent() -> None:
    module = pyrnn.LSTM(2, 5, seed=1)
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    stream = module.stream()
    stream.feed(x[:4])
    for twin in (stream.clone(), copy.copy(stream), copy.deepcopy(stream)):
        assert type(twin) is pyrnn.Stream
        before = stream.state
        a = twin.feed(x[4:])
        np.testing.assert_array_equal(stream.state[0], before[0])  # the original is untouched
        b = stream.clone().feed(x[4:])
        np.testing.assert_array_equal(a, b)
    expected, _ = module(x)
    assert_close(stream.feed(x[4:]), expected[4:])


def test_unpickled_arrays_are_float32_inputs_and_outputs() -> None:
    # numpy gives an unpickled array (pickle, multiprocessing, dask) its own dtype object, equal
    # to float32 but not the same object.
    def unpickled(x: np.ndarray) -> np.ndarray:
        copy: np.ndarray = pickle.loads(pickle.dumps(x))
        assert copy.dtype == np.float32 and copy.dtype is not np.dtype(np.float32)
        return copy

    module = pyrnn.LSTM(3, 4, seed=1)
    x = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)
    expected = module.stream(batch=2).feed(x)
    out = unpickled(np.zeros((5, 2, 4), np.float32))
    module.stream(batch=2).feed(unpickled(x), out=out)
    np.testing.assert_array_equal(out, expected)
    reference = module.stream(batch=2)
    stream, y = module.stream(batch=2), unpickled(np.zeros((2, 4), np.float32))
    for t in range(5):
        stream.step(unpickled(x[t]), out=y)
        np.testing.assert_array_equal(y, reference.step(x[t]))
    cell = pyrnn.GRUCell(3, 4, seed=1)
    np.testing.assert_array_equal(cell(unpickled(x[0])), cell(x[0]))


def test_streams_and_modules_pickle() -> None:
    module = pyrnn.GRU(3, 4, num_layers=2, batch_first=True, seed=8)
    x = np.random.default_rng(1).standard_normal((2, 10, 3)).astype(np.float32)
    stream = module.stream(batch=2)
    stream.feed(x[:, :6])
    restored = pickle.loads(pickle.dumps(stream))
    assert restored.batch == 2 and restored.module.config == module.config
    np.testing.assert_array_equal(restored.feed(x[:, 6:]), stream.feed(x[:, 6:]))
    # A pickled module streams like the original.
    twin = pickle.loads(pickle.dumps(module))
    np.testing.assert_array_equal(twin.stream(2).feed(x), module.stream(2).feed(x))


@pytest.mark.parametrize("batch", [None, 3])
def test_cell_stream_state_and_pickle(batch: int | None) -> None:
    cell = pyrnn.LSTMCell(2, 5, seed=4)
    rng = np.random.default_rng(5)
    rows = () if batch is None else (batch,)
    h, c = (rng.standard_normal((*rows, 5)).astype(np.float32) for _ in range(2))
    stream = cell.stream(batch)
    stream.state = (h, c)
    np.testing.assert_array_equal(stream.state[0], h)
    np.testing.assert_array_equal(stream.state[1], c)
    x = rng.standard_normal((*rows, 2)).astype(np.float32)
    expected_h, expected_c = cell(x, (h, c))
    restored = pickle.loads(pickle.dumps(stream))
    for s in (stream, restored):
        assert_close(s.step(x), expected_h)
        assert_close(s.state[1], expected_c)


def test_stream_keeps_its_weights_when_the_module_is_reloaded() -> None:
    module = pyrnn.RNN(2, 3, seed=0)
    x = np.ones((4, 2), np.float32)
    stream = module.stream()
    expected, _ = module(x)
    module.load_state_dict({k: v * 0 for k, v in module.state_dict().items()})
    assert_close(stream.feed(x), expected)
    restored = pickle.loads(pickle.dumps(stream))  # pickles the weights the stream runs on
    restored.reset()
    assert_close(restored.feed(x), expected)


def test_bidirectional_modules_cannot_stream() -> None:
    with pytest.raises(ValueError, match="bidirectional module cannot stream"):
        pyrnn.LSTM(2, 3, bidirectional=True).stream()


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [(0, ValueError, "batch: expected None or an int >= 1, got 0"), (2.0, TypeError, "batch")],
)
def test_bad_batch(batch: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        pyrnn.GRU(2, 3).stream(batch)


def test_bad_step_inputs_name_the_argument() -> None:
    stream = pyrnn.LSTM(3, 4, seed=0).stream(batch=2)
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3\), got \(3,\)"):
        stream.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 3\), got \(2, 4\)"):
        stream.step(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"x: expected a real floating dtype.*got dtype int64"):
        stream.step(np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 4\), got \(4,\)"):
        stream.step(x, out=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="out: expected dtype float32, got float64"):
        stream.step(x, out=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        stream.step(x, out=np.zeros((2, 8), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="out: the array is read-only"):
        read_only = np.zeros((2, 4), np.float32)
        read_only.flags.writeable = False
        stream.step(x, out=read_only)
    with pytest.raises(TypeError, match=r"out: expected a numpy float32 array.*list"):
        stream.step(x, out=[[0.0] * 4] * 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'y'"):
        stream.step(x, y=None)
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        stream.step()
    assert not stream.state[0].any()  # nothing above ran a step


def test_bad_feed_inputs_name_the_argument() -> None:
    stream = pyrnn.GRU(3, 4, batch_first=True, seed=0).stream(batch=2)
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, steps, input_size\) = "):
        stream.feed(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 5, 4\), got \(5, 2, 4\)"):
        stream.feed(np.zeros((2, 5, 3), np.float32), out=np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        stream.feed(np.zeros((2, 5, 3), np.float32), np.zeros((5, 2, 4), np.float32).swapaxes(0, 1))
    single = pyrnn.GRU(3, 4).stream()
    with pytest.raises(ValueError, match=r"x: expected shape \(steps, input_size\) = \(T, 3\)"):
        single.feed(np.zeros((5, 1, 3), np.float32))
    assert single.feed(np.zeros((0, 3), np.float32)).shape == (0, 4)


def test_bad_state_and_rows() -> None:
    stream = pyrnn.LSTM(3, 4, num_layers=2, seed=0).stream(batch=2)
    with pytest.raises(TypeError, match=r"state: expected a pair \(h, c\)"):
        stream.state = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"state\[1\]: expected shape \(2, 2, 4\), got \(2, 4\)"):
        stream.state = (np.zeros((2, 2, 4)), np.zeros((2, 4)))
    with pytest.raises(IndexError, match="rows: index 2 is out of range for a stream of batch=2"):
        stream.reset([0, 2])
    with pytest.raises(TypeError, match="rows: expected an int or a sequence of ints"):
        stream.reset(0.5)
    with pytest.raises(ValueError, match="rows: an unbatched stream has no batch rows"):
        pyrnn.GRU(1, 1).stream().reset(0)
    gru = pyrnn.GRU(3, 4).stream()
    with pytest.raises(ValueError, match=r"state: expected shape \(1, 4\), got \(1, 1, 4\)"):
        gru.state = np.zeros((1, 1, 4))


def _peak_bytes_during(call: Any, repeats: int = 1000) -> int:
    """Bytes allocated through Python's allocators (numpy's included) at any moment while
    `call` runs `repeats` times, beyond what was allocated before: 0 means nothing was
    allocated per call, not even transiently."""
    loop = itertools.repeat(None, repeats)
    tracemalloc.start()
    try:
        call()  # first call outside the measurement: lazy caches of the interpreter
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in loop:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


@pytest.mark.parametrize("weights", ["fp32", "fp16", "bf16", "int8"])
def test_step_and_feed_with_out_allocate_nothing_in_python(weights: str) -> None:
    module = pyrnn.LSTM(4, 8, num_layers=2, batch_first=True, seed=0)
    if weights != "fp32":
        module = pyrnn.quantize(module, weights)
    stream = module.stream(batch=3)
    x, y = np.ones((3, 4), np.float32), np.empty((3, 8), np.float32)
    xs, ys = np.ones((3, 5, 4), np.float32), np.empty((3, 5, 8), np.float32)
    assert _peak_bytes_during(lambda: stream.step(x, out=y)) == 0
    assert _peak_bytes_during(lambda: stream.step(x, y)) == 0
    assert _peak_bytes_during(lambda: stream.feed(xs, out=ys)) == 0
    # The measurement can see an allocation: without out, each call makes one array.
    assert _peak_bytes_during(lambda: stream.step(x)) > 0


def _run(stream: pyrnn.Stream, xs: np.ndarray) -> np.ndarray:
    return np.stack([stream.step(x) for x in xs])


def test_threads_share_one_module() -> None:
    """Eight threads step their own streams of one module, bit-identical to running them one
    after another, and provably at the same time (hidden 128: a step computes long enough with
    the GIL released for the others to get in; at 24 they took turns). Catches: a module whose
    streams share scratch memory, and calls serialised by a lock or a held GIL."""
    module = pyrnn.LSTM(6, 128, num_layers=2, seed=4)
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((200, 2, 6)).astype(np.float32) for _ in range(8)]
    expected = [_run(module.stream(batch=2), xs) for xs in inputs]

    def run() -> None:
        results: list[Any] = [None] * 8
        barrier = threading.Barrier(8)

        def work(index: int) -> None:
            stream = module.stream(batch=2)
            barrier.wait()  # every thread steps at the same time
            results[index] = _run(stream, inputs[index])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_array_equal(got, want)  # same kernels, same order: bit-identical

    run_until_overlapped(run)


def test_one_stream_used_by_two_threads_fails_cleanly() -> None:
    module = pyrnn.GRU(16, 96, seed=0)
    stream = module.stream()
    rng = np.random.default_rng(0)
    step = rng.standard_normal(16).astype(np.float32)
    # A feed long enough (~0.3 s) for the main thread to catch it in progress.
    start = time.perf_counter()
    module.stream().feed(np.zeros((2000, 16), np.float32))
    steps = max(2000, int(2000 * 0.3 / max(time.perf_counter() - start, 1e-6)))
    xs = rng.standard_normal((steps, 16)).astype(np.float32)
    expected_out = module.stream().feed(xs)
    expected_state = module.stream()
    expected_state.feed(xs)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("out", stream.feed(xs)))
    worker.start()
    refused = []
    deadline = time.perf_counter() + 30
    while worker.is_alive() and time.perf_counter() < deadline:
        try:
            stream.state  # noqa: B018 -- reading the state also needs the stream to itself
        except RuntimeError as error:
            refused.append(str(error))
            for attempt in (lambda: stream.step(step), stream.reset, stream.clone):
                with pytest.raises(RuntimeError, match="already in use by another thread"):
                    attempt()
            break
    worker.join()
    # Reaching the refusal at all shows the GIL is released while the worker computes: with it
    # held, this thread could not run until the feed had finished.
    assert refused and "stream is already in use by another thread" in refused[0]
    np.testing.assert_array_equal(outcome["out"], expected_out)
    np.testing.assert_array_equal(stream.state, expected_state.state)  # nothing corrupted


def _feed_in_progress(stream: pyrnn.Stream, xs: np.ndarray) -> threading.Thread:
    """Starts stream.feed(xs) on a thread and returns once the feed holds the stream."""
    worker = threading.Thread(target=stream.feed, args=(xs,))
    worker.start()
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        try:
            stream.state  # noqa: B018 -- refused while the feed holds the stream
        except RuntimeError:
            return worker
    raise AssertionError("the feed never held the stream")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_stream_busy_in_the_parent_is_usable_in_a_forked_child() -> None:
    """A thread of the parent is inside a long feed when the parent forks: that thread does not
    exist in the child, whose copy of the stream must not stay "in use by another thread"."""
    module = pyrnn.GRU(16, 96, seed=0)
    stream = module.stream()
    x = np.ones(16, np.float32)
    expected = module.stream().step(x)
    start = time.perf_counter()
    module.stream().feed(np.zeros((2000, 16), np.float32))
    steps = max(2000, int(2000 * 0.5 / max(time.perf_counter() - start, 1e-6)))  # ~0.5 s
    xs = np.random.default_rng(0).standard_normal((steps, 16)).astype(np.float32)
    worker = _feed_in_progress(stream, xs)
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock: this test forks
        # one on purpose, and the child touches nothing the other thread could have locked.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        try:
            stream.step(x)
            stream.reset()  # the documented way to a known state after a fork
            report = "ok" if np.array_equal(stream.step(x), expected) else "wrong result"
        except BaseException as error:
            report = f"{type(error).__name__}: {error}"
        os.write(write, report.encode())
        os._exit(0)
    os.close(write)
    with pytest.raises(RuntimeError, match="already in use"):  # still held in the parent
        stream.state  # noqa: B018
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read().decode()
    os.waitpid(pid, 0)
    worker.join()
    assert report == "ok"
    stream.step(x)  # free again in the parent once its feed has finished


def test_a_stream_cannot_be_re_initialised() -> None:
    """__init__ again would rebind the Python attributes but keep the old C++ stream (pybind11
    ignores a second __init__): refused, and the stream is unchanged."""
    gru, lstm = pyrnn.GRU(3, 4, seed=0), pyrnn.LSTM(5, 6, seed=1)
    stream = gru.stream(batch=2)
    with pytest.raises(TypeError, match=r"a Stream cannot be re-initialised; make a new one"):
        stream.__init__(lstm)  # type: ignore[misc]
    with pytest.raises(TypeError, match="a Stream cannot be re-initialised"):
        stream.__init__(gru, None)  # type: ignore[misc]
    assert stream.module is gru and stream.batch == 2 and stream.rows == 2
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(stream.step(x), gru.stream(batch=2).step(x))


def _peak_resident_bytes() -> int:
    # ru_maxrss is the high-water mark (KiB on Linux): if it does not move, memory never grew.
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.slow
def test_memory_stays_flat_over_a_million_steps() -> None:
    stream = pyrnn.LSTM(1, 2, num_layers=2, seed=0).stream()
    x, y = np.ones(1, np.float32), np.empty(2, np.float32)
    step = stream.step
    for _ in range(10_000):  # warm up: interpreter caches, first pages touched
        step(x, out=y)
        step(x)
    before = _peak_resident_bytes()
    for _ in itertools.repeat(None, 500_000):
        step(x, out=y)
        step(x)  # allocates and frees an output array each time
    grown = _peak_resident_bytes() - before
    # A leak of even 4 bytes per step would add 4 MB; allow 1 MB of allocator noise.
    assert grown < 1 << 20, f"peak resident memory grew by {grown} bytes over 10^6 steps"


def test_uninitialised_instances_raise_instead_of_crashing() -> None:
    """__new__ without __init__ must give TypeError from every method, never a segfault."""
    x = np.zeros(3, np.float32)
    for stream in (pyrnn.Stream.__new__(pyrnn.Stream), _core.Stream.__new__(_core.Stream)):
        calls = [
            lambda s=stream: s.step(x),
            lambda s=stream: s.feed(x[None]),
            lambda s=stream: s._reset(),
            lambda s=stream: s._reset_row(0),
            lambda s=stream: s._get_state(),
            lambda s=stream: s.rows,
            lambda s=stream: _core.Stream(s),
        ]
        for call in calls:
            with pytest.raises(TypeError, match="never initialised"):
                call()
    network = _core.Network.__new__(_core.Network)
    empty = np.zeros((1, 1, 4), np.float32)
    with pytest.raises(TypeError, match="Network was never initialised"):
        network.forward(np.zeros((1, 1, 3), np.float32), empty, None, None, empty, None)
    with pytest.raises(RuntimeError, match="non-held"):  # pybind11's own holder check
        _core.Stream(network, 1, False, False)


def test_core_streams_keep_their_object_through_subclasses_reinit_and_collection() -> None:
    """The C++ object behind a stream is found the same way for Python subclasses (with a
    __dict__ or __slots__), survives a second __init__ (which changes nothing), and an __init__
    that fails leaves the instance refusing every call."""
    import gc
    import weakref

    source = pyrnn.LSTM(3, 4, seed=0).stream()
    x = np.ones(3, np.float32)
    want = _core.Stream(source).step(x)

    class WithDict(_core.Stream):
        pass

    class WithSlots(_core.Stream):
        __slots__ = ("tag",)

    for cls in (_core.Stream, WithDict, WithSlots):
        fork = cls(source)
        if cls is not _core.Stream:
            fork.tag = "kept"
        np.testing.assert_array_equal(fork.step(x), want)
        fork._reset()
        fork.__init__(pyrnn.GRU(3, 4, seed=1).stream())  # pybind11 ignores a second __init__
        np.testing.assert_array_equal(fork.step(x), want)
        assert getattr(fork, "tag", "kept") == "kept" and fork.rows == 1
        gone = weakref.ref(fork)
        del fork
        gc.collect()
        assert gone() is None

    failed = _core.Stream.__new__(_core.Stream)
    with pytest.raises(TypeError, match="expected a pyrnn Stream"):
        failed.__init__("not a stream")
    with pytest.raises(TypeError, match="never initialised"):
        failed.step(x)
    with pytest.raises(TypeError, match="doesn't apply to a 'object' object"):
        _core.Stream.__init__(object(), source)
