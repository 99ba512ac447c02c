"""The benchmark suite behind `pyrnn bench`: workloads (whole sequences, streaming, whole
models converted from torch, and weights in each type of pyrnn.quantize), the engines timed on
them (pyrnn, PyTorch, ONNX Runtime), the machine probes that give every figure its hardware
scale, and the report.

Nothing here is imported by ``import pyrnn``; torch, onnx and onnxruntime are imported only when
an engine that needs them is prepared, and a missing one is reported as unavailable.
"""

from __future__ import annotations

from .machine import measure_machine
from .runner import BenchOptions, run_bench
from .workloads import WORKLOADS, ModelWorkload, QuantWorkload, SequenceWorkload, StreamWorkload

__all__ = [
    "WORKLOADS",
    "BenchOptions",
    "ModelWorkload",
    "QuantWorkload",
    "SequenceWorkload",
    "StreamWorkload",
    "measure_machine",
    "run_bench",
]
