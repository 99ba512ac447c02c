"""The comparison suite's runner: the machine probes and the bundled model (pyrnn.bench's
run_bench), then every selected workload (workloads.py) on every engine, by the runner of its
category. The engines, the checks against pyrnn's scalar path and the timing are pyrnn.bench's;
this adds the fixed workloads and their bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pyrnn.bench
from pyrnn import Module
from pyrnn.bench import (
    ATOL,
    RTOL,
    Progress,
    lower_bound_us,
    prepare_engine,
    run_engine,
    run_engines,
    scalar_reference,
    sequence_engines,
    time_calls,
    time_interleaved,
    weights_bandwidth,
)

from .streaming import run_stream_workload
from .workloads import WORKLOADS, SequenceWorkload, flops_per_step, recurrent_weight_bytes

__all__ = [
    "ATOL",
    "RTOL",
    "RUNNERS",
    "BenchOptions",
    "Progress",
    "prepare_engine",
    "run_bench",
    "run_engine",
    "run_engines",
    "run_sequence_workload",
    "scalar_reference",
    "time_calls",
    "time_interleaved",
]


@dataclass
class BenchOptions(pyrnn.bench.BenchOptions):
    """pyrnn.bench's options, plus the workloads to run (all by default)."""

    compare: bool = True
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS))


def run_sequence_workload(
    workload: SequenceWorkload, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    steps = options.steps(workload.steps)
    module = workload.module(options.seed)
    x = workload.inputs(steps, options.seed)
    flops = flops_per_step(module.config, workload.batch)
    weight_bytes = recurrent_weight_bytes(module.config)
    progress(f"{workload.name}: bandwidth of its {weight_bytes} bytes of recurrent weights")
    bandwidth = weights_bandwidth(weight_bytes, options.effective_probe_seconds)
    progress(f"{workload.name}: scalar reference")
    reference = scalar_reference(module, x)
    results = run_engines(
        sequence_engines(),
        module,
        x,
        reference,
        flops,
        machine["fma_peak_gflops"],
        options,
        lambda message: progress(f"{workload.name}: {message}"),
    )
    base = next((r for r in results if r["engine"] == "pyrnn" and r["status"] == "ok"), None)
    for result in results:
        if base is not None and result["status"] == "ok":
            result["ratio_vs_pyrnn"] = result["us_per_step"] / base["us_per_step"]
    return {
        "name": workload.name,
        "category": workload.category,
        "description": workload.describe(steps),
        "workload": {**asdict(workload), "steps": steps},
        "flops_per_step": flops,
        "bound": lower_bound_us(flops, weight_bytes, machine, bandwidth),
        "results": results,
    }


def _run_model_workload(
    workload: Any, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    from .models import run_model_workload  # models.py builds on this module's timing

    return run_model_workload(workload, machine, options, progress)


def _run_quant_workload(
    workload: Any, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    from .quantized import run_quant_workload  # quantized.py builds on this module's timing

    return run_quant_workload(workload, machine, options, progress)


def _run_packed_workload(
    workload: Any, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    from .packed import run_packed_workload  # packed.py builds on this module's timing

    return run_packed_workload(workload, machine, options, progress)


# The runner of each workload category (workloads.py).
RUNNERS: dict[str, Callable[[Any, dict[str, Any], BenchOptions, Progress], dict[str, Any]]] = {
    "sequence": run_sequence_workload,
    "stream": run_stream_workload,
    "model": _run_model_workload,
    "quantized": _run_quant_workload,
    "packed": _run_packed_workload,
}


def run_bench(
    options: BenchOptions,
    progress: Progress | None = None,
    model: tuple[Module, str] | None = None,
) -> dict[str, Any]:
    """Everything the comparison measures, as one JSON-ready dict: pyrnn.bench's machine and
    model sections (without its own comparison of the model), then "workloads"."""
    progress = progress or (lambda message: None)
    unknown = [name for name in options.workloads if name not in WORKLOADS]
    if unknown:
        raise ValueError(f"workloads: unknown {unknown}; expected some of {', '.join(WORKLOADS)}")
    report = pyrnn.bench.run_bench(replace(options, compare=False), progress, model)
    report["options"] = asdict(options)
    machine = report["machine"]
    report["workloads"] = []
    if options.compare:
        for name in options.workloads:
            workload = WORKLOADS[name]
            report["workloads"].append(
                RUNNERS[workload.category](workload, machine, options, progress)
            )
    return report
