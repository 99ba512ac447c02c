"""pytest-benchmark cases for the packed workloads (benchmarks/packed.py): a batch of uneven
sequences run packed, fully padded, and packed by torch, one thread each, every output checked
first (packed against padded at every valid step, and against torch).

    pytest benchmarks/test_bench_packed.py --benchmark-only

Not collected by the test suite (pyproject's testpaths is tests/). torch's case is skipped
without torch.
"""

from __future__ import annotations

import pytest
from harness.packed import PACKED_WORKLOADS, _one_thread, check, engines, packed_case


@pytest.fixture(scope="module", params=list(PACKED_WORKLOADS))
def case(request: pytest.FixtureRequest):
    case = packed_case(PACKED_WORKLOADS[request.param])
    check(case)
    return case


@pytest.mark.parametrize("engine_name", ["pyrnn-packed", "pyrnn-padded", "torch-packed-1t"])
def test_packed(benchmark, case, engine_name: str) -> None:
    runs = engines(case)
    if engine_name not in runs:
        pytest.skip("torch is not installed")
    run, steps = runs[engine_name]
    torch = None
    if engine_name.startswith("torch"):
        import torch
    benchmark.group = case.workload.name
    benchmark.name = f"{case.workload.name}[{engine_name}]"
    with _one_thread(torch):
        benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(
        {"steps": steps, "us_per_step": benchmark.stats.stats.median / steps * 1e6}
    )
