"""The project's comparison suite behind benchmarks/compare.py: fixed workloads (whole
sequences, streaming, whole models converted from torch, weights in each type of
pyrnn.quantize, and variable-length batches), their runners and the report with its PNG
chart. It is not part of the installed package: the engines, the checks against pyrnn's
scalar path, the timing and the machine probes are pyrnn.bench's public API, which the suite
uses with pyrnn's own (and pyrnn.bench's documented test hook cpp_step_seconds).

torch, onnx and onnxruntime are imported only when an engine that needs them is prepared, and a
missing one is reported as unavailable.
"""

from __future__ import annotations

from pyrnn.bench import measure_machine

from .runner import BenchOptions, run_bench
from .workloads import (
    WORKLOADS,
    ModelWorkload,
    PackedWorkload,
    QuantWorkload,
    SequenceWorkload,
    StreamWorkload,
)

__all__ = [
    "WORKLOADS",
    "BenchOptions",
    "ModelWorkload",
    "PackedWorkload",
    "QuantWorkload",
    "SequenceWorkload",
    "StreamWorkload",
    "measure_machine",
    "run_bench",
]
