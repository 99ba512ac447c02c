"""pytest-benchmark cases for streaming: one step from Python on pyrnn streams, torch cells and
onnxruntime, and a batch=64 stream against 64 separate ones. The same engines and workloads as
the streaming part of `python benchmarks/compare.py` (benchmarks/harness/streaming.py), which prints
the summary table; `python benchmarks/stream_latency.py` prints it with the goals.

    pytest benchmarks/test_bench_stream.py --benchmark-only
    pytest benchmarks/test_bench_stream.py --benchmark-only -k "stream-lstm-64"

Every engine's output is checked against pyrnn's scalar path before it is timed. An engine whose
library is missing is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from harness.streaming import (
    ATOL,
    RTOL,
    scalar_stream_reference,
    step_engines,
)
from harness.workloads import WORKLOADS, StreamWorkload

from pyrnn.bench.engines import Unavailable

# Engines with a Python statement per step (the C++ loop and the feeds time themselves).
TIMES_ITSELF = ("pyrnn-c++", "pyrnn-feed64", "pyrnn-feed256")
ENGINES = {engine.name: engine for engine in step_engines() if engine.name not in TIMES_ITSELF}
TINY = {
    name: w
    for name, w in WORKLOADS.items()
    if isinstance(w, StreamWorkload) and w.measure == "tiny"
}
LATENCY = {
    name: w
    for name, w in WORKLOADS.items()
    if isinstance(w, StreamWorkload) and w.measure == "latency"
}


def as_function(runner: Any) -> Any:
    """The engine's statement as a zero-argument function (one Python frame for every engine)."""
    namespace = runner.namespace
    exec(runner.setup, namespace)
    exec(f"def _call():\n    global state\n    {runner.statement}", namespace)
    return namespace["_call"]


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("workload", list(LATENCY))
def test_step_latency(benchmark: Any, workload: str, engine: str) -> None:
    module = LATENCY[workload].module(seed=0)
    x = np.random.default_rng(0).standard_normal(module.config["input_size"], np.float32)
    try:
        runner = ENGINES[engine].prepare(module, x)
    except Unavailable as reason:
        pytest.skip(f"{engine}: {reason}")
    reference = scalar_stream_reference(module, x)
    np.testing.assert_allclose(runner.check(), reference, atol=ATOL, rtol=RTOL)
    call = as_function(runner)
    benchmark.group = f"step {workload}"
    with runner.context():
        benchmark(call)


@pytest.mark.parametrize("layout", ["batch=64", "64 streams"])
@pytest.mark.parametrize("workload", list(LATENCY))
def test_many_streams(benchmark: Any, workload: str, layout: str) -> None:
    module = LATENCY[workload].module(seed=0)
    batch = LATENCY[workload].batch
    xs = np.random.default_rng(0).standard_normal((batch, module.config["input_size"]), np.float32)
    ys = np.empty((batch, module.config["hidden_size"]), np.float32)
    benchmark.group = f"{batch} streams {workload}"
    if layout == "batch=64":
        step = module.stream(batch=batch).step

        def call() -> None:
            step(xs, out=ys)
    else:
        pairs = [(module.stream().step, xs[i], ys[i]) for i in range(batch)]

        def call() -> None:
            for step, x, y in pairs:
                step(x, out=y)

    call()  # the first step from zero state
    np.testing.assert_allclose(ys, scalar_stream_reference(module, xs, 1), atol=ATOL, rtol=RTOL)
    benchmark(call)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["stream_steps_per_s"] = batch / benchmark.stats.stats.median


@pytest.mark.parametrize("block", [1, 64, 256])
@pytest.mark.parametrize("workload", list(TINY))
def test_tiny_feed(benchmark: Any, workload: str, block: int) -> None:
    """An audio-rate model fed `block` samples per call (1: s.step(x, out=y)); the table's
    ns per sample is the time per call over `block`."""
    module = TINY[workload].module(seed=0)
    stream = module.stream()
    x = np.random.default_rng(0).standard_normal((block, 1), np.float32)
    y = np.empty((block, module.config["hidden_size"]), np.float32)
    benchmark.group = f"tiny {workload} (per call of {block} samples)"
    if block == 1:
        benchmark(stream.step, x[0], out=y[0])
    else:
        benchmark(stream.feed, x, out=y)
