"""pytest-benchmark cases for the comparison workloads (the same ones `python benchmarks/compare.py`
runs): every workload on every engine, each output checked against pyrnn's scalar path first.

    pytest benchmarks --benchmark-only                      # everything (minutes)
    pytest benchmarks --benchmark-only -k "seq-gru-256"     # one workload
    pytest benchmarks --benchmark-only --benchmark-json=out.json

Not collected by the test suite (pyproject's testpaths is tests/). An engine whose library is
missing is skipped with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness.runner import ATOL, RTOL, scalar_reference
from harness.workloads import WORKLOADS, SequenceWorkload, flops_per_step

from pyrnn.bench.engines import Unavailable, sequence_engines

ENGINES = {engine.name: engine for engine in sequence_engines()}
# The stream workloads have their own cases, in test_bench_stream.py.
SEQUENCES = {name: w for name, w in WORKLOADS.items() if isinstance(w, SequenceWorkload)}


@pytest.fixture(scope="module", params=list(SEQUENCES))
def case(request: pytest.FixtureRequest):
    workload = SEQUENCES[request.param]
    module = workload.module(seed=0)
    x = workload.inputs(workload.steps, seed=0)
    return workload, module, x, scalar_reference(module, x)


@pytest.mark.parametrize("engine_name", list(ENGINES))
def test_sequence(benchmark, case, engine_name: str) -> None:
    workload, module, x, reference = case
    try:
        runner = ENGINES[engine_name].prepare(module, x)
    except Unavailable as reason:
        pytest.skip(str(reason))
    benchmark.group = workload.name
    benchmark.name = f"{workload.name}[{engine_name}]"
    with runner.context():
        output = runner.run()
        np.testing.assert_allclose(output, reference, rtol=RTOL, atol=ATOL)
        benchmark.pedantic(runner.run, rounds=5, iterations=1, warmup_rounds=1)
    median = benchmark.stats.stats.median
    us_per_step = median / workload.steps * 1e6
    benchmark.extra_info.update(
        {
            "threads": runner.threads,
            "us_per_step": us_per_step,
            "gflops": flops_per_step(module.config, workload.batch) / (us_per_step * 1e3),
        }
    )
