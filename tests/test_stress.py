"""Concurrency stress: many threads stepping their own streams of one shared module give exactly
the results of running the same streams one after another; two threads fighting over one
stream get RuntimeError for the calls that lose, and every call that wins is applied whole.

Figures: 8 threads x 10^4 steps each (8 * 10^4 stream steps, half by step(), half by feed() of
random chunk lengths), compared bit for bit with the sequential run: same kernels, same order,
so any difference is corruption, not rounding. The threads' calls are counted inside the core:
at least two must have computed at once (a lock or a held GIL serialising them fails the test)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from overlap import assert_overlapped, most_at_once

import pyrnn
from pyrnn import _testing

THREADS = 8
STEPS = 10_000


@pytest.fixture(autouse=True)
def _restore_isa() -> Any:
    before = pyrnn.active_isa()
    yield
    pyrnn.set_isa(before)


def _plan(index: int) -> tuple[np.ndarray, list[int] | None]:
    """Thread `index`'s inputs (STEPS, batch, I) and, for feeding threads, its chunk lengths."""
    rng = np.random.default_rng(index)
    xs = rng.standard_normal((STEPS, 1 + index % 3, 5)).astype(np.float32)
    if index % 2 == 0:
        return xs, None  # step() one at a time
    lengths, total = [], 0
    while total < STEPS:
        lengths.append(min(int(rng.integers(1, 300)), STEPS - total))
        total += lengths[-1]
    return xs, lengths


def _drive(stream: pyrnn.Stream, xs: np.ndarray, lengths: list[int] | None) -> np.ndarray:
    if lengths is None:
        out = np.empty((len(xs), xs.shape[1], stream.module.config["hidden_size"]), np.float32)
        for t in range(len(xs)):
            stream.step(xs[t], out=out[t])
        return out
    parts, t = [], 0
    for length in lengths:
        parts.append(stream.feed(xs[t : t + length]))
        t += length
    return np.concatenate(parts)


@pytest.mark.parametrize("isa", pyrnn.available_isas())
@pytest.mark.parametrize(
    ("kind", "weights"), [("lstm", "fp32"), ("gru", "fp32"), ("lstm", "int8"), ("gru", "bf16")]
)
@pytest.mark.parametrize("pool", [False, True])
def test_threads_with_own_streams_equal_the_sequential_run(
    isa: str, kind: str, weights: str, pool: bool
) -> None:
    """pool=True: the sequential run on one thread, the concurrent one with every step split
    across the pool's three threads (the thread that holds the pool splits; the others, finding
    it busy, run alone): the same bits either way."""
    pyrnn.set_isa(isa)
    pyrnn.set_num_threads(1)
    factory = pyrnn.LSTM if kind == "lstm" else pyrnn.GRU
    module = factory(5, 24, num_layers=2, seed=7)
    if weights != "fp32":
        module = pyrnn.quantize(module, weights)
    plans = [_plan(index) for index in range(THREADS)]
    sequential = []
    for xs, lengths in plans:
        stream = module.stream(batch=xs.shape[1])
        sequential.append((_drive(stream, xs, lengths), stream.state))

    results: list[Any] = [None] * THREADS
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)
    if pool:
        pyrnn.set_num_threads(3)
        _testing.set_split_every_step(True)

    def work(index: int) -> None:
        try:
            xs, lengths = plans[index]
            stream = module.stream(batch=xs.shape[1])
            barrier.wait()
            results[index] = (_drive(stream, xs, lengths), stream.state)
        except BaseException as error:  # reported below: a thread's exception is otherwise lost
            errors.append(error)

    def run() -> None:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # The feeds (up to 300 steps each) compute long enough for other threads to get in: the
    # calls must have overlapped, or the comparison below shows nothing about sharing.
    most = most_at_once(run)
    assert not errors, errors
    assert_overlapped(most)
    for (out, state), (want_out, want_state) in zip(results, sequential, strict=True):
        np.testing.assert_array_equal(out, want_out)
        for got, want in zip(
            state if isinstance(state, tuple) else (state,),
            want_state if isinstance(want_state, tuple) else (want_state,),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)


def test_two_threads_on_one_stream_never_corrupt_it() -> None:
    # Both threads step the same input, so whatever order the winning calls ran in, the stream
    # must end exactly where `wins` sequential steps end, and the winners' outputs must be the
    # outputs of steps 1..wins, each once.
    # Big enough that a step spends tens of microseconds with the GIL released, so the other
    # thread gets in meanwhile; the threads go on until they have collided (or 20 s pass).
    module = pyrnn.LSTM(32, 256, seed=2)
    x = np.random.default_rng(1).standard_normal(32).astype(np.float32)
    stream = module.stream()
    attempts = 1000
    outputs: list[list[np.ndarray]] = [[], []]
    refusals = [0, 0]
    other: list[BaseException] = []
    barrier = threading.Barrier(2)
    deadline = time.monotonic() + 20

    def work(index: int) -> None:
        barrier.wait()
        done = 0
        while (done < attempts or sum(refusals) == 0) and time.monotonic() < deadline:
            done += 1
            try:
                outputs[index].append(stream.step(x))
            except RuntimeError as error:
                if "already in use by another thread" not in str(error):
                    other.append(error)
                refusals[index] += 1
            except BaseException as error:
                other.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not other, other
    wins = len(outputs[0]) + len(outputs[1])
    assert wins > 0  # a call is refused only while another one is inside, which then wins
    # The threads did collide (step releases the GIL while computing, so the other thread runs
    # meanwhile): without refusals this test would show nothing.
    assert sum(refusals) > 0

    reference = module.stream()
    expected = [reference.step(x) for _ in range(wins)]
    np.testing.assert_array_equal(stream.state[0], reference.state[0])
    np.testing.assert_array_equal(stream.state[1], reference.state[1])
    # As multisets: a constant input drives the LSTM to a fixed point, so late outputs repeat.
    got = Counter(out.tobytes() for out in outputs[0] + outputs[1])
    assert got == Counter(out.tobytes() for out in expected)
    assert len(got) > 10  # the outputs do differ, so the comparison has teeth
