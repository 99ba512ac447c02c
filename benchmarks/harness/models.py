"""The whole-model workloads of the comparison: a torch model with an LSTM between linear
layers, converted with pyrnn.from_torch, timed against the bare pyrnn LSTM it contains (what the
ops around the recurrent layer cost) and against PyTorch and ONNX Runtime running the same model.

* Streamed (mode "stream"): one frame per call, batch 1. pyrnn's ModelStream.step with and
  without out=, the bare LSTM's Stream.step(x, out=y) (and its steps in a C++ loop), the torch
  model frame by frame with the state carried by the caller (its LSTM as an LSTMCell, the
  fastest per-frame form, and as the model's own nn.LSTM called with hx), and ONNX Runtime
  running the model's one-frame graph with the state fed back. Timed as streaming.py times
  steps: timeit loops, engines alternating, the best loop kept.
* Whole sequence (mode "sequence"): model(x) against the LSTM's forward alone on the same x,
  torch running the model and ONNX Runtime running the LSTM's graph (pyrnn.onnx_export) with the
  head appended. Timed as runner.py times sequences: calls taking turns, the median kept.

Every engine's output is checked first: the model's against the model run on pyrnn's scalar
kernels, the bare LSTM's against the LSTM on the scalar kernels. torch is needed to build and
convert the model; without it the whole workload is reported unavailable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pyrnn import Model, Module, isa
from pyrnn.bench import (
    Engine,
    Runner,
    Unavailable,
    call_summary,
    cpp_step_seconds,
    ort_session,
    time_prepared,
    time_prepared_steps,
)
from pyrnn.bench import import_torch as _import_torch

from .runner import ATOL as SEQUENCE_ATOL
from .runner import RTOL as SEQUENCE_RTOL
from .runner import prepare_engine, scalar_reference
from .streaming import (
    ATOL,
    CHECK_STEPS,
    RTOL,
    StepRunner,
    _verify,
    scalar_stream_reference,
    stream_seconds,
)
from .workloads import ModelWorkload

if TYPE_CHECKING:
    from .runner import BenchOptions, Progress

__all__ = ["ModelCase", "model_case", "run_model_workload", "sequence_engines", "step_engines"]


@dataclass
class ModelCase:
    """A workload's torch model, its pyrnn conversion, the bare pyrnn LSTM with the same
    weights, and the input: one frame (I,) for a stream workload, (T, 1, I) for a sequence."""

    workload: ModelWorkload
    torch_model: Any
    model: Model
    lstm: Module
    x: np.ndarray


def torch_model(workload: ModelWorkload, seed: int = 0) -> Any:
    """The torch module of `workload` (torch's default initialisation from `seed`), eval mode.
    Its layers are `inp` (when the workload has an input Linear), `lstm` and `head`."""
    torch = _import_torch()
    nn = torch.nn
    base: Any = nn.Module

    class HeadModel(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            if workload.input_linear:
                self.inp = nn.Linear(workload.input_size, workload.input_size)
            self.lstm = nn.LSTM(workload.input_size, workload.hidden_size, workload.num_layers)
            self.head = nn.Linear(workload.hidden_size, workload.output_size)

        def forward(self, x: Any) -> Any:
            if workload.input_linear:
                x = self.inp(x)
            y = self.head(self.lstm(x)[0])
            return torch.log_softmax(y, dim=-1) if workload.log_softmax else y

    with torch.random.fork_rng():  # the caller's torch RNG stays as it was
        torch.manual_seed(seed)
        return HeadModel().eval()


def model_case(workload: ModelWorkload, seed: int = 0, steps: int | None = None) -> ModelCase:
    """Builds the torch model, converts it (and its LSTM alone) with pyrnn.from_torch, and draws
    the input. Raises Unavailable without torch."""
    from pyrnn import from_torch

    torch = _import_torch()
    network = torch_model(workload, seed)
    example = torch.zeros(3, 2, workload.input_size)  # T and N >= 2 stay free in the capture
    model = from_torch(network, example)
    lstm = from_torch(network.lstm)
    assert isinstance(model, Model) and isinstance(lstm, Module)
    rng = np.random.default_rng(seed)
    if workload.mode == "stream":
        x = rng.standard_normal(workload.input_size, np.float32)
    else:
        shape = (steps or workload.steps, 1, workload.input_size)
        x = rng.standard_normal(shape, np.float32)
    return ModelCase(workload, network, model, lstm, x)


def _on_scalar_kernels(compute: Callable[[], Any]) -> np.ndarray:
    previous = isa.active_isa()
    isa.set_isa("scalar")
    try:
        return np.asarray(compute())
    finally:
        isa.set_isa(previous)


def model_stream_reference(case: ModelCase, steps: int = CHECK_STEPS) -> np.ndarray:
    """The model's output after `steps` frames of x from a fresh stream, on the scalar kernels."""

    def run() -> Any:
        stream = case.model.stream()
        for _ in range(steps):
            y = stream.step(case.x)
        return y

    return _on_scalar_kernels(run)


def model_sequence_reference(case: ModelCase) -> np.ndarray:
    """model(x) on the scalar kernels."""
    return _on_scalar_kernels(lambda: case.model(case.x))


@dataclass(frozen=True)
class ModelEngine:
    name: str  # as in the table, e.g. "torch-1t"
    library: str
    prepare: Callable[[ModelCase], Any] = field(repr=False)  # -> StepRunner or Runner
    reference: str = "model"  # what its output is checked against: "model" or "lstm"
    call: str = ""  # what a sequence engine runs, for the table (a step runner says its own)


def _torch_context(threads: int = 1) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    torch = _import_torch()

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.inference_mode():  # entered once around a loop, not per call
                yield
        finally:
            torch.set_num_threads(previous)

    return context


# -- streamed: one frame per call ----------------------------------------------------------------
def _model_step_check(case: ModelCase) -> Callable[[], np.ndarray]:
    def check() -> np.ndarray:
        stream = case.model.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(case.x)
        return np.asarray(y)

    return check


def _prepare_model_step(out: bool) -> Callable[[ModelCase], StepRunner]:
    def prepare(case: ModelCase) -> StepRunner:
        stream = case.model.stream()
        y = np.empty(case.workload.output_size, np.float32)
        return StepRunner(
            check=_model_step_check(case),
            statement="step(x, out=y)" if out else "step(x)",
            namespace={"step": stream.step, "x": case.x, "y": y},
            call="model stream: s.step(x, out=y)" if out else "model stream: s.step(x)",
        )

    return prepare


def _lstm_check(case: ModelCase) -> Callable[[], np.ndarray]:
    def check() -> np.ndarray:
        stream = case.lstm.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(case.x)
        return np.asarray(y)

    return check


def _prepare_lstm_step(case: ModelCase) -> StepRunner:
    stream = case.lstm.stream()
    y = np.empty(case.workload.hidden_size, np.float32)
    return StepRunner(
        check=_lstm_check(case),
        statement="step(x, out=y)",
        namespace={"step": stream.step, "x": case.x, "y": y},
        call="bare pyrnn LSTM stream: s.step(x, out=y)",
    )


def _prepare_lstm_cpp(case: ModelCase) -> StepRunner:
    stream = case.lstm.stream()
    y = np.empty(case.workload.hidden_size, np.float32)
    return StepRunner(
        check=_lstm_check(case),
        loop=lambda number: cpp_step_seconds(stream, case.x, y, number) * number,
        call="bare LSTM's steps in a C++ loop (no Python)",
    )


def _torch_frame_module(case: ModelCase, cell: bool) -> Any:
    """The torch model as a module of one frame: (x (1, I), h, c) -> (y (1, O), h, c), its LSTM
    run as an LSTMCell with the same weights (cell) or as the model's nn.LSTM given hx."""
    torch = _import_torch()
    network, workload = case.torch_model, case.workload
    if cell and workload.num_layers != 1:
        raise Unavailable("the LSTMCell form is written for a 1-layer LSTM")
    lstm_cell = None
    if cell:
        lstm_cell = torch.nn.LSTMCell(workload.input_size, workload.hidden_size)
        weights = {k.removesuffix("_l0"): v for k, v in network.lstm.state_dict().items()}
        lstm_cell.load_state_dict(weights)

    base: Any = torch.nn.Module

    class Frame(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.cell = lstm_cell

        def forward(self, x: Any, h: Any, c: Any) -> Any:
            if workload.input_linear:
                x = self.network.inp(x)
            if self.cell is not None:
                h, c = self.cell(x, (h, c))
                y = h
            else:
                y, (h, c) = self.network.lstm(x[None], (h, c))
                y = y[0]
            y = self.network.head(y)
            return (torch.log_softmax(y, dim=-1) if workload.log_softmax else y), h, c

    return Frame().eval()


def _prepare_torch_frame(cell: bool) -> Callable[[ModelCase], StepRunner]:
    def prepare(case: ModelCase) -> StepRunner:
        torch = _import_torch()
        frame = _torch_frame_module(case, cell)
        hidden = case.workload.hidden_size
        shape = (1, hidden) if cell else (case.workload.num_layers, 1, hidden)
        x = torch.from_numpy(case.x[None].copy())
        zeros = torch.zeros(shape)
        context = _torch_context(1)

        def check() -> np.ndarray:
            with context():
                h, c = zeros, zeros
                for _ in range(CHECK_STEPS):
                    y, h, c = frame(x, h, c)
            return np.asarray(y[0].numpy())

        what = "LSTMCell" if cell else "its nn.LSTM given hx"
        return StepRunner(
            check=check,
            statement="y, h, c = frame(x, h, c)",
            namespace={"frame": frame, "x": x, "zeros": zeros},
            setup="h, c = zeros, zeros",
            context=context,
            call=f"torch model per frame ({what}), inference_mode",
        )

    return prepare


def _linear_arrays(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """A torch Linear's weight transposed (in, out) for MatMul, and its bias."""
    weight = layer.weight.detach().numpy()
    return np.ascontiguousarray(weight.T), np.ascontiguousarray(layer.bias.detach().numpy())


def onnx_model_graph(case: ModelCase, lstm_graph: Any, lstm_input: str, lstm_output: str) -> Any:
    """`lstm_graph` (an ONNX model of the workload's LSTM, from pyrnn.onnx_export) made into the
    whole model's graph: its input `lstm_input` renamed "frame" and fed through the input Linear
    (MatMul + Add) when the model has one, its output `lstm_output` replaced by "logits", the
    head (MatMul + Add, LogSoftmax over the last axis) appended. The other inputs and outputs
    (the state) stay as they are."""
    from onnx import helper, numpy_helper

    graph, workload, network = lstm_graph.graph, case.workload, case.torch_model
    front, back = [], []
    tensors: dict[str, np.ndarray] = {}
    if workload.input_linear:
        (entry,) = [value for value in graph.input if value.name == lstm_input]
        entry.name = "frame"
        tensors["inp.weight_t"], tensors["inp.bias"] = _linear_arrays(network.inp)
        front += [
            helper.make_node("MatMul", ["frame", "inp.weight_t"], ["inp.matmul"]),
            helper.make_node("Add", ["inp.matmul", "inp.bias"], [lstm_input]),
        ]
    tensors["head.weight_t"], tensors["head.bias"] = _linear_arrays(network.head)
    head = "head.add" if workload.log_softmax else "logits"
    back += [
        helper.make_node("MatMul", [lstm_output, "head.weight_t"], ["head.matmul"]),
        helper.make_node("Add", ["head.matmul", "head.bias"], [head]),
    ]
    if workload.log_softmax:
        back.append(helper.make_node("LogSoftmax", [head], ["logits"], axis=-1))
    nodes = [*front, *graph.node, *back]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in tensors.items())
    (result,) = [value for value in graph.output if value.name == lstm_output]
    result.name = "logits"
    result.type.tensor_type.ClearField("shape")  # the head changes the last axis
    return lstm_graph


def _prepare_ort_step(case: ModelCase) -> StepRunner:
    from .streaming import onnx_step_model

    workload = case.workload
    if workload.num_layers != 1:
        raise Unavailable("the one-frame ONNX graph is written for a 1-layer LSTM")
    graph = onnx_model_graph(case, onnx_step_model(case.lstm), "x", "y")
    session = ort_session(graph)
    first = "frame" if workload.input_linear else "x"
    hidden = workload.hidden_size

    def fresh_feeds() -> dict[str, np.ndarray]:
        zeros = {name: np.zeros((1, 1, hidden), np.float32) for name in ("h0", "c0")}
        return {first: case.x.reshape(1, 1, -1), **zeros}

    outputs = ["logits", "h1", "c1"]

    def check() -> np.ndarray:
        feeds = fresh_feeds()
        for _ in range(CHECK_STEPS):
            y, feeds["h0"], feeds["c0"] = session.run(outputs, feeds)
        return np.asarray(y).reshape(workload.output_size)

    return StepRunner(
        check=check,
        statement="y, feeds['h0'], feeds['c0'] = run(outputs, feeds)",
        namespace={"run": session.run, "outputs": outputs, "feeds": fresh_feeds()},
        call="session.run per frame (the model's one-frame graph, state fed back)",
    )


def step_engines() -> list[ModelEngine]:
    """The model stream without and with out= (the ratios are against the latter), the bare
    LSTM's step and C++ loop, then the peers with 1 thread."""
    return [
        ModelEngine("pyrnn", "pyrnn", _prepare_model_step(out=False)),
        ModelEngine("pyrnn-out", "pyrnn", _prepare_model_step(out=True)),
        ModelEngine("lstm-out", "pyrnn", _prepare_lstm_step, reference="lstm"),
        ModelEngine("lstm-c++", "pyrnn", _prepare_lstm_cpp, reference="lstm"),
        ModelEngine("torch-1t", "torch", _prepare_torch_frame(cell=True)),
        ModelEngine("torch-lstm-1t", "torch", _prepare_torch_frame(cell=False)),
        ModelEngine("ort-1t", "onnxruntime", _prepare_ort_step),
    ]


# -- whole sequence -------------------------------------------------------------------------------
def _prepare_model_sequence(case: ModelCase) -> Runner:
    return Runner(run=lambda: case.model(case.x))


def _prepare_lstm_sequence(case: ModelCase) -> Runner:
    return Runner(run=lambda: case.lstm(case.x)[0])


def _prepare_torch_sequence(case: ModelCase) -> Runner:
    torch = _import_torch()
    tensor = torch.from_numpy(case.x)
    network = case.torch_model

    def run() -> np.ndarray:
        with torch.inference_mode():  # cheap inside the context; makes run() safe alone
            output: np.ndarray = network(tensor).numpy()
            return output

    return Runner(run=run, context=_torch_context(1))


def _prepare_ort_sequence(case: ModelCase) -> Runner:
    try:
        from pyrnn.onnx_export import to_onnx

        lstm_graph = to_onnx(case.lstm, initial_state=False)
    except ImportError as error:
        raise Unavailable(f"onnx is not installed ({error})") from None
    session = ort_session(onnx_model_graph(case, lstm_graph, "input", "output"))
    feeds = {"frame" if case.workload.input_linear else "input": case.x}
    return Runner(run=lambda: session.run(["logits"], feeds)[0])


def sequence_engines() -> list[ModelEngine]:
    """model(x) (the ratios are against it), the LSTM alone, then the peers with 1 thread."""
    return [
        ModelEngine("pyrnn", "pyrnn", _prepare_model_sequence, call="model(x)"),
        ModelEngine(
            "lstm", "pyrnn", _prepare_lstm_sequence, reference="lstm", call="the bare LSTM: lstm(x)"
        ),
        ModelEngine(
            "torch-1t", "torch", _prepare_torch_sequence, call="torch model, inference_mode"
        ),
        ModelEngine(
            "ort-1t",
            "onnxruntime",
            _prepare_ort_sequence,
            call="session.run (to_onnx's LSTM graph + the head)",
        ),
    ]


# -- running a workload ----------------------------------------------------------------------------
def _prepared_step(
    engine: ModelEngine, case: ModelCase, references: dict[str, np.ndarray]
) -> tuple[dict[str, Any], StepRunner | None]:
    result: dict[str, Any] = {"engine": engine.name, "library": engine.library}
    try:
        runner: StepRunner = engine.prepare(case)
        output = runner.check()
    except Unavailable as unavailable:
        return {**result, "status": "unavailable", "reason": str(unavailable)}, None
    except Exception as failure:  # an engine failing must not sink the rest of the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    result.update(threads=runner.threads, call=runner.call)
    status, result["max_abs_err"], reason = _verify(output, references[engine.reference])
    if status != "ok":
        return {**result, "status": status, "reason": reason}, None
    return {**result, "status": "ok"}, runner


def _cost_of_the_graph(results: list[dict[str, Any]], model: str, lstm: str) -> dict[str, Any]:
    """The model's time against the bare LSTM's: their ratio and the difference per frame."""
    ok = {r["engine"]: r for r in results if r["status"] == "ok"}
    if model not in ok or lstm not in ok:
        return {"status": "not measured", "model_engine": model, "lstm_engine": lstm}
    model_us, lstm_us = ok[model]["us_per_step"], ok[lstm]["us_per_step"]
    return {
        "status": "ok",
        "model_engine": model,
        "lstm_engine": lstm,
        "model_us": model_us,
        "lstm_us": lstm_us,
        "ratio": model_us / lstm_us,
        "extra_us": model_us - lstm_us,
    }


def _ratios(results: list[dict[str, Any]], base: str, key: str) -> None:
    ok = {r["engine"]: r for r in results if r["status"] == "ok"}
    if base in ok:
        for result in ok.values():
            result[key] = result["us_per_step"] / ok[base]["us_per_step"]


def _run_stream(
    workload: ModelWorkload, case: ModelCase, options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    references = {
        "model": model_stream_reference(case),
        "lstm": scalar_stream_reference(case.lstm, case.x),
    }
    prepared = []
    for engine in step_engines():
        progress(f"{workload.name}: preparing and verifying {engine.name}")
        prepared.append(_prepared_step(engine, case, references))
    budget, repeats = stream_seconds(options), options.effective_repeats
    progress(f"{workload.name}: timing the verified engines, interleaved")
    time_prepared_steps(prepared, budget, repeats)
    results = [result for result, _ in prepared]
    _ratios(results, "pyrnn-out", "ratio_vs_model")
    return {
        "timing": {
            "seconds_per_engine": budget,
            "loops": repeats,
            "statistic": "best loop",
        },
        "tolerance": {"atol": ATOL, "rtol": RTOL, "steps_checked": CHECK_STEPS},
        "results": results,
        "vs_lstm": _cost_of_the_graph(results, "pyrnn-out", "lstm-out"),
    }


def _bound(prepare: Callable[[ModelCase], Runner], case: ModelCase) -> Callable[..., Runner]:
    """`prepare` as an Engine's prepare(module, x), which runner.prepare_engine calls: the case
    holds the model and the input, so both arguments are ignored."""

    def bound(module: Module, x: np.ndarray) -> Runner:
        return prepare(case)

    return bound


def _run_sequence(
    workload: ModelWorkload, case: ModelCase, options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    references = {
        "model": model_sequence_reference(case),
        "lstm": scalar_reference(case.lstm, case.x),
    }
    prepared = []
    for engine in sequence_engines():
        progress(f"{workload.name}: preparing and verifying {engine.name}")
        adapter = Engine(engine.name, engine.library, _bound(engine.prepare, case))
        result, runner = prepare_engine(adapter, case.lstm, case.x, references[engine.reference])
        prepared.append(({**result, "call": engine.call}, runner))
    repeats, steps = options.effective_repeats, case.x.shape[0]
    progress(f"{workload.name}: timing the verified engines, interleaved")
    time_prepared(prepared, repeats, options.warmup, lambda times: call_summary(times, steps))
    results = [result for result, _ in prepared]
    _ratios(results, "pyrnn", "ratio_vs_model")
    return {
        "timing": {"repeats": repeats, "warmup": options.warmup, "statistic": "median call"},
        "tolerance": {"atol": SEQUENCE_ATOL, "rtol": SEQUENCE_RTOL},
        "results": results,
        "vs_lstm": _cost_of_the_graph(results, "pyrnn", "lstm"),
    }


def run_model_workload(
    workload: ModelWorkload, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """Every engine's time per frame on `workload`, each output verified first. `machine` is
    unused (the models have no hardware bound here); it keeps the runner signature."""
    steps = options.steps(workload.steps) if workload.mode == "sequence" else None
    names = [e.name for e in (step_engines() if workload.mode == "stream" else sequence_engines())]
    described = asdict(workload)
    if steps is None:
        del described["steps"]  # a stream has no sequence length
    else:
        described["steps"] = steps
    entry: dict[str, Any] = {
        "name": workload.name,
        "category": workload.category,
        "label": workload.label,
        "mode": workload.mode,
        "description": workload.describe(steps),
        "workload": described,
        "flops_per_step": workload.flops_per_step(),
    }
    progress(f"{workload.name}: building the torch model and converting it")
    try:
        case = model_case(workload, options.seed, steps)
    except Unavailable as unavailable:
        reason = f"{unavailable}; the model is built and converted with torch"
        results = [{"engine": name, "status": "unavailable", "reason": reason} for name in names]
        return {**entry, "results": results, "vs_lstm": {"status": "not measured"}}
    run = _run_stream if workload.mode == "stream" else _run_sequence
    return {**entry, **run(workload, case, options, progress)}
