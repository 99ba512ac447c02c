"""pytest-benchmark cases for weights in each type of pyrnn.quantize: the quantized workloads of
compare.py (benchmarks/harness/quantized.py) on every engine, each output checked
first (pyrnn's against its scalar kernels on the same quantised model, the peers' against the
float32 model within PEER_TOLERANCES). `python benchmarks/quantized.py` prints the summary table
with the bounds and the goals.

    pytest benchmarks/test_bench_quantized.py --benchmark-only
    pytest benchmarks/test_bench_quantized.py --benchmark-only -k "quant-peers-lstm-512"

An engine whose library is missing is skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from harness.quantized import (
    PEER_TOLERANCES,
    QuantCase,
    quant_case,
    sequence_engines,
    step_engines,
)
from harness.runner import ATOL as SEQUENCE_ATOL
from harness.runner import RTOL as SEQUENCE_RTOL
from harness.runner import scalar_reference
from harness.streaming import ATOL, RTOL, scalar_stream_reference
from harness.workloads import WORKLOADS, QuantWorkload

from pyrnn.bench.engines import Unavailable

QUANT = {name: w for name, w in WORKLOADS.items() if isinstance(w, QuantWorkload)}
STREAMED = [name for name, w in QUANT.items() if w.mode == "stream"]
SEQUENCES = [name for name, w in QUANT.items() if w.mode == "sequence"]
STEP_ENGINES = {engine.name: engine for engine in step_engines()}
SEQUENCE_ENGINES = {engine.name: engine for engine in sequence_engines(peers=True)}
# Each sequence workload with the engines it runs (the peers only where it has them).
SEQUENCE_CASES = [
    (name, engine.name) for name in SEQUENCES for engine in sequence_engines(QUANT[name].peers)
]

_cases: dict[str, QuantCase] = {}


def case_of(name: str) -> QuantCase:
    """The workload's LSTM in every weight type and its input, built once per session."""
    if name not in _cases:
        _cases[name] = quant_case(QUANT[name], seed=0)
    return _cases[name]


def as_function(runner: Any) -> Any:
    """The engine's statement as a zero-argument function (one Python frame for every engine)."""
    namespace = runner.namespace
    exec(runner.setup, namespace)
    exec(f"def _call():\n    {runner.statement}", namespace)
    return namespace["_call"]


@pytest.mark.parametrize("engine", list(STEP_ENGINES))
@pytest.mark.parametrize("workload", STREAMED)
def test_quant_step(benchmark: Any, workload: str, engine: str) -> None:
    case = case_of(workload)
    definition = STEP_ENGINES[engine]
    runner = definition.prepare(case)
    reference = scalar_stream_reference(case.modules[definition.weights], case.x)
    np.testing.assert_allclose(runner.check(), reference, atol=ATOL, rtol=RTOL)
    benchmark.group = f"step {workload}"
    with runner.context():
        benchmark(as_function(runner))


@pytest.mark.parametrize(("workload", "engine"), SEQUENCE_CASES)
def test_quant_sequence(benchmark: Any, workload: str, engine: str) -> None:
    definition = SEQUENCE_ENGINES[engine]
    case = case_of(workload)
    try:
        runner = definition.prepare(case)
    except Unavailable as reason:
        pytest.skip(f"{engine}: {reason}")
    if definition.library == "pyrnn":  # exact kernels: the same quantised model, scalar path
        reference = scalar_reference(case.modules[definition.weights], case.x)
        atol, rtol = SEQUENCE_ATOL, SEQUENCE_RTOL
    else:  # a peer quantises its own way: the float32 model, a looser tolerance
        reference = scalar_reference(case.modules["fp32"], case.x)
        atol, rtol = PEER_TOLERANCES[definition.weights]
    benchmark.group = workload
    with runner.context():
        np.testing.assert_allclose(runner.run(), reference, atol=atol, rtol=rtol)
        benchmark.pedantic(runner.run, rounds=5, iterations=1, warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["us_per_step"] = benchmark.stats.stats.median / case.x.shape[0] * 1e6
        benchmark.extra_info["weights"] = definition.weights
