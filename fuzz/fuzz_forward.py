"""Fuzzes forward, cell steps and streams (step, feed, reset, state, step with out=): random
module configs, inputs of random rank, shape, dtype and strides (negative, transposed, zero-stride
broadcasts), NaN/inf values, and states that are None, right, wrong-shaped or not arrays at all.
Only ValueError and TypeError may come out (IndexError too from Stream.reset of a missing row).
When a call succeeds, every output's shape must be right (c_n and an LSTM cell's c included) and
equal, bit for bit, the result for a contiguous copy of the same input (strides must never change
the arithmetic); a stream call that fails must leave the stream's state unchanged.

Sizes are mostly small (1-20) for speed, but one draw in eight is far: features up to 70 (every
SIMD remainder), up to 300 steps or 40 batch rows, so sequences cross the core's time chunks
(ceil(128 / rows) steps each) in forward and in stream feeds, where the buffers turn over.

check_one() is also imported by tests/test_fuzz_crashers.py to replay saved crashers and the
seed corpus (fuzz/corpus/forward, made by fuzz/make_forward_corpus.py); trace() tells that test
and the corpus maker what an input exercises."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

KINDS = ("rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell")
DTYPES = ("float32", "float32", "float64", "float16", "int32", "bool", "complex64", "object")
ALLOWED = (ValueError, TypeError)
# Rows the core's time chunks aim at: a chunk is ceil(CHUNK_ROWS / rows) steps (sequence.cpp).
CHUNK_ROWS = 128

_trace: set[tuple[Any, ...]] | None = None


@contextmanager
def trace() -> Iterator[set[tuple[Any, ...]]]:
    """Collects what the inputs checked meanwhile exercise: (kind, "forward" or "stream") for
    each, and (kind, path, "crosses a chunk") for a forward or feed longer than one time chunk."""
    global _trace
    _trace = set()
    try:
        yield _trace
    finally:
        _trace = None


def _note(kind: str, path: str, steps: int = 0, rows: int = 1) -> None:
    if _trace is None:
        return
    _trace.add((kind, path))
    if steps > math.ceil(CHUNK_ROWS / max(rows, 1)):
        _trace.add((kind, path, "crosses a chunk"))


class _Source:
    """Deterministic choices from the fuzz input (atheris' FuzzedDataProvider when running
    under atheris, a plain byte reader when replaying in pytest)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def byte(self) -> int:
        if self.position >= len(self.data):
            return 0
        value = self.data[self.position]
        self.position += 1
        return value

    def int(self, low: int, high: int) -> int:
        return low + self.byte() % (high - low + 1)

    def bool(self) -> bool:
        return bool(self.byte() & 1)

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.byte() % len(options)]

    def extent(self, low: int, high: int, far: int) -> int:
        """Mostly low..high (as int() for bytes below 224); else high+1..far."""
        value = self.byte()
        if value < 224 or far <= high:
            return low + value % (high - low + 1)
        return high + 1 + self.byte() % (far - high)


def _module(source: _Source) -> Any:
    import pyrnn

    kind = source.pick(KINDS)
    input_size, hidden = source.extent(1, 20, 70), source.extent(1, 20, 70)
    seed = source.byte()
    if kind.endswith("_cell"):
        cls = {"rnn_cell": pyrnn.RNNCell, "lstm_cell": pyrnn.LSTMCell, "gru_cell": pyrnn.GRUCell}
        return cls[kind](input_size, hidden, bias=source.bool(), seed=seed)
    options: dict[str, Any] = {
        "num_layers": source.int(1, 3),
        "bias": source.bool(),
        "batch_first": source.bool(),
        "bidirectional": source.bool(),
        "seed": seed,
    }
    if kind == "lstm" and source.bool():
        options["proj_size"] = source.int(0, hidden - 1)
    cls = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind]
    return cls(input_size, hidden, **options)


def _array(source: _Source, shape: tuple[int, ...]) -> Any:
    """An array of about `shape` (sometimes deliberately wrong), with hostile dtype/strides."""
    shape = tuple(d if source.byte() > 24 else source.int(0, 9) for d in shape)
    if source.byte() < 16:  # wrong rank
        shape = shape[:-1] if source.bool() else (*shape, source.int(1, 3))
    dtype = source.pick(DTYPES)
    rng = np.random.default_rng(source.byte())
    values = np.asarray(rng.standard_normal(tuple(2 * d + 1 for d in shape)))
    values = np.asarray(values * source.pick((0.1, 1.0, 1e3)))  # 0-d times float is a scalar
    if source.byte() < 20 and values.size:
        values.flat[source.byte() % values.size] = source.pick((np.nan, np.inf, -np.inf))
    array = np.asarray(values.astype(dtype), dtype=dtype)
    # Slice back to `shape` with steps of 1 or 2, forwards or backwards: arbitrary strides.
    index = tuple(
        slice(None, None, -1) if source.bool() else slice(0, 2 * d, 2) if d else slice(0, 0)
        for d in shape
    )
    array = np.asarray(array[index], dtype=array.dtype)  # 0-d indexing returns a scalar
    array = np.asarray(array[tuple(slice(0, d) for d in shape)], dtype=array.dtype)
    if source.byte() < 24 and array.ndim >= 2:  # a transposed view of the transposed data
        array = np.ascontiguousarray(np.swapaxes(array, 0, 1)).swapaxes(0, 1)
    if source.byte() < 16 and array.ndim >= 1 and array.shape[0]:  # zero stride on axis 0
        array = np.broadcast_to(array[:1], array.shape)
    if source.byte() < 24 and array.dtype.kind in "fiub" and array.itemsize > 1:
        # The same values at an odd address: numpy allows misaligned arrays.
        raw = np.zeros(array.nbytes + 1, np.uint8)
        moved = raw[1:].view(array.dtype).reshape(array.shape)
        moved[...] = array
        array = moved
    choice = source.byte()
    if choice < 8:
        return array.tolist()
    if choice < 12:
        return "not an array"
    if choice < 14:
        return None
    return array


def _expected_shapes(module: Any, x: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """Shapes of the flattened result: (h,) or (h, c) for cells, (out, h) or (out, h, c)."""
    config = module.config
    kind, hidden = config["kind"], config["hidden_size"]
    if kind.endswith("_cell"):
        h = (*x.shape[:-1], hidden)
        return (h, h) if kind == "lstm_cell" else (h,)
    directions = 2 if config["bidirectional"] else 1
    out_size = config.get("proj_size") or hidden
    layers = config["num_layers"] * directions
    rows = (x.shape[1 if not config["batch_first"] else 0],) if x.ndim == 3 else ()
    out = (*x.shape[:-1], out_size * directions)
    h = (layers, *rows, out_size)
    return (out, h, (layers, *rows, hidden)) if kind == "lstm" else (out, h)


def _flatten(result: Any) -> list[np.ndarray]:
    if isinstance(result, tuple):
        return [array for item in result for array in _flatten(item)]
    return [result]


def check_one(data: bytes) -> None:
    # Casting NaN to int32 and the like warn; that is the harness making inputs, not a finding.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check(data)


def _check(data: bytes) -> None:
    import pyrnn

    source = _Source(data)
    isas = pyrnn.available_isas()
    pyrnn.set_isa(isas[source.byte() % len(isas)])
    module = _module(source)
    config = module.config
    is_cell = config["kind"].endswith("_cell")
    rank = source.int(1, 2) if is_cell else source.int(2, 3)
    steps = source.extent(1, 9, 300)
    # Many rows make short chunks (ceil(128 / rows) steps); not with many steps too (speed).
    rows = source.extent(0, 5, 40 if steps <= 9 else 5)
    shape = (rows, config["input_size"]) if is_cell else (steps, rows, config["input_size"])
    if rank == (1 if is_cell else 2):
        shape = shape[1:] if is_cell else (steps, config["input_size"])
    x = _array(source, shape)
    state: Any = None
    if source.bool():
        hidden = config["hidden_size"]
        if is_cell:
            h_shape = c_shape = (rows, hidden) if rank == 2 else (hidden,)
        else:
            layers = config["num_layers"] * (2 if config["bidirectional"] else 1)
            h_shape = (layers, rows, config.get("proj_size") or hidden)
            c_shape = (layers, rows, hidden)
            if rank == 2:
                h_shape, c_shape = (h_shape[0], h_shape[2]), (c_shape[0], c_shape[2])
        state = _array(source, h_shape)
        if config["kind"] in ("lstm", "lstm_cell") and source.byte() > 24:
            state = (state, _array(source, c_shape))
    if source.byte() < 96:
        _check_stream(source, module)
        return
    _note(config["kind"], "forward", steps if not is_cell else 1, rows if rank == 3 else 1)
    try:
        result = module(x, state)
    except ALLOWED:
        return
    array = np.asarray(x)
    outputs = _flatten(result)
    expected = _expected_shapes(module, array)
    assert [output.shape for output in outputs] == list(expected), (outputs, expected, config)
    again = module(np.ascontiguousarray(array), state)
    for first, second in zip(_flatten(result), _flatten(again), strict=True):
        np.testing.assert_array_equal(first, second)


STREAM_ALLOWED = (ValueError, TypeError, IndexError)  # IndexError: reset() of a missing row


def _same(first: Any, second: Any) -> None:
    if isinstance(first, tuple):
        for a, b in zip(first, second, strict=True):
            _same(a, b)
    else:
        np.testing.assert_array_equal(first, second)


def _check_stream(source: _Source, module: Any) -> None:
    """A few random operations on a stream; each must either work exactly as on a twin stream
    given contiguous copies, or fail with a clear error and leave the stream untouched."""
    config = module.config
    if config.get("bidirectional"):
        try:
            module.stream()
        except ValueError:
            return
        raise AssertionError("a bidirectional module streamed")
    batch = source.pick((None, 1, 2, 3, 17, 40))
    _note(config["kind"], "stream")
    stream, twin = module.stream(batch=batch), module.stream(batch=batch)
    is_cell = config["kind"].endswith("_cell")
    rows = () if batch is None else (batch,)
    features = config["input_size"]
    out_size = config.get("proj_size") or config["hidden_size"]
    for _ in range(source.int(1, 4)):
        op = source.byte() % 6
        out: np.ndarray | None = None
        value: Any
        if op <= 1:
            value = _array(source, (*rows, features))
            action = "step"
        elif op == 2:
            steps = source.extent(1, 6, 300 if batch is None or batch <= 3 else 20)
            _note(config["kind"], "stream", steps, batch or 1)
            shape = (steps, *rows, features)
            if config.get("batch_first") and batch is not None:
                shape = (batch, steps, features)
            value = _array(source, shape)
            action = "feed"
        elif op == 3:
            value = source.pick((None, 0, -1, 1, 3, [0, 1], [5], "x", True, 2.0))
            action = "reset"
        elif op == 4:
            h_shape = (*(() if is_cell else (config["num_layers"],)), *rows, out_size)
            value = _array(source, h_shape)
            if config["kind"] in ("lstm", "lstm_cell"):
                c_shape = (*h_shape[:-1], config["hidden_size"])
                value = (value, _array(source, c_shape)) if source.byte() > 24 else value
            action = "state"
        else:
            value = _array(source, (*rows, features))
            out = np.empty((*rows, out_size), np.float32)
            action = "step_out"
        copy = np.ascontiguousarray(value) if isinstance(value, np.ndarray) else value

        def apply(
            target: Any, argument: Any, action: str = action, out: np.ndarray | None = out
        ) -> Any:
            if action == "step":
                return target.step(argument)
            if action == "feed":
                return target.feed(argument)
            if action == "reset":
                return target.reset(argument)
            if action == "state":
                target.state = argument
                return None
            result = target.step(argument, out=out)
            return None if result is None else result.copy()

        try:
            result = apply(stream, value)
        except STREAM_ALLOWED:
            _same(stream.state, twin.state)  # a refused call changed nothing
            continue
        expected = apply(twin, copy)
        if result is not None:
            _same(result, expected)
    _same(stream.state, twin.state)


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["pyrnn"]):
        import pyrnn  # noqa: F401
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
