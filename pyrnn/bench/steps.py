"""A model streamed one step per call from Python, on pyrnn (s.step(x) and s.step(x, out=y)),
on torch's RNNCell/LSTMCell/GRUCell (1 thread, inference_mode) and on an ONNX Runtime session
run once per step over a one-node graph (1 intra-op thread). A stacked model has no single
cell: torch runs its nn.RNN/LSTM/GRU on one step per call and ONNX Runtime its to_onnx graph,
the state fed back either way. Every engine's output after a few steps is checked against
pyrnn's scalar path before it is timed.

Timing: each engine's call is a statement run by timeit in a loop (no wrapper function, so no
engine pays for an extra Python frame); loops of all engines alternate round-robin so that load
from other processes falls on every engine alike; the best loop's mean is kept, since noise on
a shared machine only ever adds time.
"""

from __future__ import annotations

import contextlib
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._base import Module
from .engines import Unavailable, float32_weights, import_torch, pyrnn_threads, torch_module

__all__ = [
    "ATOL",
    "CHECK_STEPS",
    "RTOL",
    "StepEngine",
    "StepRunner",
    "import_onnxruntime",
    "onnx_step_model",
    "step_engines",
    "torch_cell",
]

# One step engine must match pyrnn's scalar path within ATOL + RTOL*|ref| after CHECK_STEPS steps.
# The engines differ only in summation order and activation approximations over a few steps
# (observed gaps ~1e-7); a wrong gate order or a dropped bias is off by 1e-2 or more.
ATOL, RTOL = 1e-5, 1e-4
CHECK_STEPS = 3


@dataclass
class StepRunner:
    """`statement` is one step, timed by timeit with `namespace` as globals after `setup`;
    `loop`, when given, replaces timeit: loop(n) returns the seconds of n steps.
    check() returns the output after CHECK_STEPS steps of the input x from zero state."""

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


@dataclass(frozen=True)
class _Shape:
    """What the step engines need of a module, read from its public config."""

    kind: str  # "rnn", "lstm" or "gru", for sequences and cells alike
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int
    proj_size: int
    bias: bool
    nonlinearity: str
    bidirectional: bool


def _shape(module: Module) -> _Shape:
    config = module.config
    proj_size = config.get("proj_size", 0)
    return _Shape(
        kind=config["kind"].removesuffix("_cell"),
        input_size=config["input_size"],
        hidden_size=config["hidden_size"],
        output_size=proj_size or config["hidden_size"],
        num_layers=config.get("num_layers", 1),
        proj_size=proj_size,
        bias=config.get("bias", True),
        nonlinearity=config.get("nonlinearity", "tanh"),
        bidirectional=config.get("bidirectional", False),
    )


def _one_layer_weights(module: Module) -> dict[str, np.ndarray]:
    """The weights of a 1-layer module or a cell, keyed as a cell's (weight_ih, ...)."""
    return {key.removesuffix("_l0"): value for key, value in module.state_dict().items()}


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
        y = np.empty(_shape(module).output_size, np.float32)
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


# -- PyTorch ------------------------------------------------------------------------------------
def torch_cell(module: Module) -> Any:
    """The torch.nn RNNCell/LSTMCell/GRUCell with the weights of a 1-layer `module` (or a cell),
    in eval mode."""
    torch = import_torch()
    float32_weights(module, "torch")
    shape = _shape(module)
    if shape.num_layers != 1 or shape.proj_size or shape.bidirectional:
        raise Unavailable(f"no torch cell for {module!r}")
    arguments: dict[str, Any] = {"bias": shape.bias}
    if shape.kind == "rnn":
        arguments["nonlinearity"] = shape.nonlinearity
    cells = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
    cell = cells[shape.kind](shape.input_size, shape.hidden_size, **arguments)
    weights = _one_layer_weights(module)
    cell.load_state_dict({key: torch.from_numpy(value) for key, value in weights.items()})
    return cell.eval()


def _torch_one_thread(torch: Any) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    @contextlib.contextmanager
    def context() -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():  # entered once around a loop, not per step
                yield
        finally:
            torch.set_num_threads(previous)

    return context


def _single_layer(module: Module) -> bool:
    """Whether `module` is one cell's worth of weights: a cell, or 1 layer without projection."""
    shape = _shape(module)
    return shape.num_layers == 1 and not shape.proj_size and not shape.bidirectional


def _prepare_torch(module: Module, x: np.ndarray) -> StepRunner:
    if not _single_layer(module):
        return _prepare_torch_stacked(module, x)
    torch = import_torch()
    cell = torch_cell(module)
    shape = _shape(module)
    lstm = shape.kind == "lstm"
    xt = torch.from_numpy(x[None].copy())
    zeros = torch.zeros(1, shape.hidden_size)
    initial: Any = (zeros, zeros.clone()) if lstm else zeros
    context = _torch_one_thread(torch)

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


def _prepare_torch_stacked(module: Module, x: np.ndarray) -> StepRunner:
    """A stacked (or projecting) module has no single torch cell: its torch.nn module is called
    on one step at a time, the state it returns passed back in, as a caller streams with it."""
    torch = import_torch()
    network = torch_module(module)
    xt = torch.from_numpy(x.reshape(1, 1, -1).copy())  # one step of one row, either layout
    context = _torch_one_thread(torch)

    def check() -> np.ndarray:
        with context():
            state = None
            for _ in range(CHECK_STEPS):
                y, state = network(xt, state)
        return np.asarray(y.reshape(-1).numpy())

    return StepRunner(
        check=check,
        statement="y, state = network(x, state)",
        namespace={"network": network, "x": xt},
        setup="state = None",
        context=context,
        call=f"nn.{type(network).__name__} per step (state passed back), inference_mode",
    )


# -- ONNX Runtime -------------------------------------------------------------------------------
def onnx_step_model(module: Module) -> Any:
    """The smallest ONNX graph of one step of a 1-layer RNN/LSTM/GRU (or a cell): a single
    operator node over x (1, 1, I) with h0 (and c0) as inputs and h1 (and c1) as outputs, so
    that ORT's per-run cost is its own, not that of the Slice/Squeeze/Concat nodes a general
    export adds."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as error:
        raise Unavailable(f"onnx is not installed ({error})") from None
    from ..onnx_export import _IR_VERSION, ONNX_OPSET, _reorder_gates

    float32_weights(module, "onnxruntime")
    shape = _shape(module)
    if shape.num_layers != 1 or shape.proj_size or shape.bidirectional:
        raise Unavailable(f"no one-node ONNX step graph for {module!r}")
    kind, size = shape.kind, shape.hidden_size
    weights = _one_layer_weights(module)
    tensors = {
        "W": _reorder_gates(weights["weight_ih"], kind)[None],
        "R": _reorder_gates(weights["weight_hh"], kind)[None],
    }
    if shape.bias:
        tensors["B"] = np.concatenate(
            [_reorder_gates(weights["bias_ih"], kind), _reorder_gates(weights["bias_hh"], kind)]
        )[None]
    states = ["h0", "c0"] if kind == "lstm" else ["h0"]
    inputs = ["x", "W", "R", "B" if shape.bias else "", "", *states]
    outputs = ["y", "h1", "c1"] if kind == "lstm" else ["y", "h1"]
    attributes: dict[str, Any] = {"hidden_size": size}
    if kind == "gru":
        attributes["linear_before_reset"] = 1  # PyTorch's GRU
    if kind == "rnn":
        attributes["activations"] = [shape.nonlinearity.capitalize()]
    node = helper.make_node(kind.upper(), inputs, outputs, **attributes)
    graph = helper.make_graph(
        [node],
        f"{kind}_step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, shape.input_size])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, size]) for name in states],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        [numpy_helper.from_array(value, name) for name, value in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = _IR_VERSION
    return model


def ort_session(model: Any) -> Any:
    """An ONNX Runtime session of `model` on 1 intra-op thread, sequential execution."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise Unavailable(f"onnxruntime is not installed ({error})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _prepare_ort(module: Module, x: np.ndarray) -> StepRunner:
    if not _single_layer(module):
        return _prepare_ort_stacked(module, x)
    import_onnxruntime()
    session = ort_session(onnx_step_model(module))
    shape = _shape(module)
    size = shape.hidden_size
    lstm = shape.kind == "lstm"
    states, outputs = (["h0", "c0"], ["h1", "c1"]) if lstm else (["h0"], ["h1"])

    def fresh_feeds() -> dict[str, np.ndarray]:
        zeros = {name: np.zeros((1, 1, size), np.float32) for name in states}
        return {"x": x.reshape(1, 1, -1), **zeros}

    def check() -> np.ndarray:
        feeds = fresh_feeds()
        for _ in range(CHECK_STEPS):
            feeds.update(zip(states, session.run(outputs, feeds), strict=True))
        return feeds["h0"].reshape(size)

    fed_back = ", ".join(f"feeds[{name!r}]" for name in states)
    return StepRunner(
        check=check,
        statement=f"{fed_back}, = run(outputs, feeds)",
        namespace={"run": session.run, "outputs": outputs, "feeds": fresh_feeds()},
        call="session.run per step (one-node graph, state fed back)",
    )


def _prepare_ort_stacked(module: Module, x: np.ndarray) -> StepRunner:
    """A stacked module's graph (pyrnn.onnx_export.to_onnx, with initial-state inputs) run on
    one step at a time, its final state fed back as the next step's initial state."""
    import_onnxruntime()  # before onnx: the missing runtime is what the report names
    try:
        from ..onnx_export import to_onnx

        model = to_onnx(module, initial_state=True)
    except ImportError as error:
        raise Unavailable(f"onnx is not installed ({error})") from None
    except ValueError as error:  # e.g. a projection, which ONNX's LSTM lacks
        raise Unavailable(str(error)) from None
    session = ort_session(model)
    shape = _shape(module)
    lstm = shape.kind == "lstm"
    states, outputs = (["h0", "c0"], ["h_n", "c_n"]) if lstm else (["h0"], ["h_n"])
    rows = shape.num_layers * (2 if shape.bidirectional else 1)

    def fresh_feeds() -> dict[str, np.ndarray]:
        zeros = {name: np.zeros((rows, 1, shape.hidden_size), np.float32) for name in states}
        return {"input": x.reshape(1, 1, -1), **zeros}

    def check() -> np.ndarray:
        feeds = fresh_feeds()
        for _ in range(CHECK_STEPS):
            y, *fed_back = session.run(["output", *outputs], feeds)
            feeds.update(zip(states, fed_back, strict=True))
        return np.asarray(y).reshape(-1)

    fed_back = ", ".join(f"feeds[{name!r}]" for name in states)
    return StepRunner(
        check=check,
        statement=f"y, {fed_back} = run(outputs, feeds)",
        namespace={"run": session.run, "outputs": ["output", *outputs], "feeds": fresh_feeds()},
        call="session.run per step (to_onnx graph, state fed back)",
    )


def import_onnxruntime() -> Any:
    """The onnxruntime module; Unavailable if it is not installed."""
    try:
        import onnxruntime
    except ImportError as error:
        raise Unavailable(f"onnxruntime is not installed ({error})") from None
    return onnxruntime


def step_engines() -> list[StepEngine]:
    """pyrnn's step without and with out= (the ratios are against the latter), the latter again
    on 1 thread, then the peers with 1 thread. pyrnn runs at its default thread count except
    where the name says 1t (a small model's step stays on the calling thread either way)."""
    return [
        StepEngine("pyrnn", "pyrnn", _prepare_pyrnn(out=False)),
        StepEngine("pyrnn-out", "pyrnn", _prepare_pyrnn(out=True)),
        StepEngine("pyrnn-out-1t", "pyrnn", _prepare_pyrnn(out=True, threads=1)),
        StepEngine("torch-1t", "torch", _prepare_torch),
        StepEngine("ort-1t", "onnxruntime", _prepare_ort),
    ]
