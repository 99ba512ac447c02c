"""pyrnn.from_onnx: ONNX graphs of recurrent models run by pyrnn, checked against onnx's own
backend test cases (expected outputs computed by numpy), onnx's reference evaluator, ONNX
Runtime and torch; what cannot be converted, and hostile files, give errors naming the problem.

Tolerance: |pyrnn - ref| <= ATOL + RTOL * |ref|. Every engine computes in float32 with the same
equations, so only summation order and activation rounding differ (observed <= 1e-6 at these
sizes); a wrong gate order, a misplaced bias or a missing reverse is off by 1e-2 or more.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.case.node import collect_testcases
from onnx.reference import ReferenceEvaluator

import pyrnn

ATOL, RTOL = 2e-5, 1e-4


def close(actual: Any, expected: Any) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected, dtype=np.float32)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def as_tuple(result: Any) -> tuple[Any, ...]:
    return result if isinstance(result, tuple) else (result,)


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, feeds))


def ort_runs(model: onnx.ModelProto) -> bool:
    """ONNX Runtime's CPU recurrent kernels refuse layout=1 (batch-major)."""
    return not any(
        attr.name == "layout" and attr.i == 1
        for node in model.graph.node
        for attr in node.attribute
    )


def reference_runs(model: onnx.ModelProto) -> bool:
    """onnx's reference RNN knows only Tanh."""
    return not any(
        node.op_type == "RNN"
        and any(a.name == "activations" and set(a.strings) != {b"Tanh"} for a in node.attribute)
        for node in model.graph.node
    )


def engines(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[list[np.ndarray]]:
    """The outputs of onnx's reference evaluator and of ORT, where each runs the model."""
    results = []
    if reference_runs(model):
        results.append(list(ReferenceEvaluator(model).run(None, feeds)))
    if ort_runs(model):
        results.append(ort_run(model, feeds))
    return results


def check_against_engines(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """pyrnn's outputs equal ORT's and the reference evaluator's."""
    converted = pyrnn.from_onnx(model)
    ours = as_tuple(converted(*feeds.values()))
    for theirs in engines(model, feeds):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            close(a, b)


# -- onnx's own backend cases ----------------------------------------------------------------------
def _backend_cases() -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return [
        case
        for case in cases
        if {node.op_type for node in case.model.graph.node} & {"LSTM", "GRU", "RNN"}
    ]


BACKEND_CASES = {case.name: case for case in _backend_cases()}


def test_backend_cases_are_collected() -> None:
    """The harness itself can fail: onnx ships cases of each recurrent op."""
    ops = {node.op_type for case in BACKEND_CASES.values() for node in case.model.graph.node}
    assert {"LSTM", "GRU", "RNN"} <= ops
    assert len(BACKEND_CASES) >= 15


def with_constant_weights(model: onnx.ModelProto, inputs: list[np.ndarray]) -> onnx.ModelProto:
    """The case's model with every input but X made an initializer of the case's data: pyrnn
    packs weights at import, so they must be constants."""
    baked = onnx.ModelProto()
    baked.CopyFrom(model)
    keep = [value for value in baked.graph.input if value.name == "X"]
    for value, array in zip(model.graph.input, inputs, strict=True):
        if value.name != "X":
            baked.graph.initializer.append(numpy_helper.from_array(array, value.name))
    del baked.graph.input[:]
    baked.graph.input.extend(keep)
    return baked


@pytest.mark.parametrize("name", sorted(BACKEND_CASES))
def test_backend_case(name: str, isa: str) -> None:
    case = BACKEND_CASES[name]
    for inputs, expected in case.data_sets:
        model = with_constant_weights(case.model, inputs)
        x = inputs[[value.name for value in case.model.graph.input].index("X")]
        ours = as_tuple(pyrnn.from_onnx(model)(x))
        assert len(ours) == len(expected)
        for a, b in zip(ours, expected, strict=True):
            close(a, b)
        for theirs in engines(model, {"X": x}):
            for a, b in zip(ours, theirs, strict=True):
                close(a, b)


# -- hand-built recurrent nodes --------------------------------------------------------------------
def recurrent_model(
    op: str,
    *,
    hidden: int = 5,
    features: int = 3,
    direction: str = "forward",
    layout: int = 0,
    bias: bool = True,
    initial: str | None = None,
    outputs: tuple[str, ...] = ("Y", "Y_h", "Y_c"),
    lengths: np.ndarray | None = None,
    steps: int | str = "T",
    seed: int = 0,
    **attrs: Any,
) -> onnx.ModelProto:
    """One ONNX recurrent node with random weights. initial: None, 'const' or 'input'."""
    rng = np.random.default_rng(seed)
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    dirs = 2 if direction == "bidirectional" else 1
    inits = [
        numpy_helper.from_array(
            rng.uniform(-0.6, 0.6, (dirs, gates * hidden, features)).astype(np.float32), "W"
        ),
        numpy_helper.from_array(
            rng.uniform(-0.6, 0.6, (dirs, gates * hidden, hidden)).astype(np.float32), "R"
        ),
    ]
    names = ["X", "W", "R", ""]
    if bias:
        b = rng.uniform(-0.5, 0.5, (dirs, 2 * gates * hidden)).astype(np.float32)
        inits.append(numpy_helper.from_array(b, "B"))
        names[3] = "B"
    names.append("")
    if lengths is not None:
        inits.append(numpy_helper.from_array(lengths.astype(np.int32), "L"))
        names[4] = "L"
    x_shape: list[Any] = ["N", steps, features] if layout else [steps, "N", features]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    state_shape: list[Any] = ["N", dirs, hidden] if layout else [dirs, "N", hidden]
    state_names = ["initial_h"] + (["initial_c"] if op == "LSTM" else [])
    if initial == "input":
        names += state_names
        graph_inputs += [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in state_names
        ]
    elif initial == "const":
        fixed = [2, dirs, hidden] if layout else [dirs, 2, hidden]
        for n in state_names:
            inits.append(numpy_helper.from_array(rng.uniform(-1, 1, fixed).astype(np.float32), n))
        names += state_names
    while names and names[-1] == "":
        names.pop()
    wanted = [o if o in outputs else "" for o in ["Y", "Y_h", "Y_c"][: 3 if op == "LSTM" else 2]]
    while wanted and wanted[-1] == "":
        wanted.pop()
    node = helper.make_node(
        op, names, wanted, hidden_size=hidden, direction=direction, layout=layout, **attrs
    )
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in wanted if o]
    graph = helper.make_graph([node], "rnn", graph_inputs, graph_outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 14)])


def feeds_for(model: onnx.ModelProto, batch: int = 2, steps: int = 6, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        dims = [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
        shape = [batch if d == "N" else steps if d == "T" else d for d in dims]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_every_direction_and_layout(op: str, direction: str, layout: int, isa: str) -> None:
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    model = recurrent_model(op, direction=direction, layout=layout, initial="input", **extra)
    check_against_engines(model, feeds_for(model))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize(
    "options",
    [
        {"bias": False},
        {"initial": "const"},
        {"outputs": ("Y",)},
        {"outputs": ("Y_h",)},
        {"outputs": ("Y_c",)},
        {"outputs": ("Y_h", "Y_c"), "direction": "bidirectional", "layout": 1},
        {"hidden": 17, "features": 9},
        {"lengths": np.array([6, 6]), "steps": 6},
        {"activations": ["Relu"]},
    ],
    ids=str,
)
def test_recurrent_options(op: str, options: dict[str, Any]) -> None:
    options = dict(options)
    if options.get("outputs") == ("Y_c",) and op != "LSTM":
        options["outputs"] = ("Y_h",)
    if "activations" in options and op != "RNN":
        del options["activations"]
    if op == "GRU":
        options["linear_before_reset"] = 1
    model = recurrent_model(op, **options)
    check_against_engines(model, feeds_for(model, batch=2, steps=6))


# -- ONNX's cell variants: a generated grid ------------------------------------------------
# Each function with the alpha/beta it takes (None: takes none), values away from the defaults.
FUNCTIONS = {
    "Sigmoid": (None, None),
    "Tanh": (None, None),
    "Relu": (None, None),
    "Affine": (0.7, 0.2),
    "LeakyRelu": (0.3, None),
    "ThresholdedRelu": (0.4, None),
    "ScaledTanh": (1.3, 0.8),
    "HardSigmoid": (0.3, 0.45),
    "Elu": (0.6, None),
    "Softsign": (None, None),
    "Softplus": (None, None),
}
GATES_PER_OP = {"LSTM": 3, "GRU": 2, "RNN": 1}


def grid_cases(count: int = 60, seed: int = 20261202) -> list[dict[str, Any]]:
    """A seeded sample of the attribute space the backend cases leave out: activations with
    alpha/beta (and without, taking the defaults), clip, input_forget, peepholes,
    linear_before_reset 0 and 1, every direction, missing bias, awkward sizes."""
    rng = np.random.default_rng(seed)
    cases = []
    names = sorted(FUNCTIONS)
    for index in range(count):
        op = ["LSTM", "GRU", "RNN"][index % 3]
        functions = [names[int(i)] for i in rng.integers(0, len(names), GATES_PER_OP[op])]
        case: dict[str, Any] = {
            "op": op,
            "direction": ["forward", "reverse", "bidirectional"][int(rng.integers(0, 3))],
            "hidden": [1, 3, 7, 16, 17][int(rng.integers(0, 5))],
            "bias": bool(rng.integers(0, 4)),
            "initial": [None, "input"][int(rng.integers(0, 2))],
        }
        if rng.integers(0, 3):
            case["activations"] = functions
            if rng.integers(0, 2):  # explicit alpha/beta, else each function's default
                case["alpha"] = [FUNCTIONS[f][0] for f in functions if FUNCTIONS[f][0] is not None]
                case["beta"] = [FUNCTIONS[f][1] for f in functions if FUNCTIONS[f][1] is not None]
        if rng.integers(0, 2):
            case["clip"] = float(rng.choice([0.5, 1.5, 3.0]))
        if op == "LSTM":
            case["input_forget"] = int(rng.integers(0, 2))
            case["peepholes"] = bool(rng.integers(0, 2))
        if op == "GRU":
            case["linear_before_reset"] = int(rng.integers(0, 2))
        cases.append(case)
    return cases


def grid_model(case: dict[str, Any]) -> onnx.ModelProto:
    op, dirs = case["op"], 2 if case["direction"] == "bidirectional" else 1
    attrs: dict[str, Any] = {}
    if "activations" in case:
        attrs["activations"] = case["activations"] * dirs
        if case.get("alpha"):
            attrs["activation_alpha"] = case["alpha"] * dirs
        if case.get("beta"):
            attrs["activation_beta"] = case["beta"] * dirs
    for key in ("clip", "input_forget", "linear_before_reset"):
        if key in case:
            attrs[key] = case[key]
    model = recurrent_model(
        op,
        hidden=case["hidden"],
        features=5,
        direction=case["direction"],
        bias=case["bias"],
        initial=case["initial"],
        seed=len(str(case)),
        **attrs,
    )
    if case.get("peepholes"):
        rng = np.random.default_rng(7)
        p = rng.uniform(-0.5, 0.5, (dirs, 3 * case["hidden"])).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(p, "P"))
        node = model.graph.node[0]
        names = list(node.input) + [""] * (8 - len(node.input))
        names[7] = "P"
        del node.input[:]
        node.input.extend(names)
    return model


GRID = grid_cases()


def test_grid_covers_every_variant() -> None:
    """The harness itself can fail: the sample reaches every function and option."""
    used = {f for case in GRID for f in case.get("activations", [])}
    assert used == set(FUNCTIONS)
    for key in ("clip", "alpha"):
        assert any(key in case for case in GRID)
    assert any(case.get("input_forget") for case in GRID)
    assert any(case.get("peepholes") for case in GRID)
    assert {case.get("linear_before_reset") for case in GRID} >= {0, 1}
    assert {case["direction"] for case in GRID} == {"forward", "reverse", "bidirectional"}


@pytest.mark.parametrize("index", range(len(GRID)))
def test_cell_variant_grid_matches_ort(index: int, isa: str) -> None:
    """Against ONNX Runtime, which implements every attribute (onnx's reference evaluator
    ignores clip, activations and input_forget, so it checks only the cases without them)."""
    case = GRID[index]
    model = grid_model(case)
    feeds = feeds_for(model, batch=3, steps=5, seed=index)
    ours = as_tuple(pyrnn.from_onnx(model)(*feeds.values()))
    engines_used = [ort_run(model, feeds)]
    if not ({"activations", "clip"} & set(case) or case.get("input_forget")):
        engines_used.append(list(ReferenceEvaluator(model).run(None, feeds)))
    for theirs in engines_used:
        for a, b in zip(ours, theirs, strict=True):
            close(a, b)


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_cell_variants_with_layout_1_match_the_reference(op: str, isa: str) -> None:
    """layout=1 with bidirectional and ONNX defaults (GRU linear_before_reset=0, LSTM
    peepholes) against onnx's reference evaluator (ORT refuses layout=1)."""
    model = recurrent_model(op, direction="bidirectional", layout=1, initial="input")
    if op == "LSTM":
        p = np.random.default_rng(3).uniform(-0.5, 0.5, (2, 15)).astype(np.float32)
        model.graph.initializer.append(numpy_helper.from_array(p, "P"))
        model.graph.node[0].input.append("P")
    check_against_engines(model, feeds_for(model))


def test_pytorch_gru_is_linear_before_reset_1() -> None:
    """The GRU semantics pyrnn shares with PyTorch is ONNX's linear_before_reset=1: imported, it
    runs PyTorch's kernels; ONNX's default (0) runs the general ones."""
    torch_like = pyrnn.from_onnx(recurrent_model("GRU", linear_before_reset=1))
    (rnn,) = [node for node in torch_like.graph.nodes if node.op == "rnn"]
    assert "linear_before_reset" not in rnn.attrs
    onnx_default = pyrnn.from_onnx(recurrent_model("GRU"))
    (rnn,) = [node for node in onnx_default.graph.nodes if node.op == "rnn"]
    assert rnn.attrs["linear_before_reset"] is False


def _without_lengths(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its node's sequence_lens dropped (onnx's reference evaluator ignores it)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    node = copy.graph.node[0]
    node.input[4] = ""
    kept = [tensor for tensor in copy.graph.initializer if tensor.name != "L"]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    return copy


def reference_with_lengths(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], lengths: np.ndarray, layout: int
) -> list[np.ndarray]:
    """ONNX's sequence_lens semantics built from onnx's reference evaluator, one row at a time:
    row n alone over its first lengths[n] steps gives its Y there (zero after) and its Y_h/Y_c."""
    evaluator = ReferenceEvaluator(_without_lengths(model))
    batch_axis = {"X": 1 - layout, "initial_h": 1 - layout, "initial_c": 1 - layout}
    rows = []
    for n, length in enumerate(lengths):
        row_feeds = {}
        for name, value in feeds.items():
            part = np.take(value, [n], axis=batch_axis[name])
            if name == "X":
                part = part[:, :length] if layout else part[:length]
            row_feeds[name] = part
        rows.append(evaluator.run(None, row_feeds))
    steps = feeds["X"].shape[layout]
    results = []
    for index, first in enumerate(rows[0]):
        if index == 0:  # Y: (T, D, N, H) or (N, T, D, H), zero past each row's length
            shape = list(first.shape)
            shape[layout] = steps
            shape[0 if layout else 2] = len(lengths)
            y = np.zeros(shape, np.float32)
            for n, (length, row) in enumerate(zip(lengths, rows, strict=True)):
                if layout:
                    y[n, :length] = row[0][0]
                else:
                    y[:length, :, n] = row[0][:, :, 0]
            results.append(y)
        else:  # Y_h, Y_c: (D, N, H) or (N, D, H)
            results.append(np.concatenate([row[index] for row in rows], axis=0 if layout else 1))
    return results


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
def test_sequence_lens_run_each_row_to_its_own_length(
    op: str, direction: str, layout: int, isa: str
) -> None:
    """Unsorted lengths including 1 and the full length: Y zero past each row's end, Y_h/Y_c
    each row's state at its own last step, reverse starting at each row's own end; against
    onnx's reference evaluator row by row, and ONNX Runtime (layout 0: its CPU kernels refuse
    layout 1)."""
    extra = {"linear_before_reset": 1} if op == "GRU" else {}
    for lengths in (np.array([4, 1, 6]), np.array([1]), np.array([2, 2, 1, 6, 5])):
        model = recurrent_model(
            op, direction=direction, layout=layout, initial="input", lengths=lengths, **extra
        )
        feeds = feeds_for(model, batch=len(lengths), steps=6)
        ours = as_tuple(pyrnn.from_onnx(model)(*feeds.values()))
        expected = [reference_with_lengths(model, feeds, lengths, layout)]
        if ort_runs(model):
            expected.append(ort_run(model, feeds))
        for theirs in expected:
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs, strict=True):
                close(a, b)


def test_sequence_lens_outputs_past_a_row_end_are_zero() -> None:
    model = recurrent_model("GRU", lengths=np.array([2, 6]), linear_before_reset=1)
    y, y_h = pyrnn.from_onnx(model)(*feeds_for(model, batch=2, steps=6).values())
    assert np.all(y[2:, :, 0] == 0.0) and np.all(y[:2, :, 0] != 0.0)
    np.testing.assert_array_equal(y_h[:, 0], y[1, :, 0])  # row 0's state at its step 1


def test_sequence_lens_bad_or_computed_are_refused() -> None:
    with pytest.raises(
        pyrnn.ConversionError,
        match=r"\(LSTM\): sequence_lens\[1\]: expected a length in \[1, 6\], got 7",
    ):
        pyrnn.from_onnx(recurrent_model("LSTM", lengths=np.array([6, 7]), steps=6))
    with pytest.raises(
        pyrnn.ConversionError, match=r"sequence_lens\[0\]: expected a length in \[1, 6\], got 0"
    ):
        pyrnn.from_onnx(recurrent_model("LSTM", lengths=np.array([0, 6]), steps=6))
    floats = recurrent_model("LSTM", lengths=np.array([6, 6]), steps=6)
    (index,) = [i for i, t in enumerate(floats.graph.initializer) if t.name == "L"]
    floats.graph.initializer[index].CopyFrom(numpy_helper.from_array(np.full(2, 6.0), "L"))
    with pytest.raises(
        pyrnn.ConversionError, match=r"sequence_lens: expected a 1-D int tensor, got float64"
    ):
        pyrnn.from_onnx(floats)
    # Lengths fed at run time: model graphs take float32 inputs only, and the rnn op constant
    # lengths only; both refusals name the problem.
    for dtype, message in (
        (TensorProto.INT32, "graph input 'lens': expected float32"),
        (TensorProto.FLOAT, "sequence_lens: lengths computed at run time are not supported"),
    ):
        lengths_input = recurrent_model("LSTM")
        lengths_input.graph.node[0].input[4:5] = ["lens"]
        lengths_input.graph.input.append(helper.make_tensor_value_info("lens", dtype, ["N"]))
        with pytest.raises(pyrnn.ConversionError, match=message):
            pyrnn.from_onnx(lengths_input)


def test_sequence_lens_with_a_free_sequence_length_are_checked_at_run(tmp_path: Path) -> None:
    """A constant sequence_lens on a free T: every T at least the longest length runs, with
    the lengths' batch size; the model saves and loads (its shapes probed within those)."""
    model = recurrent_model("LSTM", direction="reverse", lengths=np.array([6, 3]))
    converted = pyrnn.from_onnx(model)
    pyrnn.save(converted, tmp_path / "lengths.pyrnn")
    loaded = pyrnn.load(tmp_path / "lengths.pyrnn")
    for steps in (6, 9):
        feeds = feeds_for(model, batch=2, steps=steps)
        expected = ort_run(model, feeds)
        for runner in (converted, loaded):
            for a, b in zip(as_tuple(runner(*feeds.values())), expected, strict=True):
                close(a, b)
    with pytest.raises(
        ValueError, match=r"^X: dim 0 is 5; the converted model holds for at least 6"
    ):
        converted(feeds_for(model, batch=2, steps=5)["X"])
    with pytest.raises(
        ValueError, match=r"^X: expected shape \(\*, 2, 3\) \(\* = any\), got \(6, 3, 3\)"
    ):
        converted(feeds_for(model, batch=3, steps=6)["X"])
    stream_refused = r"^this model cannot stream: node 0 \(rnn; .*\): rows of their own lengths"
    with pytest.raises(ValueError, match=stream_refused + r" \(ONNX's sequence_lens\) need the"):
        converted.stream(batch=2)


# -- models exported from torch -------------------------------------------------------------------
class Head(torch.nn.Module):
    def __init__(self, kind: str, **options: Any) -> None:
        super().__init__()
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
        self.rnn = cls(5, 8, batch_first=True, **options)
        width = 16 if options.get("bidirectional") else 8
        self.fc = torch.nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state
        return torch.log_softmax(self.fc(y), dim=-1), h


EXPORTED = [
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu"}),
    ("lstm", {"num_layers": 2, "bidirectional": True}),
    ("gru", {"bidirectional": True}),
]


def export(module: torch.nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch, steps = torch.export.Dim("batch"), torch.export.Dim("steps")
            torch.onnx.export(
                module,
                (x,),
                str(path),
                input_names=["x"],
                dynamic_shapes=({0: batch, 1: steps},),
                dynamo=True,
                verbose=False,
            )
        else:
            torch.onnx.export(
                module,
                (x,),
                str(path),
                input_names=["x"],
                dynamic_axes={"x": {0: "batch", 1: "steps"}},
                dynamo=False,
            )


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize(("kind", "options"), EXPORTED, ids=str)
def test_torch_exports_match_torch_and_ort(
    kind: str, options: dict[str, Any], dynamo: bool, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    module = Head(kind, **options).eval()
    path = tmp_path / "model.onnx"
    export(module, torch.randn(2, 7, 5), path, dynamo)
    converted = pyrnn.from_onnx(path)
    # Other batch and length than the export's example: those dims stay free. (The dynamo
    # exporter unrolls an nn.RNN over the example's steps, and fixes the steps of an LSTM traced
    # a second time in one process: there the length is the example's.)
    steps = converted.inputs[0]["shape"][1] or 11
    x = torch.randn(3, steps, 5)
    with torch.no_grad():
        expected = module(x)
    ours = converted(x.numpy())
    for a, b in zip(ours, expected, strict=True):
        close(a, b.numpy())
    for a, b in zip(ours, ort_run(onnx.load(path), {"x": x.numpy()}), strict=True):
        close(a, b)


def test_converted_model_saves_and_runs_without_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Head("lstm").eval()
    export(module, torch.randn(2, 7, 5), tmp_path / "m.onnx", dynamo=False)
    converted = pyrnn.from_onnx(tmp_path / "m.onnx")
    pyrnn.save(converted, tmp_path / "m.pyrnn")
    x = np.random.default_rng(0).standard_normal((2, 9, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = converted(x)
    np.save(tmp_path / "y.npy", expected[0])
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "onnx", "onnxruntime"):
            sys.modules[name] = None
        import numpy as np, pyrnn
        model = pyrnn.load({str(tmp_path / "m.pyrnn")!r})
        y = model(np.load({str(tmp_path / "x.npy")!r}))[0]
        assert np.array_equal(y, np.load({str(tmp_path / "y.npy")!r}))
        print("ok", sorted(m for m in ("onnx", "torch") if sys.modules.get(m) is not None))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "[]"]


def test_import_pyrnn_does_not_import_onnx(tmp_path: Path) -> None:
    script = "import sys, pyrnn; print('onnx' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.stdout.strip() == "False", result.stderr


def test_imported_causal_model_streams(tmp_path: Path, isa: str) -> None:
    torch.manual_seed(0)
    module = Head("lstm").eval()
    export(module, torch.randn(2, 7, 5), tmp_path / "m.onnx", dynamo=False)
    converted = pyrnn.from_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((1, 9, 5)).astype(np.float32)
    whole = converted(x)
    stream = converted.stream(batch=1)
    for t in range(9):
        y, h = stream.step(x[:, t])
        close(y, whole[0][:, t])
    close(h, whole[1])  # Y_h: the state after the last frame


# -- state inputs and outputs as the stream's state ----------------------------------------------
class Stateful(torch.nn.Module):
    """A recurrent layer exported for streaming: (x, h0[, c0]) -> (y, hn[, cn])."""

    def __init__(self, kind: str, **options: Any) -> None:
        super().__init__()
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
        self.rnn = cls(3, 6, **options)

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(state) == 2:
            y, (h, c) = self.rnn(x, state)
            return y, h, c
        y, h = self.rnn(x, state[0])
        return y, h


def export_stateful(kind: str, path: Path, **options: Any) -> tuple[onnx.ModelProto, list[str]]:
    """torch.onnx.export of Stateful with free steps and batch; its state input names."""
    torch.manual_seed(0)
    module = Stateful(kind, **options).eval()
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
    names = ["h0", "c0"] if kind == "lstm" else ["h0"]
    example = (torch.randn(4, 2, 3), *[torch.randn(layers, 2, 6) for _ in names])
    outputs = ["y", "hn", "cn"][: 1 + len(names)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=["x", *names],
            output_names=outputs,
            dynamic_axes={"x": {0: "T", 1: "N"}, **{n: {1: "N"} for n in names}},
            dynamo=False,
        )
    return onnx.load(path), names


def ort_steps(
    proto: onnx.ModelProto, x: np.ndarray, state: list[np.ndarray]
) -> list[list[np.ndarray]]:
    """ONNX Runtime run one frame at a time, each run's final state fed back as the next run's
    initial state: how a streaming graph runs on ORT."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [value.name for value in proto.graph.input]
    results = []
    for t in range(x.shape[0]):
        outs = session.run(None, dict(zip(names, [x[t : t + 1], *state], strict=True)))
        state = list(outs[1:])
        results.append(outs)
    return results


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_exported_state_inputs_become_the_stream_state(
    kind: str, layers: int, tmp_path: Path, isa: str
) -> None:
    proto, names = export_stateful(kind, tmp_path / "m.onnx", num_layers=layers)
    model = pyrnn.from_onnx(proto)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 2, 3)).astype(np.float32)
    state = [rng.standard_normal((layers, 2, 6)).astype(np.float32) for _ in names]
    # The whole sequence: every input and output as the graph says.
    whole = model(x, *state)
    for ours, theirs in zip(
        whole, ort_run(proto, dict(zip(["x", *names], [x, *state], strict=True))), strict=True
    ):
        close(ours, theirs)

    stream = model.stream(batch=2)
    assert sorted(stream.state) == sorted(names)
    for value in stream.state.values():
        assert value.shape == (layers, 2, 6) and not value.any()  # zeros, as ONNX's default
    stream.state = dict(zip(names, state, strict=True))
    for t, expected in enumerate(ort_steps(proto, x, state)):
        outs = stream.step(x[t])  # only x: the state inputs are the stream's state
        assert len(outs) == len(expected)
        close(outs[0], expected[0][0])
        for ours, theirs in zip(outs[1:], expected[1:], strict=True):
            close(ours, theirs)  # hn (cn): the state after this frame
        close(outs[0], whole[0][t])
    for name, final in zip(names, whole[1:], strict=True):
        close(stream.state[name], final)

    # feed in uneven chunks equals the whole sequence
    fed = model.stream(batch=2)
    fed.state = dict(zip(names, state, strict=True))
    ys = []
    for a, b in [(0, 2), (2, 3), (3, 9)]:
        outs = fed.feed(x[a:b])
        ys.append(outs[0])
    close(np.concatenate(ys), whole[0])
    for ours, final in zip(outs[1:], whole[1:], strict=True):
        close(ours, final)

    # From zeros, unbatched: the first row of the model run with zero initial states.
    zeros = [np.zeros_like(s) for s in state]
    expected = model(x, *zeros)
    single = model.stream()
    for t in range(9):
        outs = single.step(x[t, 0])
        close(outs[0], expected[0][t, 0])
    close(single.state[names[0]], expected[1][:, :1])


def test_bidirectional_state_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    proto, _ = export_stateful("lstm", tmp_path / "m.onnx", bidirectional=True)
    model = pyrnn.from_onnx(proto)
    x = np.zeros((5, 2, 3), np.float32)
    assert len(model(x, *[np.zeros((2, 2, 6), np.float32)] * 2)) == 3
    with pytest.raises(ValueError, match=r"cannot stream.*bidirectional"):
        model.stream(batch=2)


def layout1_graph(extra_outputs: bool = False) -> onnx.ModelProto:
    """A hand-written streaming graph: LSTM with layout=1, its state inputs (N, H) unsqueezed
    into initial_h/initial_c and Y_h/Y_c squeezed (through an Identity) into the outputs."""
    rng = np.random.default_rng(7)
    hidden, features = 4, 3
    inits = [
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (1, 16, features)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (1, 16, hidden)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (1, 32)).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["h", "axis1"], ["h3"]),
        helper.make_node("Identity", ["c"], ["c_id"]),
        helper.make_node("Unsqueeze", ["c_id", "axis1"], ["c3"]),
        helper.make_node(
            "LSTM",
            ["x", "W", "R", "B", "", "h3", "c3"],
            ["Y", "Y_h", "Y_c"],
            hidden_size=hidden,
            layout=1,
        ),
        helper.make_node("Squeeze", ["Y", "axis2"], ["y"]),
        helper.make_node("Squeeze", ["Y_h", "axis1"], ["h_out"]),
        helper.make_node("Identity", ["Y_c"], ["Y_c_id"]),
        helper.make_node("Squeeze", ["Y_c_id", "axis1"], ["c_out"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", features]),
        helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", hidden]),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", hidden]),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in ("y", "h_out", "c_out")
    ]
    graph = helper.make_graph(nodes, "stream", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 14)])


def test_hand_written_layout_1_graph_streams_through_unit_axis_ops(isa: str) -> None:
    proto = layout1_graph()
    model = pyrnn.from_onnx(proto)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 8, 3)).astype(np.float32)
    h, c = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    whole = model(x, h, c)
    for ours, theirs in zip(
        whole, ReferenceEvaluator(proto).run(None, {"x": x, "h": h, "c": c}), strict=True
    ):
        close(ours, theirs)
    stream = model.stream(batch=3)
    assert {k: v.shape for k, v in stream.state.items()} == {"h": (3, 4), "c": (3, 4)}
    with pytest.raises(ValueError, match=r"state\['h'\]: expected shape \(3, 4\), got \(2, 4\)"):
        stream.state = {"h": h[:2], "c": c}
    with pytest.raises(ValueError, match="exactly the keys"):
        stream.state = {"h": h}
    stream.state = {"h": h, "c": c}
    twin = stream.clone()
    close(twin.step(x[:, 0])[1], model(x[:, :1], h, c)[1])  # the clone starts from h, c
    state = (h, c)
    for t in range(8):
        y, h_t, c_t = stream.step(x[:, t])
        # the whole model run on one frame, its final state fed back
        y_ref, *state = model(x[:, t : t + 1], *state)
        close(y, y_ref[:, 0])
        close(h_t, state[0])
        close(c_t, state[1])
        close(y, whole[0][:, t])
    close(stream.state["h"], whole[1])
    close(stream.state["c"], whole[2])


def _two_node_graph(shared: bool) -> onnx.ModelProto:
    """Two stacked GRU nodes; shared: both take their initial_h from the one input h0."""
    rng = np.random.default_rng(2)
    inits = []
    nodes = []
    source = "x"
    for k in range(2):
        features = 3 if k == 0 else 4
        inits += [
            numpy_helper.from_array(
                rng.uniform(-0.5, 0.5, (1, 12, features)).astype(np.float32), f"W{k}"
            ),
            numpy_helper.from_array(rng.uniform(-0.5, 0.5, (1, 12, 4)).astype(np.float32), f"R{k}"),
        ]
        state = "h0" if shared or k == 0 else "h0b"
        nodes += [
            helper.make_node(
                "GRU", [source, f"W{k}", f"R{k}", "", "", state], [f"Y{k}", f"hn{k}"], hidden_size=4
            ),
        ]
        inits.append(numpy_helper.from_array(np.array([1], np.int64), f"ax{k}"))
        nodes.append(helper.make_node("Squeeze", [f"Y{k}", f"ax{k}"], [f"y{k}"]))
        source = f"y{k}"
    names = ["h0"] if shared else ["h0", "h0b"]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", 3])] + [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "N", 4]) for n in names
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "hn0", "hn1")
    ]
    graph = helper.make_graph(nodes, "two", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 14)])


def test_ambiguous_state_inputs_refuse_to_stream_naming_the_input() -> None:
    # Two separate state inputs, one per node: streams.
    model = pyrnn.from_onnx(_two_node_graph(shared=False))
    assert sorted(model.stream(batch=2).state) == ["h0", "h0b"]
    # One input as the initial state of two nodes: which final state would it carry?
    model = pyrnn.from_onnx(_two_node_graph(shared=True))
    x, h0 = np.zeros((3, 2, 3), np.float32), np.ones((1, 2, 4), np.float32)
    assert len(model(x, h0)) == 3  # the whole sequence runs as the graph says
    with pytest.raises(ValueError, match=r"'h0'.*more than one recurrent node"):
        model.stream(batch=2)
    # The final state not a graph output.
    model = pyrnn.from_onnx(recurrent_model("LSTM", initial="input", outputs=("Y",)))
    with pytest.raises(ValueError, match=r"'initial_h'.*no graph output returns"):
        model.stream(batch=2)
    # The final state output in another layout than the input: feeding it back would be wrong.
    proto = recurrent_model("GRU", initial="input", outputs=("Y", "Y_h"))
    proto.graph.node.append(helper.make_node("Transpose", ["Y_h"], ["Y_h_t"], perm=[1, 0, 2]))
    proto.graph.output[1].name = "Y_h_t"
    with pytest.raises(ValueError, match=r"'initial_h'.*no graph output returns"):
        pyrnn.from_onnx(proto).stream(batch=2)
    # The state input also used for something else.
    proto = recurrent_model("GRU", initial="input", outputs=("Y", "Y_h"))
    proto.graph.node.append(helper.make_node("Relu", ["initial_h"], ["h_relu"]))
    proto.graph.output.append(helper.make_tensor_value_info("h_relu", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match=r"'initial_h'.*also used by node .*relu"):
        pyrnn.from_onnx(proto).stream(batch=2)
    # Computed from the input rather than moved: not a state the stream could carry.
    proto = recurrent_model("GRU", initial="input", outputs=("Y", "Y_h"))
    proto.graph.input[1].name = "h_in"
    proto.graph.node.insert(0, helper.make_node("Neg", ["h_in"], ["initial_h"]))
    with pytest.raises(ValueError, match="cannot stream"):
        pyrnn.from_onnx(proto).stream(batch=2)
    # Only part of the input reaches the node: the rest would be dropped from the state.
    proto = recurrent_model("GRU", initial="input", outputs=("Y", "Y_h"))
    proto.graph.input[1].name = "h_big"
    proto.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 2
    for name, value in (("s0", 0), ("s1", 1)):
        proto.graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    proto.graph.node.insert(
        0, helper.make_node("Slice", ["h_big", "s0", "s1", "s0"], ["initial_h"])
    )
    with pytest.raises(ValueError, match=r"'h_big'.*reach no recurrent initial state"):
        pyrnn.from_onnx(proto).stream(batch=2)
    # A stream of one row: the state input's batch dim is 1.
    model = pyrnn.from_onnx(recurrent_model("GRU", initial="input", outputs=("Y", "Y_h")))
    assert model.stream(batch=1).state["initial_h"].shape == (1, 1, 5)


def folded_streaming_graph(features: int, hidden: int) -> onnx.ModelProto:
    """x -> MatMul (folded into the LSTM's input weights) -> LSTM taking initial_h/initial_c
    from the inputs h, c -> MatMul head; outputs y and the final state (Y_h, Y_c)."""
    rng = np.random.default_rng(4)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-0.4, 0.4, shape).astype(np.float32)

    inits = [
        numpy_helper.from_array(uniform(features, hidden), "W_in"),
        numpy_helper.from_array(uniform(1, 4 * hidden, hidden), "W"),
        numpy_helper.from_array(uniform(1, 4 * hidden, hidden), "R"),
        numpy_helper.from_array(uniform(1, 8 * hidden), "B"),
        numpy_helper.from_array(uniform(hidden, hidden), "W_out"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W_in"], ["x_in"]),
        helper.make_node(
            "LSTM", ["x_in", "W", "R", "B", "", "h", "c"], ["Y", "Y_h", "Y_c"], hidden_size=hidden
        ),
        helper.make_node("Squeeze", ["Y", "axis"], ["Y3"]),
        helper.make_node("MatMul", ["Y3", "W_out"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", features]),
        helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, "N", hidden]),
        helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, "N", hidden]),
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("y", "Y_h", "Y_c")
    ]
    graph = helper.make_graph(nodes, "streaming", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 14)])


@pytest.mark.parametrize("weights", ["fp32", "fp16", "int8"])
def test_state_input_stream_runs_on_the_models_weights_and_outlives_them(
    weights: str, isa: str
) -> None:
    """The stream runs the graph without its state inputs on the model's own copies and
    packed weights: they read back bit-exactly there, and stay alive while the stream does."""
    from pyrnn.graph_passes import fold_linear_into_recurrent
    from pyrnn.model_stream import _cached_plan

    proto = folded_streaming_graph(5, 20)

    def make() -> pyrnn.Model:
        model = pyrnn.from_onnx(proto)
        return model if weights == "fp32" else pyrnn.quantize(model, weights)

    model, reference = make(), make()
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 2, 5)).astype(np.float32)
    h, c = (rng.standard_normal((1, 2, 20)).astype(np.float32) for _ in range(2))
    stream = model.stream(batch=2)
    stateless = _cached_plan(model)
    assert stateless is not None
    folded, derived = fold_linear_into_recurrent(model.graph, model._meta)
    assert bool(derived) == (weights == "fp32")  # the first MatMul folds into a float LSTM
    for name in folded.constants:
        ours, theirs = stateless.model._core.constant(name), model._core.constant(name)
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes(), name

    expected = reference.stream(batch=2)
    expected.state = stream.state = {"h": h, "c": c}
    for t in range(3):
        for ours, theirs in zip(stream.step(x[t]), expected.step(x[t]), strict=True):
            assert ours.tobytes() == theirs.tobytes()
    whole = reference(x, h, c)
    # New weights make a new core; a stream made before runs on the old ones, which only it
    # holds once the model's next stream has replaced the cached graph.
    changed = {
        k: v + 1 if v.dtype == np.float32 and v.ndim == 1 else v
        for k, v in model.state_dict().items()
    }
    model.load_state_dict(changed)
    assert not np.array_equal(model.stream(batch=2).step(x[0])[0], expected.step(x[0])[0])
    expected = reference.stream(batch=2)
    expected.state = stream.state
    del model, stateless
    gc.collect()
    for t in range(3, 6):
        outs = stream.step(x[t])
        for ours, theirs in zip(outs, expected.step(x[t]), strict=True):
            assert ours.tobytes() == theirs.tobytes()
        close(outs[0], whole[0][t])
    close(outs[1], whole[1])
    close(outs[2], whole[2])


def test_state_input_stream_saves_and_runs_without_onnx(tmp_path: Path) -> None:
    proto, names = export_stateful("lstm", tmp_path / "m.onnx")
    model = pyrnn.from_onnx(proto)
    pyrnn.save(model, tmp_path / "m.pyrnn")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    state = [rng.standard_normal((1, 2, 6)).astype(np.float32) for _ in names]
    expected = model(x, *state)
    np.savez(tmp_path / "d.npz", x=x, h0=state[0], c0=state[1], y=expected[0], hn=expected[1])
    script = textwrap.dedent(
        f"""
        import pickle, sys
        for name in ("torch", "onnx", "onnxruntime"):
            sys.modules[name] = None
        import numpy as np, pyrnn
        d = np.load({str(tmp_path / "d.npz")!r})
        stream = pyrnn.load({str(tmp_path / "m.pyrnn")!r}).stream(batch=2)
        stream.state = {{"h0": d["h0"], "c0": d["c0"]}}
        y0 = stream.step(d["x"][0])[0]
        stream = pickle.loads(pickle.dumps(stream))  # the state travels under the input names
        ys = [y0] + [stream.step(d["x"][t])[0] for t in range(1, 6)]
        assert np.abs(np.stack(ys) - d["y"]).max() < 1e-5
        assert np.abs(stream.state["h0"] - d["hn"]).max() < 1e-5
        print("ok", sorted(m for m in ("onnx", "torch") if sys.modules.get(m) is not None))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "[]"]


def test_reverse_direction_refuses_to_stream() -> None:
    model = pyrnn.from_onnx(recurrent_model("LSTM", direction="reverse", outputs=("Y",)))
    with pytest.raises(ValueError, match="cannot stream"):
        model.stream(batch=1)


# -- surrounding ops -------------------------------------------------------------------------------
def model_of(
    nodes: list[Any],
    inputs: list[Any],
    outputs: list[str],
    initializers: dict[str, np.ndarray],
    opset: int = 17,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", opset)])


def test_surrounding_ops_and_constant_folding() -> None:
    """A front end and head of every supported kind around an LSTM whose weights an
    initializer-only subgraph reshapes (folded at import)."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    init = {
        "conv_w": rng.standard_normal((6, 4, 3)).astype(f32),
        "conv_b": rng.standard_normal(6).astype(f32),
        "w_flat": rng.uniform(-0.5, 0.5, (1, 4 * 5 * 6)).astype(f32),
        "w_shape": np.array([1, 20, 6], np.int64),
        "r": rng.uniform(-0.5, 0.5, (1, 20, 5)).astype(f32),
        "gemm_b": rng.standard_normal((3, 5)).astype(f32),
        "gemm_c": rng.standard_normal(3).astype(f32),
        "mat": rng.standard_normal((5, 4)).astype(f32),
        "two": np.array(2.0, f32),
        "perm_in": np.array([2, 0, 1], np.int64),
        "axes0": np.array([0], np.int64),
        "starts": np.array([1], np.int64),
        "ends": np.array([np.iinfo(np.int64).max], np.int64),
        "axis2": np.array([2], np.int64),
        "idx": np.array([0, 2], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1]),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Transpose", ["cr"], ["seq"], perm=[2, 0, 1]),  # (L, N, 6)
        helper.make_node("Reshape", ["w_flat", "w_shape"], ["w"]),  # folded
        helper.make_node("LSTM", ["seq", "w", "r"], ["y", "h"], hidden_size=5),
        helper.make_node("Constant", [], ["one"], value_ints=[1]),
        helper.make_node("Squeeze", ["y", "one"], ["y3"]),  # (L, N, 5)
        helper.make_node("Shape", ["y3"], ["shape"]),
        helper.make_node("Gather", ["shape", "axes0"], ["length"]),
        helper.make_node("Dropout", ["y3"], ["yd"]),
        helper.make_node("Cast", ["yd"], ["yc"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["yc", "mat"], ["m"]),  # (L, N, 4)
        helper.make_node("Mul", ["m", "two"], ["m2"]),
        helper.make_node("Sigmoid", ["m2"], ["ms"]),
        helper.make_node("Slice", ["yc", "starts", "ends", "axes0"], ["ys"]),  # (L-1, N, 5)
        helper.make_node("Gather", ["ys", "idx"], ["yg"], axis=2),  # (L-1, N, 2)
        helper.make_node("Tanh", ["yg"], ["yt"]),
        helper.make_node("Sub", ["yt", "two"], ["yt2"]),
        helper.make_node("Div", ["yt2", "two"], ["yt3"]),
        helper.make_node("Concat", ["length", "minus1"], ["flat_shape"], axis=0),
        helper.make_node("Reshape", ["yc", "flat_shape"], ["flat"]),  # (L, N*5)
        helper.make_node("Softmax", ["flat"], ["sm"], axis=-1),
        helper.make_node("Unsqueeze", ["sm", "axis2"], ["smu"]),
        helper.make_node("Identity", ["h"], ["hid"]),
        helper.make_node("Squeeze", ["hid", "axes0"], ["h2"]),  # (N, 5)
        helper.make_node("Gemm", ["h2", "gemm_b", "gemm_c"], ["g"], transB=1, alpha=0.5),
        helper.make_node("LogSoftmax", ["g"], ["out"], axis=1),
        helper.make_node("Add", ["yt3", "yt3"], ["yadd"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "L"])
    model = model_of(nodes, [x], ["out", "ms", "smu", "yadd"], init)
    converted = pyrnn.from_onnx(model)
    assert all(node.op != "reshape" or node.inputs[0] != "w_flat" for node in converted.graph.nodes)
    for batch, length in ((2, 6), (1, 3)):
        feeds = {"x": rng.standard_normal((batch, 4, length)).astype(f32)}
        check_against_engines(model, feeds)


def test_softmax_before_opset_13_flattens_at_axis() -> None:
    """Against ORT only: onnx's reference evaluator applies opset 13's per-axis softmax at every
    opset."""
    rng = np.random.default_rng(0)
    for op in ("Softmax", "LogSoftmax"):
        nodes = [helper.make_node(op, ["x"], ["y"], axis=1)]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4])
        model = model_of(nodes, [x], ["y"], {}, opset=11)
        feeds = {"x": rng.standard_normal((2, 3, 4)).astype(np.float32)}
        close(pyrnn.from_onnx(model)(feeds["x"]), ort_run(model, feeds)[0])


# -- refusals --------------------------------------------------------------------------------------
def test_unsupported_op_is_named() -> None:
    nodes = [helper.make_node("Erf", ["x"], ["y"], name="the_erf")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    with pytest.raises(pyrnn.ConversionError, match=r"'the_erf' \(Erf\)"):
        pyrnn.from_onnx(model_of(nodes, [x], ["y"], {}))


def test_non_float_input_and_cast_are_refused() -> None:
    x = helper.make_tensor_value_info("tokens", TensorProto.INT64, ["N", 3])
    nodes = [helper.make_node("Identity", ["tokens"], ["y"])]
    with pytest.raises(pyrnn.ConversionError, match=r"'tokens'.*float32.*INT64"):
        pyrnn.from_onnx(model_of(nodes, [x], ["y"], {}))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT64, name="to_int")]
    with pytest.raises(pyrnn.ConversionError, match=r"'to_int' \(Cast\).*INT64"):
        pyrnn.from_onnx(model_of(nodes, [x], ["y"], {}))


def test_unsupported_recurrent_attributes_are_named() -> None:
    with pytest.raises(pyrnn.ConversionError, match=r"\(RNN\): activations: unknown.*'gelu'"):
        pyrnn.from_onnx(recurrent_model("RNN", activations=["Gelu"]))
    with pytest.raises(pyrnn.ConversionError, match=r"\(LSTM\): activations: the two"):
        pyrnn.from_onnx(
            recurrent_model(
                "LSTM",
                direction="bidirectional",
                activations=["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Relu"],
            )
        )
    with pytest.raises(pyrnn.ConversionError, match=r"\(LSTM\): clip"):
        pyrnn.from_onnx(recurrent_model("LSTM", clip=-1.0))


def test_computed_weights_are_refused() -> None:
    model = recurrent_model("RNN")
    model.graph.input.append(helper.make_tensor_value_info("R2", TensorProto.FLOAT, [1, 5, 5]))
    model.graph.node[0].input[2] = "R2"
    with pytest.raises(pyrnn.ConversionError, match=r"\(RNN\).*R: expected constant"):
        pyrnn.from_onnx(model)


# -- files -----------------------------------------------------------------------------------------
def test_external_data_loads(tmp_path: Path) -> None:
    model = recurrent_model("LSTM", hidden=32, features=16)
    feeds = feeds_for(model)
    expected = pyrnn.from_onnx(model)(*feeds.values())
    onnx.save_model(
        model,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").stat().st_size > 4 * 4 * 32 * 16
    loaded = pyrnn.from_onnx(str(tmp_path / "m.onnx"))(*feeds.values())
    for a, b in zip(loaded, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 10)  # truncated
    with pytest.raises((pyrnn.FormatError, pyrnn.ConversionError)):
        pyrnn.from_onnx(tmp_path / "m.onnx")


def test_hostile_files_give_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(pyrnn.FormatError, match=r"bad\.onnx"):
        pyrnn.from_onnx(path)
    good = recurrent_model("GRU", linear_before_reset=1).SerializeToString()
    for cut in (len(good) // 3, len(good) // 2, len(good) - 7):
        path.write_bytes(good[:cut])
        with pytest.raises((pyrnn.FormatError, pyrnn.ConversionError)):
            pyrnn.from_onnx(path)
    with pytest.raises(FileNotFoundError):
        pyrnn.from_onnx(tmp_path / "absent.onnx")


def test_malformed_graphs_give_errors() -> None:
    # A missing initializer: the node reads a value nothing defines.
    model = recurrent_model("LSTM")
    del model.graph.initializer[1]
    with pytest.raises(pyrnn.ConversionError, match="'R' is not defined"):
        pyrnn.from_onnx(model)
    # Shape contradictions: hidden_size against R; W against X's features.
    model = recurrent_model("LSTM")
    next(a for a in model.graph.node[0].attribute if a.name == "hidden_size").i = 4
    with pytest.raises(pyrnn.ConversionError, match=r"hidden|shape"):
        pyrnn.from_onnx(model)
    model = recurrent_model("LSTM")
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 4
    with pytest.raises(pyrnn.ConversionError, match="X"):
        pyrnn.from_onnx(model)
    # A huge constant asked for by a folded ConstantOfShape.
    nodes = [
        helper.make_node("ConstantOfShape", ["big"], ["z"]),
        helper.make_node("Add", ["x", "z"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    big = {"big": np.array([2**20, 2**20, 2**20], np.int64)}
    with pytest.raises(pyrnn.ConversionError, match="too large"):
        pyrnn.from_onnx(model_of(nodes, [x], ["y"], big))
    # Initializer raw data shorter than its dims.
    model = recurrent_model("RNN")
    model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:8]
    with pytest.raises((pyrnn.FormatError, pyrnn.ConversionError)):
        pyrnn.from_onnx(model)
    # An opset newer than onnx knows, and an operator domain pyrnn does not run.
    model = recurrent_model("RNN")
    model.opset_import[0].version = 999
    with pytest.raises(pyrnn.ConversionError, match="opset 999"):
        pyrnn.from_onnx(model)
    model = recurrent_model("RNN")
    model.graph.node[0].domain = "com.example"
    with pytest.raises(pyrnn.ConversionError, match=r"com\.example"):
        pyrnn.from_onnx(model)


def test_flip_op_reverses_an_axis() -> None:
    from pyrnn.graph import Graph, InputSpec, Node

    graph = Graph(
        [InputSpec("x", "float32", [None, 3])],
        {"tensor": "y"},
        [],
        [Node("flip", ["x"], ["y"], {"dim": 0})],
    )
    model = pyrnn.Model(graph, {})
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(model(x), x[::-1])
    np.testing.assert_array_equal(model(x[:0]), x[:0])


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_one_node_step_graph_with_state_inputs_streams(kind: str) -> None:
    """The benchmarks' one-node ONNX step graph (x, h0[, c0] -> y, h1[, c1]), its steps left
    free: its state inputs become the stream's state, as ORT's loop feeds them back."""
    from pyrnn.bench import onnx_step_model

    module = getattr(pyrnn, kind)(4, 8, seed=0)
    proto = onnx_step_model(module)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    model = pyrnn.from_onnx(proto)
    names = [value.name for value in proto.graph.input[1:]]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 1, 4)).astype(np.float32)
    state = [rng.standard_normal((1, 1, 8)).astype(np.float32) for _ in names]
    stream = model.stream()
    stream.state = dict(zip(names, state, strict=True))
    for t, expected in enumerate(ort_steps(proto, x, state)):
        outs = stream.step(x[t])  # x's batch dim is fixed at 1: frames keep it
        for ours, theirs in zip(outs, expected, strict=True):
            close(ours, theirs.reshape(ours.shape))
