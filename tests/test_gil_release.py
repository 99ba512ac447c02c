"""Every computing call releases the GIL: while one thread is inside a long forward, cell call,
stream step or feed (of a module, or of a whole model), the main thread keeps running Python.

How it is shown: a worker thread times its call; meanwhile the main thread records timestamps
in a loop that gives up the GIL between them (sleep). With the GIL held by the call, the main
thread could not run again until the call had returned (the interpreter can only hand the GIL
over between bytecodes, and the call is one bytecode), so none of its timestamps could fall in
the middle half of the call. Each call is sized to take ~0.15 s here, measured first; the
checks hold however long it takes.

Catches: the `py::gil_scoped_release` removed from (or moved after) the core call of
Network.forward (module forward and every cell), Stream.step, Stream.feed, Model.forward, or
ModelStream.step/feed -- each removal makes the matching test find no main-thread timestamps
inside the call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import pyrnn
from pyrnn.graph import Graph, InputSpec, Node

TARGET_SECONDS = 0.15


def _sized(make: Callable[[int], Callable[[], Any]], start: int, cap: int) -> Callable[[], Any]:
    """make(size) -> a call; the call of the size that takes about TARGET_SECONDS here."""
    size = start
    while True:
        call = make(size)
        began = time.perf_counter()
        call()
        took = time.perf_counter() - began
        if took >= TARGET_SECONDS / 2 or size >= cap:
            return call
        size = min(cap, max(2 * size, int(size * TARGET_SECONDS / max(took, 1e-6))))


def _main_thread_times_during(call: Callable[[], Any]) -> tuple[float, float, list[float]]:
    """Runs call() on a worker thread; returns its start and end time and the main thread's
    timestamps meanwhile."""
    span: list[float] = []
    started = threading.Event()

    def work() -> None:
        started.set()
        span.append(time.perf_counter())
        call()
        span.append(time.perf_counter())

    worker = threading.Thread(target=work)
    ticks: list[float] = []
    worker.start()
    started.wait()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.0005)  # gives up the GIL; taking it back needs the worker not to hold it
    worker.join()
    assert len(span) == 2, "the call raised (see the thread's exception above)"
    return span[0], span[1], ticks


def assert_gil_released(call: Callable[[], Any]) -> None:
    begin, end, ticks = _main_thread_times_during(call)
    quarter = (end - begin) / 4
    inside = [t for t in ticks if begin + quarter < t < end - quarter]
    # Asleep 0.5 ms per tick, the main thread makes ~100 ticks in the middle half of a 0.15 s
    # call; 5 leaves room for a busy machine. With the GIL held there are none at all.
    assert len(inside) >= 5, (
        f"the main thread ran {len(inside)} times during the middle half of a "
        f"{end - begin:.3f} s call ({len(ticks)} times in all): the call holds the GIL"
    )


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_forward_releases_the_gil() -> None:
    module = pyrnn.LSTM(64, 256, seed=0)

    def make(steps: int) -> Callable[[], Any]:
        x = _rng().standard_normal((steps, 1, 64)).astype(np.float32)
        return lambda: module(x)

    assert_gil_released(_sized(make, 200, 10**6))


@pytest.mark.parametrize("kind", ["rnn_cell", "lstm_cell", "gru_cell"])
def test_cells_release_the_gil(kind: str) -> None:
    factory = {"rnn_cell": pyrnn.RNNCell, "lstm_cell": pyrnn.LSTMCell, "gru_cell": pyrnn.GRUCell}
    cell = factory[kind](256, 1024, seed=0)

    def make(batch: int) -> Callable[[], Any]:
        x = _rng().standard_normal((batch, 256)).astype(np.float32)
        return lambda: cell(x)

    assert_gil_released(_sized(make, 16, 1 << 16))


def test_stream_step_releases_the_gil() -> None:
    module = pyrnn.GRU(256, 1024, seed=0)

    def make(batch: int) -> Callable[[], Any]:
        stream = module.stream(batch=batch)
        x = _rng().standard_normal((batch, 256)).astype(np.float32)
        out = np.empty((batch, 1024), np.float32)
        return lambda: stream.step(x, out=out)

    assert_gil_released(_sized(make, 16, 1 << 16))


def test_stream_feed_releases_the_gil() -> None:
    module = pyrnn.LSTM(64, 256, seed=0)
    stream = module.stream()

    def make(steps: int) -> Callable[[], Any]:
        x = _rng().standard_normal((steps, 64)).astype(np.float32)
        return lambda: stream.feed(x)

    assert_gil_released(_sized(make, 200, 10**6))


def _model(features: int = 64, hidden: int = 256) -> pyrnn.Model:
    """Linear -> LSTM -> Linear, batch first: the recurrent layer dominates the time."""
    rng = _rng()

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)

    constants = {
        "fc.weight": weight(features, features),
        "lstm.weight_ih_l0": weight(4 * hidden, features),
        "lstm.weight_hh_l0": weight(4 * hidden, hidden),
        "lstm.bias_ih_l0": weight(4 * hidden),
        "lstm.bias_hh_l0": weight(4 * hidden),
        "head.weight": weight(8, hidden),
    }
    keys = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    graph = Graph(
        [InputSpec("x", "float32", [None, None, features])],
        {"tensor": "y"},
        list(constants),
        [
            Node("linear", ["x", "fc.weight"], ["a"]),
            Node(
                "rnn",
                ["a", None, None, *(f"lstm.{key}_l0" for key in keys)],
                ["o", "h", "c"],
                {
                    "mode": "lstm",
                    "num_layers": 1,
                    "bidirectional": False,
                    "batch_first": True,
                    "has_biases": True,
                },
            ),
            Node("linear", ["o", "head.weight"], ["y"]),
        ],
    )
    return pyrnn.Model(graph, constants)


def test_model_forward_releases_the_gil() -> None:
    model = _model()

    def make(steps: int) -> Callable[[], Any]:
        x = _rng().standard_normal((1, steps, 64)).astype(np.float32)
        return lambda: model(x)

    assert_gil_released(_sized(make, 200, 10**6))


def test_model_stream_step_and_feed_release_the_gil() -> None:
    model = _model(256, 1024)

    def make_step(batch: int) -> Callable[[], Any]:
        stream = model.stream(batch=batch)
        x = _rng().standard_normal((batch, 256)).astype(np.float32)
        return lambda: stream.step(x)

    assert_gil_released(_sized(make_step, 16, 1 << 16))
    small = _model()
    stream = small.stream(batch=1)

    def make_feed(steps: int) -> Callable[[], Any]:
        x = _rng().standard_normal((1, steps, 64)).astype(np.float32)
        return lambda: stream.feed(x)

    assert_gil_released(_sized(make_feed, 200, 10**6))
