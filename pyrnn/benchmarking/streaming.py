"""The streaming workloads of `pyrnn bench --compare`: the latency of one step called from Python
on a pyrnn stream (with and without out=), on torch's LSTMCell/GRUCell (1 thread, inference_mode)
and on an ONNX Runtime session run once per step (1 intra-op thread); one batch=64 stream against
64 separate ones; and the Python overhead of s.step(x, out=y). Every engine's output after a few
steps is checked against pyrnn's scalar path before it is timed.

Timing: each engine's call is a statement run by timeit in a loop (no wrapper function, so no
engine pays for an extra Python frame); loops of all engines alternate round-robin so that load
from other processes falls on every engine alike; the best loop's mean is kept, since noise on
a shared machine only ever adds time.
"""

from __future__ import annotations

import contextlib
import gc
import timeit
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import isa
from .._base import Module
from .engines import Unavailable, _import_torch, pyrnn_threads
from .workloads import StreamWorkload, flops_per_step

if TYPE_CHECKING:
    from .runner import BenchOptions, Progress

__all__ = ["ATOL", "CHECK_STEPS", "RTOL", "StepEngine", "StepRunner", "run_stream_workload"]

# One step engine must match pyrnn's scalar path within ATOL + RTOL*|ref| after CHECK_STEPS steps.
# The engines differ only in summation order and activation approximations over a few steps
# (observed gaps ~1e-7); a wrong gate order or a dropped bias is off by 1e-2 or more.
ATOL, RTOL = 1e-5, 1e-4
CHECK_STEPS = 3


@dataclass
class StepRunner:
    """`statement` is one step, timed by timeit with `namespace` as globals after `setup`;
    `loop`, when given, replaces timeit: loop(n) returns the seconds of n steps (the C++ loop).
    check() returns the output after CHECK_STEPS steps of the workload's x from zero state."""

    check: Callable[[], np.ndarray]
    statement: str = ""
    namespace: dict[str, Any] = field(default_factory=dict)
    setup: str = "pass"
    loop: Callable[[int], float] | None = None
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    threads: str = "1"
    call: str = ""  # what one step is, for the table

    def seconds(self, number: int) -> float:
        """Seconds of `number` steps (inside this engine's context)."""
        with self.context():
            if self.loop is not None:
                return self.loop(number)
            timer = timeit.Timer(self.statement, setup=self.setup, globals=self.namespace)
            return timer.timeit(number)


@dataclass(frozen=True)
class StepEngine:
    name: str  # as in the table, e.g. "torch-1t"
    library: str
    prepare: Callable[[Module, np.ndarray], StepRunner] = field(repr=False)


# -- pyrnn --------------------------------------------------------------------------------------
def _pyrnn_check(module: Module, x: np.ndarray) -> Callable[[], np.ndarray]:
    def check() -> np.ndarray:
        stream = module.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(x)
        return y

    return check


def _prepare_pyrnn(
    out: bool, threads: int | None = None
) -> Callable[[Module, np.ndarray], StepRunner]:
    def prepare(module: Module, x: np.ndarray) -> StepRunner:
        stream = module.stream()
        y = np.empty(module._spec.output_size, np.float32)
        context, count = pyrnn_threads(threads)
        return StepRunner(
            check=_pyrnn_check(module, x),
            statement="step(x, out=y)" if out else "step(x)",
            namespace={"step": stream.step, "x": x, "y": y},
            context=context,
            threads=count,
            call="s.step(x, out=y)" if out else "s.step(x)",
        )

    return prepare


def _prepare_pyrnn_cpp(module: Module, x: np.ndarray) -> StepRunner:
    stream = module.stream()
    y = np.empty(module._spec.output_size, np.float32)
    context, count = pyrnn_threads(None)
    return StepRunner(
        check=_pyrnn_check(module, x),
        loop=lambda number: stream._time_steps(x, y, number) * number,
        context=context,
        threads=count,
        call="the same steps in a C++ loop (no Python)",
    )


def _prepare_pyrnn_feed(block: int) -> Callable[[Module, np.ndarray], StepRunner]:
    """Feeds of `block` samples (the same x repeated), timed per sample."""

    def prepare(module: Module, x: np.ndarray) -> StepRunner:
        stream = module.stream()
        xs = np.ascontiguousarray(np.broadcast_to(x, (block, x.shape[-1])))
        ys = np.empty((block, module._spec.output_size), np.float32)
        feed = stream.feed

        def loop(number: int) -> float:
            feeds = max(1, number // block)
            start = timeit.default_timer()
            for _ in range(feeds):
                feed(xs, out=ys)
            return (timeit.default_timer() - start) * number / (feeds * block)

        return StepRunner(
            check=_pyrnn_check(module, x),
            loop=loop,
            call=f"s.feed(x, out=y) of {block} samples, per sample",
        )

    return prepare


# -- PyTorch ------------------------------------------------------------------------------------
def torch_cell(module: Module) -> Any:
    """The torch.nn LSTMCell/GRUCell/RNNCell with the weights of a 1-layer `module`, eval mode."""
    torch = _import_torch()
    spec = module._spec
    cells = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
    if spec.base_kind not in cells or spec.num_layers != 1 or spec.proj_size:
        raise Unavailable(f"no torch cell for {module!r}")
    cell = cells[spec.base_kind](spec.input_size, spec.hidden_size, bias=spec.bias)
    weights = {key.removesuffix("_l0"): value for key, value in module.state_dict().items()}
    cell.load_state_dict({key: torch.from_numpy(value) for key, value in weights.items()})
    return cell.eval()


def _prepare_torch(module: Module, x: np.ndarray) -> StepRunner:
    torch = _import_torch()
    cell = torch_cell(module)
    lstm = module._spec.base_kind == "lstm"
    xt = torch.from_numpy(x[None].copy())
    zeros = torch.zeros(1, module._spec.hidden_size)
    initial: Any = (zeros, zeros.clone()) if lstm else zeros

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():  # entered once around a loop, not per step
                yield
        finally:
            torch.set_num_threads(previous)

    def check() -> np.ndarray:
        with context():
            state = initial
            for _ in range(CHECK_STEPS):
                state = cell(xt, state)
        return np.asarray((state[0] if lstm else state)[0].numpy())

    return StepRunner(
        check=check,
        statement="state = cell(x, state)",
        namespace={"cell": cell, "x": xt, "initial": initial},
        setup="state = initial",
        context=context,
        call=f"{type(cell).__name__}, inference_mode",
    )


# -- ONNX Runtime -------------------------------------------------------------------------------
def onnx_step_model(module: Module) -> Any:
    """The smallest ONNX graph of one step of a 1-layer LSTM/GRU: a single operator node over
    x (1, 1, I) with h0 (and c0) as inputs and h1 (and c1) as outputs, so that ORT's per-run cost
    is its own, not that of the Slice/Squeeze/Concat nodes a general export adds."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as error:
        raise Unavailable(f"onnx is not installed ({error})") from None
    from ..onnx_export import _IR_VERSION, ONNX_OPSET, _reorder_gates

    spec = module._spec
    if spec.base_kind not in ("lstm", "gru") or spec.num_layers != 1 or spec.proj_size:
        raise Unavailable(f"no one-node ONNX step graph for {module!r}")
    kind, size = spec.base_kind, spec.hidden_size
    weights = module.state_dict()
    tensors = {
        "W": _reorder_gates(weights["weight_ih_l0"], kind)[None],
        "R": _reorder_gates(weights["weight_hh_l0"], kind)[None],
    }
    if spec.bias:
        tensors["B"] = np.concatenate(
            [
                _reorder_gates(weights["bias_ih_l0"], kind),
                _reorder_gates(weights["bias_hh_l0"], kind),
            ]
        )[None]
    states = ["h0", "c0"] if kind == "lstm" else ["h0"]
    inputs = ["x", "W", "R", "B" if spec.bias else "", "", *states]
    outputs = ["y", "h1", "c1"] if kind == "lstm" else ["y", "h1"]
    attributes: dict[str, Any] = {"hidden_size": size}
    if kind == "gru":
        attributes["linear_before_reset"] = 1  # PyTorch's GRU
    node = helper.make_node(kind.upper(), inputs, outputs, **attributes)
    graph = helper.make_graph(
        [node],
        f"{kind}_step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, spec.input_size])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, size]) for name in states],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = _IR_VERSION
    return model


def _prepare_ort(module: Module, x: np.ndarray) -> StepRunner:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise Unavailable(f"onnxruntime is not installed ({error})") from None
    model = onnx_step_model(module)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    size = module._spec.hidden_size
    lstm = module._spec.base_kind == "lstm"
    states, outputs = (["h0", "c0"], ["h1", "c1"]) if lstm else (["h0"], ["h1"])

    def fresh_feeds() -> dict[str, np.ndarray]:
        zeros = {name: np.zeros((1, 1, size), np.float32) for name in states}
        return {"x": x.reshape(1, 1, -1), **zeros}

    def check() -> np.ndarray:
        feeds = fresh_feeds()
        for _ in range(CHECK_STEPS):
            feeds.update(zip(states, session.run(outputs, feeds), strict=True))
        return feeds["h0"].reshape(size)

    targets = ", ".join(f"feeds[{name!r}]" for name in states)
    return StepRunner(
        check=check,
        statement=f"{targets}, = run(outputs, feeds)",
        namespace={"run": session.run, "outputs": outputs, "feeds": fresh_feeds()},
        call="session.run per step (one-node graph, state fed back)",
    )


def _prepare_pyrnn_onnx(module: Module, x: np.ndarray) -> StepRunner:
    """ORT's one-node step graph imported with pyrnn.from_onnx and streamed: the node and its
    weights as ORT runs them, with the sequence axis free and the initial-state inputs left out
    (the stream carries h and c itself; ORT's run is fed them back)."""
    from ..onnx_import import from_onnx

    proto = onnx_step_model(module)
    node = proto.graph.node[0]
    for i in range(5, len(node.input)):
        node.input[i] = ""
    keep = [value for value in proto.graph.input if value.name == "x"]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    model = from_onnx(proto)
    frame = x.reshape(1, -1)
    size = module._spec.hidden_size

    def check() -> np.ndarray:
        stream = model.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(frame)[0]
        return np.asarray(y).reshape(size)

    stream = model.stream()
    outputs = [np.empty_like(y) for y in stream.step(frame)]
    stream.reset()
    return StepRunner(
        check=check,
        statement="step(x, out=ys)",
        namespace={"step": stream.step, "x": frame, "ys": outputs},
        call="s.step(x, out=ys) of the ONNX step graph imported by pyrnn.from_onnx",
    )


def step_engines() -> list[StepEngine]:
    """pyrnn's step without and with out= (the ratios are against the latter), the latter again
    on 1 thread, its C++ loop, the same LSTM imported from ORT's ONNX graph, then the peers with
    1 thread. pyrnn runs at its default thread count except where the name says 1t (a small
    model's step stays on the calling thread either way)."""
    return [
        StepEngine("pyrnn", "pyrnn", _prepare_pyrnn(out=False)),
        StepEngine("pyrnn-out", "pyrnn", _prepare_pyrnn(out=True)),
        StepEngine("pyrnn-out-1t", "pyrnn", _prepare_pyrnn(out=True, threads=1)),
        StepEngine("pyrnn-c++", "pyrnn", _prepare_pyrnn_cpp),
        StepEngine("pyrnn-onnx", "onnxruntime", _prepare_pyrnn_onnx),
        StepEngine("torch-1t", "torch", _prepare_torch),
        StepEngine("ort-1t", "onnxruntime", _prepare_ort),
        StepEngine("pyrnn-feed64", "pyrnn", _prepare_pyrnn_feed(64)),
        StepEngine("pyrnn-feed256", "pyrnn", _prepare_pyrnn_feed(256)),
    ]


# The engines of each measure: a tiny workload times pyrnn's own ways of running an audio-rate
# model (its peer, RTNeural, is C++ only: benchmarks/rtneural/run.py).
_MEASURE_ENGINES = {
    "overhead": ("pyrnn-out", "pyrnn-c++"),
    "tiny": ("pyrnn-out", "pyrnn-c++", "pyrnn-feed64", "pyrnn-feed256"),
}
_FEEDS = ("pyrnn-feed64", "pyrnn-feed256")
SAMPLE_RATE = 48_000


# -- timing -------------------------------------------------------------------------------------
def time_round_robin(
    runners: list[StepRunner], budget: float, repeats: int
) -> list[list[float] | str]:
    """Seconds per step of `repeats` loops of each runner, each loop lasting about
    budget/repeats seconds. Loops alternate between runners (the order rotated every round). A
    runner that raises gets its error text instead of times."""
    outcome: list[list[float] | str] = [[] for _ in runners]
    numbers = [1] * len(runners)
    for index, runner in enumerate(runners):  # calibrate: loops of at least 10 ms
        try:
            number, elapsed = 1, runner.seconds(1)
            while elapsed < 0.01:
                number *= 4
                elapsed = runner.seconds(number)
            numbers[index] = max(1, round(number * (budget / repeats) / elapsed))
        except Exception as error:
            outcome[index] = f"{type(error).__name__}: {error}"
    enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(repeats):
            for offset in range(len(runners)):
                index = (round_ + offset) % len(runners)
                times = outcome[index]
                if isinstance(times, str):
                    continue
                try:
                    times.append(runners[index].seconds(numbers[index]) / numbers[index])
                except Exception as error:
                    outcome[index] = f"{type(error).__name__}: {error}"
    finally:
        if enabled:
            gc.enable()
    return outcome


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "us_per_step": 1e6 * min(times),  # best loop: noise only ever adds time
        "median_us": 1e6 * float(np.median(times)),
        "times_us": [1e6 * t for t in times],
    }


def scalar_stream_reference(module: Module, x: np.ndarray, steps: int = CHECK_STEPS) -> np.ndarray:
    """The output of a fresh stream after `steps` steps of x, on pyrnn's scalar kernels."""
    previous = isa.active_isa()
    isa.set_isa("scalar")
    try:
        stream = module.stream(batch=None if x.ndim == 1 else x.shape[0])
        for _ in range(steps):
            y = stream.step(x)
        return y
    finally:
        isa.set_isa(previous)


def _verify(output: Any, reference: np.ndarray) -> tuple[str, float, str]:
    """(status, max |err|, reason) of an engine's output against the reference."""
    output = np.asarray(output, dtype=np.float32)
    if output.shape != reference.shape:
        return "mismatch", float("nan"), f"output shape {output.shape}, expected {reference.shape}"
    error = np.abs(output - reference)
    worst = float(error.max())
    if bool(np.any(~(error <= ATOL + RTOL * np.abs(reference)))):  # NaN counts as a mismatch
        return "mismatch", worst, f"max |err| {worst:.3g} vs pyrnn's scalar path"
    return "ok", worst, ""


def _prepared(
    engine: StepEngine, module: Module, x: np.ndarray, reference: np.ndarray
) -> tuple[dict[str, Any], StepRunner | None]:
    result: dict[str, Any] = {"engine": engine.name, "library": engine.library}
    try:
        runner = engine.prepare(module, x)
        output = runner.check()
    except Unavailable as unavailable:
        return {**result, "status": "unavailable", "reason": str(unavailable)}, None
    except Exception as failure:  # an engine failing must not sink the rest of the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    result.update(threads=runner.threads, call=runner.call)
    status, result["max_abs_err"], reason = _verify(output, reference)
    if status != "ok":
        return {**result, "status": status, "reason": reason}, None
    return {**result, "status": "ok"}, runner


def _many_streams(
    module: Module, rows: int, seed: int
) -> tuple[list[StepRunner], float, np.ndarray]:
    """A `rows`-row stream and `rows` separate streams over the same inputs: their runners, and
    the max |difference| of their first steps (they must agree: same rows, same weights)."""
    spec = module._spec
    xs = np.random.default_rng(seed + 1).standard_normal((rows, spec.input_size), np.float32)
    ys = np.empty((rows, spec.output_size), np.float32)
    together = module.stream(batch=rows)
    separate = [module.stream() for _ in range(rows)]
    pairs = [(stream.step, xs[i], ys[i]) for i, stream in enumerate(separate)]
    batched = together.step(xs)
    for step, x, y in pairs:
        step(x, out=y)
    difference = float(np.abs(batched - ys).max())
    together.reset()
    for stream in separate:
        stream.reset()
    runners = [
        StepRunner(
            check=lambda: batched,
            statement="step(xs, out=ys)",
            namespace={"step": together.step, "xs": xs, "ys": ys},
            call=f"one batch={rows} stream: s.step(xs, out=ys)",
        ),
        StepRunner(
            check=lambda: ys,
            statement="for step, x, y in pairs: step(x, out=y)",
            namespace={"pairs": pairs},
            call=f"{rows} streams, s.step(x, out=y) each",
        ),
    ]
    return runners, difference, scalar_stream_reference(module, xs, 1)


def stream_seconds(options: BenchOptions) -> float:
    """Seconds of timed loops per engine and workload (split over the repeats)."""
    return 0.1 if options.quick else 0.5


def run_stream_workload(
    workload: StreamWorkload, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """Every engine's per-step latency on `workload` (or the Python overhead), verified first."""
    module = workload.module(options.seed)
    x = np.random.default_rng(options.seed).standard_normal(workload.input_size, np.float32)
    reference = scalar_stream_reference(module, x)
    budget, repeats = stream_seconds(options), options.effective_repeats
    engines = step_engines()
    if workload.measure in _MEASURE_ENGINES:
        engines = [e for e in engines if e.name in _MEASURE_ENGINES[workload.measure]]
    else:
        engines = [e for e in engines if e.name not in _FEEDS]
    prepared = []
    for engine in engines:
        progress(f"{workload.name}: preparing and verifying {engine.name}")
        prepared.append(_prepared(engine, module, x, reference))
    timed = [(result, runner) for result, runner in prepared if runner is not None]
    runners = [runner for _, runner in timed]
    batch: dict[str, Any] | None = None
    if workload.measure == "latency" and workload.batch > 1:
        many, difference, batch_reference = _many_streams(module, workload.batch, options.seed)
        status, error, reason = _verify(many[0].check(), batch_reference)
        batch = {"rows": workload.batch, "max_abs_err": error, "max_abs_diff": difference}
        if status == "ok" and difference <= ATOL + RTOL * float(np.abs(batch_reference).max()):
            runners += many
        else:
            batch.update(status="mismatch", reason=reason or f"rows differ by {difference:.3g}")
    progress(f"{workload.name}: timing {len(runners)} runners, interleaved")
    outcomes = time_round_robin(runners, budget, repeats)
    for (result, _), outcome in zip(timed, outcomes, strict=False):
        if isinstance(outcome, str):
            result.update(status="error", reason=outcome)
        else:
            result.update(_summary(outcome))
    ok = {r["engine"]: r for r in (result for result, _ in prepared) if r["status"] == "ok"}
    base = ok.get("pyrnn-out")
    if base is not None:
        for result in ok.values():
            result["ratio_vs_pyrnn_out"] = result["us_per_step"] / base["us_per_step"]
    if batch is not None and "status" not in batch:
        together, separate = outcomes[len(timed)], outcomes[len(timed) + 1]
        if isinstance(together, str) or isinstance(separate, str):
            batch.update(status="error", reason=together if isinstance(together, str) else separate)
        else:
            rows = workload.batch
            batch_us, separate_us = 1e6 * min(together), 1e6 * min(separate)
            batch.update(
                status="ok",
                batch_us=batch_us,
                separate_us=separate_us,
                batch_stream_steps_per_s=rows / batch_us * 1e6,
                separate_stream_steps_per_s=rows / separate_us * 1e6,
                ratio=separate_us / batch_us,
                calls=[r.call for r in runners[len(timed) :]],
            )
    overhead: dict[str, float] | None = None
    if workload.measure == "overhead" and "pyrnn-out" in ok and "pyrnn-c++" in ok:
        step_us, cpp_us = ok["pyrnn-out"]["us_per_step"], ok["pyrnn-c++"]["us_per_step"]
        overhead = {"step_us": step_us, "cpp_us": cpp_us, "overhead_us": step_us - cpp_us}
    tiny: dict[str, float] | None = None
    if workload.measure == "tiny" and all(name in ok for name in _MEASURE_ENGINES["tiny"]):
        ns = {name: 1e3 * ok[name]["us_per_step"] for name in _MEASURE_ENGINES["tiny"]}
        tiny = {
            "step_ns": ns["pyrnn-out"],
            "cpp_step_ns": ns["pyrnn-c++"],
            "feed64_ns": ns["pyrnn-feed64"],
            "feed256_ns": ns["pyrnn-feed256"],
            "x_realtime_48k": 1e9 / SAMPLE_RATE / ns["pyrnn-feed256"],
            "x_realtime_48k_step": 1e9 / SAMPLE_RATE / ns["pyrnn-out"],
        }
    return {
        "name": workload.name,
        "category": workload.category,
        "label": workload.label,
        "description": workload.describe(),
        "workload": asdict(workload),
        "flops_per_step": flops_per_step(workload.config()),
        "timing": {"seconds_per_engine": budget, "loops": repeats, "statistic": "best loop"},
        "tolerance": {"atol": ATOL, "rtol": RTOL, "steps_checked": CHECK_STEPS},
        "results": [result for result, _ in prepared],
        "batch": batch,
        "overhead": overhead,
        "tiny": tiny,
    }
