"""pytest-benchmark cases for whole models converted with pyrnn.from_torch: the model workloads
of compare.py (benchmarks/harness/models.py) on every engine, each output checked
against pyrnn's scalar path first. `python benchmarks/models.py` prints the summary table with
the goals.

    pytest benchmarks/test_bench_models.py --benchmark-only
    pytest benchmarks/test_bench_models.py --benchmark-only -k "model-stream-head"

An engine whose library is missing is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from harness.models import (
    model_case,
    model_sequence_reference,
    model_stream_reference,
    sequence_engines,
    step_engines,
)
from harness.runner import ATOL as SEQUENCE_ATOL
from harness.runner import RTOL as SEQUENCE_RTOL
from harness.runner import scalar_reference
from harness.streaming import ATOL, RTOL, scalar_stream_reference
from harness.workloads import WORKLOADS, ModelWorkload

from pyrnn.bench.engines import Unavailable

MODELS = {name: w for name, w in WORKLOADS.items() if isinstance(w, ModelWorkload)}
STREAMED = [name for name, w in MODELS.items() if w.mode == "stream"]
SEQUENCES = [name for name, w in MODELS.items() if w.mode == "sequence"]
# The C++ loop is timed by the engine itself, not by a call pytest-benchmark could repeat.
STEP_ENGINES = {engine.name: engine for engine in step_engines() if engine.name != "lstm-c++"}
SEQUENCE_ENGINES = {engine.name: engine for engine in sequence_engines()}


def case_of(name: str) -> Any:
    try:
        return model_case(MODELS[name], seed=0)
    except Unavailable as reason:
        pytest.skip(str(reason))


def as_function(runner: Any) -> Any:
    """The engine's statement as a zero-argument function (one Python frame for every engine)."""
    namespace = runner.namespace
    exec(runner.setup, namespace)
    exec(f"def _call():\n    global h, c\n    {runner.statement}", namespace)
    return namespace["_call"]


@pytest.mark.parametrize("engine", list(STEP_ENGINES))
@pytest.mark.parametrize("workload", STREAMED)
def test_model_step(benchmark: Any, workload: str, engine: str) -> None:
    case = case_of(workload)
    definition = STEP_ENGINES[engine]
    try:
        runner = definition.prepare(case)
    except Unavailable as reason:
        pytest.skip(f"{engine}: {reason}")
    if definition.reference == "lstm":
        reference = scalar_stream_reference(case.lstm, case.x)
    else:
        reference = model_stream_reference(case)
    np.testing.assert_allclose(runner.check(), reference, atol=ATOL, rtol=RTOL)
    call = as_function(runner)
    benchmark.group = f"step {workload}"
    with runner.context():
        benchmark(call)


@pytest.mark.parametrize("engine", list(SEQUENCE_ENGINES))
@pytest.mark.parametrize("workload", SEQUENCES)
def test_model_sequence(benchmark: Any, workload: str, engine: str) -> None:
    case = case_of(workload)
    definition = SEQUENCE_ENGINES[engine]
    try:
        runner = definition.prepare(case)
    except Unavailable as reason:
        pytest.skip(f"{engine}: {reason}")
    if definition.reference == "lstm":
        reference = scalar_reference(case.lstm, case.x)
    else:
        reference = model_sequence_reference(case)
    benchmark.group = workload
    with runner.context():
        output = runner.run()
        np.testing.assert_allclose(output, reference, rtol=SEQUENCE_RTOL, atol=SEQUENCE_ATOL)
        benchmark.pedantic(runner.run, rounds=5, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["us_per_step"] = benchmark.stats.stats.median / case.x.shape[0] * 1e6
