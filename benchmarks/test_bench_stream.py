"""pytest-benchmark cases for streaming (issue 4): one step from Python on pyrnn streams, torch
cells and onnxruntime, and a batch=64 stream against 64 separate ones. The same engines and
workloads as benchmarks/stream_latency.py, which prints the summary table.

    pytest benchmarks/test_bench_stream.py --benchmark-only
    pytest benchmarks/test_bench_stream.py --benchmark-only -k "LSTM-64"

Every engine's first step is checked against pyrnn's before it is timed. An engine whose library
is missing is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyrnn

_spec = importlib.util.spec_from_file_location(
    "stream_latency", Path(__file__).with_name("stream_latency.py")
)
assert _spec is not None and _spec.loader is not None
stream_latency = importlib.util.module_from_spec(_spec)
sys.modules["stream_latency"] = stream_latency  # dataclasses look their module up there
_spec.loader.exec_module(stream_latency)

ENGINES = {
    "pyrnn": lambda module, x: stream_latency.pyrnn_engine(module, x, False),
    "pyrnn-out": lambda module, x: stream_latency.pyrnn_engine(module, x, True),
    "torch": stream_latency.torch_engine,
    "onnxruntime": stream_latency.onnxruntime_engine,
}
WORKLOADS = {name.replace(" ", "-"): spec for name, *spec in stream_latency.WORKLOADS}


def as_function(namespace: dict[str, Any], stmt: str) -> Any:
    """The engine's statement as a zero-argument function (one Python frame for every engine)."""
    namespace.setdefault("state", namespace.get("initial"))
    exec(f"def _call():\n    global state\n    {stmt}", namespace)
    return namespace["_call"]


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step_latency(benchmark: Any, workload: str, engine: str) -> None:
    kind, input_size, hidden = WORKLOADS[workload]
    module = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind](input_size, hidden, seed=0)
    x = np.random.default_rng(0).standard_normal(input_size).astype(np.float32)
    try:
        namespace, stmt, first = ENGINES[engine](module, x)
    except ImportError as error:
        pytest.skip(f"{engine} is not installed: {error}")
    reference = module.stream().step(x)
    np.testing.assert_allclose(first, reference, atol=stream_latency.ATOL, rtol=stream_latency.RTOL)
    call = as_function(namespace, stmt)
    benchmark.group = f"step {workload}"
    if engine == "torch":
        with namespace["torch"].inference_mode():
            benchmark(call)
    else:
        benchmark(call)


@pytest.mark.parametrize("layout", ["batch=64", "64 streams"])
@pytest.mark.parametrize("workload", ["LSTM-64", "GRU-64"])
def test_many_streams(benchmark: Any, workload: str, layout: str) -> None:
    kind, input_size, hidden = WORKLOADS[workload]
    module = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind](input_size, hidden, seed=0)
    batch = stream_latency.BATCH
    xs = np.random.default_rng(0).standard_normal((batch, input_size)).astype(np.float32)
    ys = np.empty((batch, hidden), np.float32)
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

    call()  # the first step from zero state equals one step of forward()
    reference = module(xs[None])[0][0]
    np.testing.assert_allclose(ys, reference, atol=stream_latency.ATOL, rtol=stream_latency.RTOL)
    benchmark(call)
    benchmark.extra_info["stream_steps_per_s"] = batch / benchmark.stats.stats.median
