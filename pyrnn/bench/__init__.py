"""`pyrnn bench`: how fast pyrnn runs YOUR model on this machine.

It measures the machine (one core's FMA peak and read bandwidth), times a model (the bundled
default, or any pyrnn or PyTorch file) over a whole sequence and streamed one step per call, and
with compare runs the same model on PyTorch and ONNX Runtime when they are installed: the whole
sequence on every sequence engine (engines.py) and one step per call on every step engine
(steps.py, checked and timed by timing.py). Every engine's output is checked against pyrnn's
scalar path before it is timed.

The names below are the public surface for scripts that time their own workloads the same way:

- machine: measure_machine, measure_peak, weights_bandwidth, lower_bound_us, flops_per_step,
  recurrent_weight_bytes
- whole sequences: Engine, Runner, Unavailable, sequence_engines, torch_module, import_torch,
  pyrnn_threads, scalar_reference, prepare_engine, time_interleaved, time_prepared,
  call_summary, time_calls, run_engine, run_engines, ATOL, RTOL
- steps: StepEngine, StepRunner, step_engines, torch_cell, onnx_step_model, ort_session,
  scalar_stream_reference, prepare_step_engine, verify_output, time_round_robin,
  time_prepared_steps, step_summary, STEP_ATOL, STEP_RTOL, CHECK_STEPS
- the run and its report: BenchOptions, load_model, run_model, run_bench, format_report,
  format_machine, format_model, format_table, format_bytes, write_json
- pyrnn.bench.arguments: output_path and positive_int, the argparse types of the options
- cpp_step_seconds: a test hook, the seconds per step of a stream stepped in a C++ loop (no
  Python), which separates the Python cost of a step from its arithmetic

Nothing here is imported by ``import pyrnn``; torch, onnx and onnxruntime are imported only when
an engine that needs them is prepared, and a missing one is reported as unavailable.
"""

from __future__ import annotations

import numpy as np

from ..stream import Stream
from .engines import (
    Engine,
    Runner,
    Unavailable,
    import_torch,
    pyrnn_threads,
    sequence_engines,
    torch_module,
)
from .machine import (
    flops_per_step,
    lower_bound_us,
    measure_machine,
    measure_peak,
    recurrent_weight_bytes,
    weights_bandwidth,
)
from .report import (
    format_bytes,
    format_machine,
    format_model,
    format_report,
    format_table,
    write_json,
)
from .runner import (
    ATOL,
    RTOL,
    BenchOptions,
    Progress,
    call_summary,
    load_model,
    prepare_engine,
    run_bench,
    run_engine,
    run_engines,
    run_model,
    scalar_reference,
    time_calls,
    time_interleaved,
    time_prepared,
)
from .steps import ATOL as STEP_ATOL
from .steps import (
    CHECK_STEPS,
    StepEngine,
    StepRunner,
    import_onnxruntime,
    onnx_step_model,
    ort_session,
    step_engines,
    torch_cell,
)
from .steps import RTOL as STEP_RTOL
from .timing import (
    prepare_step_engine,
    scalar_stream_reference,
    step_summary,
    time_prepared_steps,
    time_round_robin,
    verify_output,
)


def cpp_step_seconds(stream: Stream, x: np.ndarray, out: np.ndarray, count: int) -> float:
    """Test hook: seconds per step of `count` steps of `stream` on the same input x (written to
    `out`), run back to back in C++ with no Python in between."""
    from .. import _testing

    return _testing.time_steps(stream, x, out, count)


__all__ = [
    "ATOL",
    "CHECK_STEPS",
    "RTOL",
    "STEP_ATOL",
    "STEP_RTOL",
    "BenchOptions",
    "Engine",
    "Progress",
    "Runner",
    "StepEngine",
    "StepRunner",
    "Unavailable",
    "call_summary",
    "cpp_step_seconds",
    "flops_per_step",
    "format_bytes",
    "format_machine",
    "format_model",
    "format_report",
    "format_table",
    "import_onnxruntime",
    "import_torch",
    "load_model",
    "lower_bound_us",
    "measure_machine",
    "measure_peak",
    "onnx_step_model",
    "ort_session",
    "prepare_engine",
    "prepare_step_engine",
    "pyrnn_threads",
    "recurrent_weight_bytes",
    "run_bench",
    "run_engine",
    "run_engines",
    "run_model",
    "scalar_reference",
    "scalar_stream_reference",
    "sequence_engines",
    "step_engines",
    "step_summary",
    "time_calls",
    "time_interleaved",
    "time_prepared",
    "time_prepared_steps",
    "time_round_robin",
    "torch_cell",
    "torch_module",
    "verify_output",
    "weights_bandwidth",
    "write_json",
]
