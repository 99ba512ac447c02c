"""pyrnn.onnx_export.to_onnx: ONNX Runtime (and onnx's reference evaluator) running the exported
graph must reproduce pyrnn for every sequence kind, 1-2 layers, both directions, with and without
bias, batch 1 and 3, batch_first or not, with given or default initial state.

Tolerance: |ort - pyrnn| <= 1e-5 absolute. Both compute in float32 with the same equations, so
only summation order differs (observed <= 3e-7 at these sizes); a wrong gate order or a misplaced
bias is off by 1e-2 or more.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import pyrnn
from pyrnn.onnx_export import GATE_ORDER, to_onnx

ATOL = 1e-5
INPUT, HIDDEN, STEPS = 5, 7, 4  # odd sizes so that a transposed or mis-split weight cannot line up


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest):
    previous = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    yield request.param
    pyrnn.set_isa(previous)


KINDS = [
    ("lstm", {}),
    ("gru", {}),
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
]
CLASSES = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU, "rnn": pyrnn.RNN}


def make_case(kind, extra, layers, bidirectional, bias, batch, batch_first, seed=0):
    module = CLASSES[kind](
        INPUT,
        HIDDEN,
        num_layers=layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
        seed=seed,
        **extra,
    )
    rng = np.random.default_rng(seed + 1)
    shape = (batch, STEPS, INPUT) if batch_first else (STEPS, batch, INPUT)
    x = rng.standard_normal(shape, dtype=np.float32)
    states = layers * (2 if bidirectional else 1)
    h0 = rng.standard_normal((states, batch, HIDDEN), dtype=np.float32)
    c0 = rng.standard_normal((states, batch, HIDDEN), dtype=np.float32)
    return module, x, h0, c0


def pyrnn_outputs(module, kind, x, h0, c0, with_state):
    if kind == "lstm":
        out, (hn, cn) = module(x, (h0, c0) if with_state else None)
        return [out, hn, cn]
    out, hn = module(x, h0 if with_state else None)
    return [out, hn]


def feeds(kind, x, h0, c0, with_state):
    result = {"input": x}
    if with_state:
        result["h0"] = h0
        if kind == "lstm":
            result["c0"] = c0
    return result


def _case_id(kind, extra, layers, bidirectional, bias, batch):
    parts = [kind, *extra.values(), f"L{layers}", "bi" if bidirectional else "uni"]
    parts += ["bias" if bias else "nobias", f"N{batch}"]
    return "-".join(parts)


GRID = [
    pytest.param(*case, id=_case_id(*case))
    for kind, extra in KINDS
    for layers in (1, 2)
    for bidirectional in (False, True)
    for bias in (True, False)
    for batch in (1, 3)
    for case in [(kind, extra, layers, bidirectional, bias, batch)]
]


@pytest.mark.parametrize(("kind", "extra", "layers", "bidirectional", "bias", "batch"), GRID)
@pytest.mark.parametrize("batch_first", [False, True], ids=["tnf", "batch_first"])
@pytest.mark.parametrize("with_state", [True, False], ids=["h0", "no_h0"])
def test_onnxruntime_matches_pyrnn(
    isa, kind, extra, layers, bidirectional, bias, batch, batch_first, with_state
):
    module, x, h0, c0 = make_case(kind, extra, layers, bidirectional, bias, batch, batch_first)
    expected = pyrnn_outputs(module, kind, x, h0, c0, with_state)
    model = to_onnx(module, initial_state=with_state)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds(kind, x, h0, c0, with_state))
    names = ["output", "h_n", "c_n"][: len(expected)]  # c_n for LSTMs only
    assert [o.name for o in session.get_outputs()] == names
    # strict: every output is compared, the final states included (a graph without h_n or c_n
    # fails here instead of being zipped away)
    for name, value, reference in zip(names, got, expected, strict=True):
        assert value.shape == reference.shape, name
        np.testing.assert_allclose(value, reference, rtol=0, atol=ATOL, err_msg=name)


# onnx's reference evaluator implements the RNN operator's Tanh-style activations but not Relu
# (a limitation of onnx, not of the exported graph), so relu RNNs are not generated for it; the
# ONNX Runtime test above runs every relu case, which is what checks the exported Relu.
REFERENCE_GRID = [param for param in GRID if param.values[1].get("nonlinearity") != "relu"]


@pytest.mark.parametrize(
    ("kind", "extra", "layers", "bidirectional", "bias", "batch"), REFERENCE_GRID
)
def test_reference_evaluator_matches_pyrnn(kind, extra, layers, bidirectional, bias, batch):
    # The second, independent ONNX implementation: catches a graph ORT happens to accept.
    module, x, h0, c0 = make_case(kind, extra, layers, bidirectional, bias, batch, False)
    expected = pyrnn_outputs(module, kind, x, h0, c0, True)
    got = ReferenceEvaluator(to_onnx(module)).run(None, feeds(kind, x, h0, c0, True))
    names = ["output", "h_n", "c_n"][: len(expected)]
    for name, value, reference in zip(names, got, expected, strict=True):
        assert value.shape == reference.shape, name
        np.testing.assert_allclose(value, reference, rtol=0, atol=ATOL, err_msg=name)


def test_dynamic_lengths_and_batch():
    """One exported graph serves any T and N (they are symbolic dimensions)."""
    module = pyrnn.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=True, seed=3)
    session = ort.InferenceSession(
        to_onnx(module, initial_state=False).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    rng = np.random.default_rng(0)
    for steps, batch in [(1, 1), (9, 2), (3, 5)]:
        x = rng.standard_normal((steps, batch, INPUT), dtype=np.float32)
        out, hn = session.run(None, {"input": x})
        ref_out, ref_hn = module(x)
        np.testing.assert_allclose(out, ref_out, rtol=0, atol=ATOL)
        np.testing.assert_allclose(hn, ref_hn, rtol=0, atol=ATOL)


def test_gate_order_is_a_permutation_matching_onnx_names():
    # ONNX LSTM (i, o, f, c) from PyTorch (i, f, g, o); GRU (z, r, h) from (r, z, n).
    torch_lstm, torch_gru = "ifgo", "rzn"
    assert "".join(torch_lstm[k] for k in GATE_ORDER["lstm"]) == "iofg"
    assert "".join(torch_gru[k] for k in GATE_ORDER["gru"]) == "zrn"


def test_writes_a_loadable_file(tmp_path):
    module = pyrnn.LSTM(INPUT, HIDDEN, seed=0)
    path = tmp_path / "lstm.onnx"
    model = to_onnx(module, path)
    assert onnx.load(str(path)).SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize("spell", [str, os.fsencode], ids=["str", "bytes"])
def test_path_is_a_file_name_as_pyrnn_save_takes(tmp_path, spell):
    module = pyrnn.GRU(INPUT, HIDDEN, seed=0)
    model = to_onnx(module, spell(tmp_path / "gru.onnx"))
    assert (tmp_path / "gru.onnx").read_bytes() == model.SerializeToString()
    # open() would take an int as a file descriptor and write into whatever it is.
    with pytest.raises(TypeError, match=r"path: expected a str, bytes or os\.PathLike"):
        to_onnx(module, 1)  # type: ignore[arg-type]


def test_quantized_modules_are_refused_clearly():
    module = pyrnn.quantize(pyrnn.GRU(3, 4), "fp16")
    with pytest.raises(ValueError, match=r"stored as fp16 \(pyrnn.quantize\); ONNX export"):
        to_onnx(module)


def test_proj_size_is_refused_clearly():
    with pytest.raises(ValueError, match=r"proj_size=3 .*no projection"):
        to_onnx(pyrnn.LSTM(INPUT, HIDDEN, proj_size=3))


@pytest.mark.parametrize("cell", [pyrnn.RNNCell, pyrnn.LSTMCell, pyrnn.GRUCell])
def test_cells_are_refused_clearly(cell):
    with pytest.raises(TypeError, match=r"module: expected a pyrnn RNN, LSTM or GRU, got the cell"):
        to_onnx(cell(INPUT, HIDDEN))


def test_non_modules_are_refused_clearly():
    with pytest.raises(TypeError, match=r"module: expected a pyrnn RNN, LSTM or GRU, got dict"):
        to_onnx({})  # type: ignore[arg-type]


def test_import_pyrnn_does_not_import_onnx(tmp_path):
    code = (
        "import sys, pyrnn, pyrnn.onnx_export, pyrnn.bench, pyrnn.cli\n"
        "loaded = [m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
