"""The reduced-precision workloads of the comparison: one LSTM timed with its weights in
each type of pyrnn.quantize (fp32, fp16, bf16, int8), batch 1, one thread, and against the
peers' own reduced-precision LSTMs on the same weights: torch's dynamic int8 LSTM
(torch.ao.quantization.quantize_dynamic), torch's LSTM converted to bfloat16, and ONNX Runtime's
DynamicQuantizeLSTM (onnxruntime.quantization.quantize_dynamic of pyrnn.onnx_export's graph).

* Whole sequence (mode "sequence"): lstm(x), timed as runner.py times sequences (calls taking
  turns, the median kept).
* Streamed (mode "stream"): s.step(x, out=y), timed as streaming.py times steps (timeit loops,
  engines alternating, the best loop kept).

Two checks per engine. Exactness, before it is timed: each pyrnn engine against pyrnn's scalar
kernels on the SAME quantised model (the narrow weights are widened exactly, so the SIMD kernels
differ from the scalar ones only in summation order). Accuracy, reported only: every engine's
output against the float32 model's. The peers quantise differently (torch and ONNX Runtime also
quantise the activations they multiply; torch's bf16 LSTM computes in bfloat16), so they are
checked against the float32 model with the tolerances of PEER_TOLERANCES.

Each engine's bound is that of its weight type: the larger of the FLOPs at the FMA peak and the
weights every step reads, in their stored bytes, at the bandwidth measured for a buffer of that
size (workloads.QuantWorkload.step_weight_bytes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pyrnn import Module, quantize
from pyrnn.bench import (
    Runner,
    Unavailable,
    call_summary,
    lower_bound_us,
    time_prepared,
    time_prepared_steps,
    torch_module,
    verify_output,
    weights_bandwidth,
)
from pyrnn.bench import import_torch as _import_torch

from .runner import ATOL as SEQUENCE_ATOL
from .runner import RTOL as SEQUENCE_RTOL
from .runner import scalar_reference
from .streaming import ATOL as STEP_ATOL
from .streaming import (
    CHECK_STEPS,
    StepRunner,
    scalar_stream_reference,
    stream_seconds,
)
from .streaming import RTOL as STEP_RTOL
from .workloads import WEIGHT_TYPES, QuantWorkload, flops_per_step

if TYPE_CHECKING:
    from .runner import BenchOptions, Progress

__all__ = [
    "PEER_TOLERANCES",
    "QuantCase",
    "QuantEngine",
    "quant_case",
    "run_quant_workload",
    "sequence_engines",
    "step_engines",
]

# A peer is checked against the float32 model within atol + rtol*|ref| (outputs of an LSTM lie
# in (-1, 1)). int8: torch and ONNX Runtime also quantise x and h to 8 bits at every step; on
# LSTM 512 with PyTorch's initialisation their worst errors over T = 100..1000 were 0.029
# (torch) and 0.015 (ORT), so 0.05 + 0.05*|ref| leaves 1.7x; a transposed matrix or a wrong gate
# order is off by 0.1 to 1. bf16: torch's bf16 LSTM keeps x, h and c in bfloat16 (8 bits of
# precision); worst error 0.0034, so 0.01 + 0.01*|ref| leaves 3x.
PEER_TOLERANCES = {"int8": (5e-2, 5e-2), "bf16": (1e-2, 1e-2)}


@dataclass
class QuantCase:
    """A workload's float32 LSTM and its quantised copies (weight type -> module), and the
    input: (T, 1, I) for a sequence workload, one step (I,) for a stream workload."""

    workload: QuantWorkload
    modules: dict[str, Module]
    x: np.ndarray


def quant_case(workload: QuantWorkload, seed: int = 0, steps: int | None = None) -> QuantCase:
    """The seeded float32 LSTM, quantised to every type, and the seeded input."""
    fp32 = workload.module(seed)
    modules = {"fp32": fp32, **{w: quantize(fp32, weights=w) for w in WEIGHT_TYPES[1:]}}
    rng = np.random.default_rng(seed)
    if workload.mode == "stream":
        x = rng.standard_normal(workload.input_size, np.float32)
    else:
        x = rng.standard_normal((steps or workload.steps, 1, workload.input_size), np.float32)
    return QuantCase(workload, modules, x)


@dataclass(frozen=True)
class QuantEngine:
    name: str  # as in the table, e.g. "pyrnn-int8"
    library: str
    weights: str  # the weight type it runs: "fp32", "fp16", "bf16" or "int8"
    prepare: Callable[[QuantCase], Any] = field(repr=False)  # -> Runner or StepRunner
    call: str = ""  # what a sequence engine runs, for the table (a step runner says its own)


def _torch_context() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    torch = _import_torch()

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():  # entered once around the timed calls
                yield
        finally:
            torch.set_num_threads(previous)

    return context


# -- whole sequence ---------------------------------------------------------------------------
def _prepare_pyrnn_sequence(weights: str) -> Callable[[QuantCase], Runner]:
    def prepare(case: QuantCase) -> Runner:
        module = case.modules[weights]
        return Runner(run=lambda: module(case.x)[0])

    return prepare


def torch_int8_lstm(module: Module) -> Any:
    """torch's dynamic int8 LSTM (torch.ao.nn.quantized.dynamic.LSTM) of a float32 `module`,
    made by torch.ao.quantization.quantize_dynamic with dtype=torch.qint8."""
    torch = _import_torch()
    network = torch_module(module)
    with warnings.catch_warnings():  # torch deprecates its eager quantisation API, loudly
        warnings.simplefilter("ignore")
        holder = torch.nn.Sequential(network)  # quantize_dynamic replaces children only
        quantized = torch.ao.quantization.quantize_dynamic(
            holder, {torch.nn.LSTM}, dtype=torch.qint8
        )[0]
    if not isinstance(quantized, torch.ao.nn.quantized.dynamic.LSTM):
        raise Unavailable(f"quantize_dynamic gave {type(quantized).__name__}, not a dynamic LSTM")
    return quantized.eval()


def _prepare_torch_int8(case: QuantCase) -> Runner:
    torch = _import_torch()
    network = torch_int8_lstm(case.modules["fp32"])
    tensor = torch.from_numpy(case.x)

    def run() -> np.ndarray:
        with torch.inference_mode():  # cheap inside the context; makes run() safe alone
            output: np.ndarray = network(tensor)[0].numpy()
            return output

    return Runner(run=run, context=_torch_context())


def _prepare_torch_bf16(case: QuantCase) -> Runner:
    torch = _import_torch()
    network = torch_module(case.modules["fp32"]).to(torch.bfloat16)
    tensor = torch.from_numpy(case.x).to(torch.bfloat16)

    def run() -> np.ndarray:
        with torch.inference_mode():
            output: np.ndarray = network(tensor)[0].float().numpy()
            return output

    return Runner(run=run, context=_torch_context())


def ort_int8_graph(module: Module) -> Any:
    """The ONNX graph of a float32 `module` (pyrnn.onnx_export.to_onnx) after ONNX Runtime's
    quantize_dynamic (int8 weights, one scale per channel): its LSTM node becomes
    DynamicQuantizeLSTM. Raises Unavailable when a library is missing or the node did not."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from pyrnn.onnx_export import to_onnx
    except ImportError as error:
        raise Unavailable(f"onnx or onnxruntime is not installed ({error})") from None
    with tempfile.TemporaryDirectory(prefix="pyrnn-quant-") as folder:
        source, target = os.path.join(folder, "fp32.onnx"), os.path.join(folder, "int8.onnx")
        onnx.save(to_onnx(module, initial_state=False), source)
        logging.disable(logging.WARNING)  # its advice to pre-process goes to the root logger
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        graph = onnx.load(target)
    operators = [node.op_type for node in graph.graph.node]
    if "DynamicQuantizeLSTM" not in operators:
        raise Unavailable(f"quantize_dynamic made no DynamicQuantizeLSTM (operators {operators})")
    return graph


def _prepare_ort_int8(case: QuantCase) -> Runner:
    graph = ort_int8_graph(case.modules["fp32"])
    import onnxruntime as ort  # there: ort_int8_graph raised Unavailable otherwise

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = {"input": case.x}
    return Runner(run=lambda: session.run(["output"], feeds)[0])


def sequence_engines(peers: bool = True) -> list[QuantEngine]:
    """pyrnn with each weight type (fp32 first: the speed-ups are against it), then, with
    `peers`, the peers' reduced-precision LSTMs, 1 thread each."""
    engines = [
        QuantEngine(f"pyrnn-{w}", "pyrnn", w, _prepare_pyrnn_sequence(w), call="lstm(x)")
        for w in WEIGHT_TYPES
    ]
    if peers:
        engines += [
            QuantEngine(
                "torch-int8-1t",
                "torch",
                "int8",
                _prepare_torch_int8,
                call="torch dynamic int8 LSTM (quantize_dynamic, qint8), inference_mode",
            ),
            QuantEngine(
                "ort-int8-1t",
                "onnxruntime",
                "int8",
                _prepare_ort_int8,
                call="session.run: DynamicQuantizeLSTM (quantize_dynamic, QInt8 per channel)",
            ),
            QuantEngine(
                "torch-bf16-1t",
                "torch",
                "bf16",
                _prepare_torch_bf16,
                call="torch nn.LSTM in bfloat16 (weights and x), inference_mode",
            ),
        ]
    return engines


# -- streamed -----------------------------------------------------------------------------------
def _prepare_pyrnn_step(weights: str) -> Callable[[QuantCase], StepRunner]:
    def prepare(case: QuantCase) -> StepRunner:
        module = case.modules[weights]
        stream = module.stream()
        y = np.empty(module.config["hidden_size"], np.float32)

        def check() -> np.ndarray:
            checked = module.stream()
            for _ in range(CHECK_STEPS):
                output = checked.step(case.x)
            return np.asarray(output)

        return StepRunner(
            check=check,
            statement="step(x, out=y)",
            namespace={"step": stream.step, "x": case.x, "y": y},
            call="s.step(x, out=y)",
        )

    return prepare


def step_engines() -> list[QuantEngine]:
    """s.step(x, out=y) of pyrnn with each weight type, fp32 first."""
    return [QuantEngine(f"pyrnn-{w}", "pyrnn", w, _prepare_pyrnn_step(w)) for w in WEIGHT_TYPES]


# -- running a workload -------------------------------------------------------------------------
def _prepared(
    engine: QuantEngine,
    case: QuantCase,
    run_check: Callable[[Any], Any],
    references: dict[str, np.ndarray],
    tolerance: tuple[float, float],
) -> tuple[dict[str, Any], Any]:
    """Prepares `engine`, computes its output with run_check(runner) and checks it: a pyrnn
    engine against its own weight type's scalar reference, a peer against the float32 model's.
    The runner comes back only when the output matches."""
    result: dict[str, Any] = {
        "engine": engine.name,
        "library": engine.library,
        "weights": engine.weights,
    }
    try:
        runner = engine.prepare(case)
        output = np.asarray(run_check(runner), dtype=np.float32)
    except Unavailable as unavailable:
        return {**result, "status": "unavailable", "reason": str(unavailable)}, None
    except Exception as failure:  # an engine failing must not sink the rest of the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    peer = engine.library != "pyrnn"
    reference = references["fp32" if peer else engine.weights]
    atol, rtol = tolerance
    result.update(
        threads=runner.threads,
        call=engine.call or getattr(runner, "call", ""),
        checked_against="the fp32 model" if peer else f"pyrnn's scalar kernels, {engine.weights}",
        tolerance={"atol": atol, "rtol": rtol},
    )
    status, result["max_abs_err"], reason = verify_output(output, reference, atol, rtol)
    if status != "ok":
        return {**result, "status": status, "reason": reason}, None
    if output.shape == references["fp32"].shape:
        result["err_vs_fp32"] = float(np.abs(output - references["fp32"]).max())
    return {**result, "status": "ok"}, runner


def _tolerance(engine: QuantEngine, pyrnn: tuple[float, float]) -> tuple[float, float]:
    return pyrnn if engine.library == "pyrnn" else PEER_TOLERANCES[engine.weights]


def _bounds(
    workload: QuantWorkload,
    types: list[str],
    flops: float,
    machine: dict[str, Any],
    options: BenchOptions,
    progress: Progress,
) -> dict[str, dict[str, Any]]:
    """Each weight type's bound on one step, its bandwidth probed on a buffer of its bytes."""
    bounds = {}
    for weights in types:
        size = workload.step_weight_bytes(weights)
        progress(f"{workload.name}: bandwidth of its {size} bytes of {weights} weights")
        bandwidth = weights_bandwidth(size, options.effective_probe_seconds)
        bounds[weights] = lower_bound_us(flops, size, machine, bandwidth)
    return bounds


def _finish(results: list[dict[str, Any]], bounds: dict[str, dict[str, Any]], flops: float) -> None:
    """Adds GFLOP/s, % of the bound and the ratios to the results that were timed."""
    ok = {r["engine"]: r for r in results if r["status"] == "ok" and "us_per_step" in r}
    for result in ok.values():
        us = result["us_per_step"]
        result["gflops"] = flops / (us * 1e3)
        result["pct_bound"] = 100.0 * bounds[result["weights"]]["us"] / us
        fp32 = ok.get("pyrnn-fp32")
        if fp32 is not None:
            result["speedup_vs_fp32"] = fp32["us_per_step"] / us
        same = ok.get(f"pyrnn-{result['weights']}")
        if same is not None:
            result["ratio_vs_pyrnn"] = us / same["us_per_step"]


def _run_sequence(
    workload: QuantWorkload, case: QuantCase, options: BenchOptions, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    references = {}
    for weights, module in case.modules.items():
        progress(f"{workload.name}: scalar reference, {weights} weights")
        references[weights] = scalar_reference(module, case.x)
    prepared = []
    for engine in sequence_engines(workload.peers):
        progress(f"{workload.name}: preparing and verifying {engine.name}")

        def run_check(runner: Runner) -> Any:
            with runner.context():
                return runner.run()

        within = _tolerance(engine, (SEQUENCE_ATOL, SEQUENCE_RTOL))
        prepared.append(_prepared(engine, case, run_check, references, within))
    repeats, steps = options.effective_repeats, case.x.shape[0]
    progress(f"{workload.name}: timing the verified engines, interleaved")
    time_prepared(prepared, repeats, options.warmup, lambda times: call_summary(times, steps))
    timing = {"repeats": repeats, "warmup": options.warmup, "statistic": "median call"}
    tolerance = {"atol": SEQUENCE_ATOL, "rtol": SEQUENCE_RTOL}
    return [result for result, _ in prepared], timing, tolerance


def _run_stream(
    workload: QuantWorkload, case: QuantCase, options: BenchOptions, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    references = {}
    for weights, module in case.modules.items():
        references[weights] = scalar_stream_reference(module, case.x)
    prepared = []
    for engine in step_engines():
        progress(f"{workload.name}: preparing and verifying {engine.name}")
        within = (STEP_ATOL, STEP_RTOL)
        prepared.append(_prepared(engine, case, lambda r: r.check(), references, within))
    budget, repeats = stream_seconds(options), options.effective_repeats
    progress(f"{workload.name}: timing the verified engines, interleaved")
    time_prepared_steps(prepared, budget, repeats)
    timing = {"seconds_per_engine": budget, "loops": repeats, "statistic": "best loop"}
    tolerance = {"atol": STEP_ATOL, "rtol": STEP_RTOL, "steps_checked": CHECK_STEPS}
    return [result for result, _ in prepared], timing, tolerance


def run_quant_workload(
    workload: QuantWorkload, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """Every engine's time per step on `workload`, each output verified first, with each weight
    type's bound. `machine` needs "fma_peak_gflops" and "caches" (machine.measure_peak)."""
    steps = options.steps(workload.steps) if workload.mode == "sequence" else None
    described = asdict(workload)
    if steps is None:
        del described["steps"]  # a stream has no sequence length
    else:
        described["steps"] = steps
    flops = flops_per_step(workload.config())
    progress(f"{workload.name}: quantising the LSTM to {', '.join(WEIGHT_TYPES[1:])}")
    case = quant_case(workload, options.seed, steps)
    run = _run_stream if workload.mode == "stream" else _run_sequence
    results, timing, tolerance = run(workload, case, options, progress)
    types = [w for w in WEIGHT_TYPES if any(r["weights"] == w for r in results)]
    bounds = _bounds(workload, types, flops, machine, options, progress)
    _finish(results, bounds, flops)
    tolerances: dict[str, Any] = {
        "pyrnn": {**tolerance, "reference": "pyrnn's scalar kernels, same weight type"}
    }
    if workload.peers:
        tolerances["peers"] = {
            w: {"atol": atol, "rtol": rtol, "reference": "the fp32 model"}
            for w, (atol, rtol) in PEER_TOLERANCES.items()
        }
    return {
        "name": workload.name,
        "category": workload.category,
        "label": workload.label,
        "mode": workload.mode,
        "description": workload.describe(steps),
        "workload": described,
        "flops_per_step": flops,
        "timing": timing,
        "tolerance": tolerances,
        "bounds": bounds,
        "results": results,
    }
