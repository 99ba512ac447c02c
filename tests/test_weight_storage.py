"""A module holds its weight matrices once, in the kernels' packed layout: state_dict(),
attributes, pickles and files read them back bit-exactly, and building or loading a module
takes about its weight bytes of memory, never the packed and the PyTorch layout together."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import pyrnn
from pyrnn import _core

OUTSIDE = tempfile.gettempdir()

# (name, factory): every module type with the options that change the packed shapes; odd and
# size-1 dimensions leave partly padded panels (16 hidden units per block).
MODULES: list[tuple[str, Callable[[], pyrnn.Module]]] = [
    ("rnn_tanh", lambda: pyrnn.RNN(3, 17, seed=1)),
    ("rnn_relu_2layers_bidir", lambda: pyrnn.RNN(5, 9, 2, "relu", bidirectional=True, seed=2)),
    ("rnn_size1_nobias", lambda: pyrnn.RNN(1, 1, bias=False, seed=3)),
    ("lstm", lambda: pyrnn.LSTM(7, 33, seed=4)),
    ("lstm_proj_2layers_bidir", lambda: pyrnn.LSTM(4, 19, 2, bidirectional=True, proj_size=5)),
    ("lstm_proj1_nobias", lambda: pyrnn.LSTM(1, 3, bias=False, proj_size=1, seed=5)),
    ("gru", lambda: pyrnn.GRU(6, 15, seed=6)),
    ("gru_2layers_bidir_nobias", lambda: pyrnn.GRU(2, 31, 2, bias=False, bidirectional=True)),
    ("rnn_cell", lambda: pyrnn.RNNCell(3, 17, seed=7)),
    ("rnn_cell_relu_nobias", lambda: pyrnn.RNNCell(1, 1, bias=False, nonlinearity="relu")),
    ("lstm_cell", lambda: pyrnn.LSTMCell(5, 21, seed=8)),
    ("gru_cell_nobias", lambda: pyrnn.GRUCell(9, 1, bias=False, seed=9)),
]
DTYPES = ["fp32", "fp16", "bf16", "int8"]


def _make(factory: Callable[[], pyrnn.Module], dtype: str) -> pyrnn.Module:
    module = factory()
    return module if dtype == "fp32" else pyrnn.quantize(module, dtype)


def _bits(array: np.ndarray) -> np.ndarray:
    """The raw bytes of an array, so that NaN payloads and -0.0 compare too."""
    return np.ascontiguousarray(array).view(np.uint8)


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert np.array_equal(_bits(got[key]), _bits(value)), key


def _flat(result: object) -> list[np.ndarray]:
    """A module's outputs (an array, or nested pairs of them) as a flat list."""
    if isinstance(result, tuple):
        return [array for part in result for array in _flat(part)]
    assert isinstance(result, np.ndarray)
    return [result]


def _sample_input(module: pyrnn.Module) -> np.ndarray:
    spec = module._spec
    rng = np.random.default_rng(0)
    shape = (2, spec.input_size) if spec.is_cell else (4, 2, spec.input_size)
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "factory"), MODULES, ids=[name for name, _ in MODULES])
def test_file_round_trip_is_bit_exact(
    isa: str,
    name: str,
    factory: Callable[[], pyrnn.Module],
    dtype: str,
    tmp_path: Path,
) -> None:
    module = _make(factory, dtype)
    original = module.state_dict()
    path = tmp_path / "module.safetensors"
    pyrnn.save(module, path)
    loaded = pyrnn.load(path)
    _assert_same(loaded.state_dict(), original)
    _assert_same(module.state_dict(), original)  # reading back changes nothing
    for key, value in original.items():
        attribute = getattr(loaded, key)
        assert not attribute.flags.writeable
        assert np.array_equal(_bits(attribute), _bits(value)), key
    # The packed copy is the one the kernels run: a module built afresh from the read-back
    # weights computes exactly the same.
    rebuilt = type(module)._from_state_dict(module._spec, original)
    x = _sample_input(module)
    for a, b in zip(_flat(loaded(x)), _flat(rebuilt(x)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("name", "factory"), MODULES, ids=[name for name, _ in MODULES])
def test_any_float32_bit_pattern_survives_packing(
    isa: str, name: str, factory: Callable[[], pyrnn.Module]
) -> None:
    """Packing is a permutation plus padding: NaN payloads, -0.0 and subnormals come back."""
    module = factory()
    rng = np.random.default_rng(11)
    weights = {
        key: rng.integers(0, 2**32, size=value.shape, dtype=np.uint32).view(np.float32)
        for key, value in module.state_dict().items()
    }
    module.load_state_dict(weights)
    _assert_same(module.state_dict(), weights)
    _assert_same(pickle.loads(pickle.dumps(module)).state_dict(), weights)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pickle_and_partial_load_repack(dtype: str) -> None:
    module = _make(lambda: pyrnn.LSTM(3, 18, 2, proj_size=4, seed=0), dtype)
    original = module.state_dict()
    _assert_same(pickle.loads(pickle.dumps(module)).state_dict(), original)
    # A partial, non-strict load repacks the given weight and keeps every other one.
    replacement = np.full(original["weight_hh_l1"].shape, 0.5, np.float32)
    stream = module.stream()
    module.load_state_dict({"weight_hh_l1": replacement}, strict=False)
    expected = _make(lambda: pyrnn.LSTM(3, 18, 2, proj_size=4, seed=0), "fp32")
    expected.load_state_dict({"weight_hh_l1": replacement}, strict=False)
    if dtype != "fp32":
        expected = pyrnn.quantize(expected, dtype)
    _assert_same(module.state_dict(), expected.state_dict())
    # A stream made before keeps the weights it was made with, in files and pickles too.
    _assert_same(pickle.loads(pickle.dumps(stream)).module.state_dict(), original)


def test_state_dict_arrays_are_the_callers_and_attributes_read_only() -> None:
    module = pyrnn.GRU(4, 20, bias=True, seed=0)
    first = module.state_dict()
    for array in first.values():
        assert array.flags.writeable
        array[...] = 7.0  # the caller's own copy: the module is untouched
    second = module.state_dict()
    assert not np.shares_memory(first["bias_ih_l0"], second["bias_ih_l0"])
    assert not any(np.array_equal(first[key], second[key]) for key in first)
    with pytest.raises(ValueError, match="read-only"):
        module.weight_ih_l0[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        module.bias_hh_l0[0] = 1.0


def test_the_module_holds_no_pytorch_layout_matrix() -> None:
    module = pyrnn.LSTM(8, 32, 2, proj_size=4, seed=0)
    assert module.weight_ih_l0 is not module.weight_ih_l0  # unpacked on each access
    held = module._parameters._vectors
    assert set(held) == {key for key in module.state_dict() if key.startswith("bias")}
    int8 = pyrnn.quantize(module, "int8")
    assert all(k.startswith("bias") or k.endswith("_scale") for k in int8._parameters._vectors)


def test_builder_refuses_bad_use() -> None:
    builder = _core.NetworkBuilder("gru", 3, 5, 1, False, 0)
    with pytest.raises(ValueError, match=r"role: expected 'w_ih', 'w_hh', got 'w_hr'"):
        builder.pack(0, "w_hr", np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"entry: expected 0 <= entry < 1, got 1"):
        builder.pack(1, "w_ih", np.zeros((15, 3), np.float32))
    with pytest.raises(ValueError, match=r"w_ih: expected shape \(15, 3\), got \(15, 4\)"):
        builder.pack(0, "w_ih", np.zeros((15, 4), np.float32))
    with pytest.raises(ValueError, match="scales: only weight_type 'int8' takes scales"):
        builder.pack(0, "w_ih", np.zeros((15, 3), np.float32), np.ones(15, np.float32))
    builder.pack(0, "w_ih", np.zeros((15, 3), np.float32))
    with pytest.raises(ValueError, match="entry 0 is missing a matrix"):
        builder.build([(None, None)])
    builder = _core.NetworkBuilder("gru", 3, 5, 1, False, 0)
    builder.pack(0, "w_ih", np.zeros((15, 3), np.float32))
    builder.pack(0, "w_hh", np.zeros((15, 5), np.float32))
    network = builder.build([(None, None)])
    assert network.unpack(0, "w_hh").shape == (15, 5)
    with pytest.raises(ValueError, match="build\\(\\) was called already"):
        builder.build([(None, None)])
    with pytest.raises(ValueError, match=r"role: expected 'w_ih', 'w_hh', got 'bias'"):
        network.unpack(0, "bias")


# -- memory ---------------------------------------------------------------------------------
# A 2-layer LSTM-1024: 4 matrices of 4096 x 1024 float32, 64 MiB, padded nowhere.
# What every memory script starts with: reading the resident size and its peak, and a
# measurement from the state after `reset_peak()` to now.
_PRELUDE = """
import gc, json, sys
import numpy as np
import pyrnn

def status():
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                fields[key] = int(value.split()[0]) * 1024
    return fields

def reset_peak():
    gc.collect()
    try:  # resets VmHWM to the current RSS where the kernel allows it
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    return status()

def growth(before):
    gc.collect()
    after = status()
    # The peak is an upper bound even where VmHWM cannot be reset: its baseline is the RSS.
    return {"grown": after["VmRSS"] - before["VmRSS"], "peak": after["VmHWM"] - before["VmRSS"]}

def report(figures, model):
    figures["weights"] = sum(array.nbytes for array in model.state_dict().values())
    print(json.dumps(figures))
"""

# A 2-layer LSTM-1024: 4 matrices of 4096 x 1024 float32, 64 MiB, padded nowhere.
_MEMORY_SCRIPT = """
mode, path = sys.argv[1], sys.argv[2]
# Everything a first module brings in once (imports, kernels, thread pool) comes first.
warm = pyrnn.LSTM(8, 8, seed=0)
warm(np.zeros((2, 8), np.float32))
del warm
before = reset_peak()
if mode == "load":
    module = pyrnn.load(path)
else:
    module = pyrnn.LSTM(1024, 1024, num_layers=2, seed=0)
report(growth(before), module)
"""
_MIB = 1 << 20
# Beyond the weights: the small vectors, allocator slack and interpreter noise.
_SLACK = 8 * _MIB


# AddressSanitizer's allocator keeps freed blocks in quarantine (resident on purpose) and pads
# every block: resident memory then measures it, not pyrnn's storage.
_NOT_UNDER_ASAN = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer's quarantine keeps freed blocks resident",
)


def _run_memory_script(script: str, *args: str) -> dict[str, int]:
    """The figures a script printed, run after _PRELUDE in a fresh process on one thread."""
    result = subprocess.run(
        [sys.executable, "-c", _PRELUDE + script, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=OUTSIDE,
        env={**os.environ, "PYRNN_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    figures: dict[str, int] = json.loads(result.stdout.splitlines()[-1])
    return figures


def _measure(mode: str, path: Path) -> dict[str, int]:
    return _run_memory_script(_MEMORY_SCRIPT, mode, str(path))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
def test_loading_holds_the_weights_once(tmp_path: Path) -> None:
    path = tmp_path / "lstm1024.safetensors"
    pyrnn.save(pyrnn.LSTM(1024, 1024, num_layers=2, seed=0), path)
    figures = _measure("load", path)
    weights = figures["weights"]
    assert weights > 64 * _MIB
    # Each tensor is packed as it arrives and released before the next: at most the packed
    # weights plus one tensor in flight (16 MiB here, 0.25x).
    assert figures["grown"] <= 1.1 * weights + _SLACK, figures
    assert figures["peak"] <= 1.3 * weights + _SLACK, figures


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
def test_constructing_holds_the_weights_once() -> None:
    figures = _measure("construct", Path(OUTSIDE))
    assert figures["grown"] <= 1.1 * figures["weights"] + _SLACK, figures


# -- whole models ---------------------------------------------------------------------------
def _models() -> list[tuple[str, Callable[[], tuple[pyrnn.Model, list[np.ndarray]]]]]:
    """Converted models with every op that packs weights: a linear folded into an LSTM, grouped
    convolutions, bidirectional GRUs, embeddings; each with inputs to run it on."""
    from test_model_files import convert
    from test_model_graph import head_model

    def family(name: str) -> Callable[[], tuple[pyrnn.Model, list[np.ndarray]]]:
        def make() -> tuple[pyrnn.Model, list[np.ndarray]]:
            model, _, inputs = convert(name)
            return model, [x.numpy() for x in inputs(3, 11)]

        return make

    def head() -> tuple[pyrnn.Model, list[np.ndarray]]:
        x = np.random.default_rng(1).standard_normal((2, 7, 5)).astype(np.float32)
        return head_model()[0], [x]

    names = ["speaker_encoder", "bidirectional_gru", "language_model", "conv_front_end"]
    return [("linear_folded_into_lstm", head), *[(name, family(name)) for name in names]]


MODELS = _models()


def _flat_outputs(result: object) -> list[np.ndarray]:
    if isinstance(result, tuple | list):
        return [array for part in result for array in _flat_outputs(part)]
    if isinstance(result, dict):
        return [array for part in result.values() for array in _flat_outputs(part)]
    assert isinstance(result, np.ndarray)
    return [result]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "make"), MODELS, ids=[name for name, _ in MODELS])
def test_a_model_reads_its_weights_back_bit_exactly(
    name: str, make: Callable[[], tuple[pyrnn.Model, list[np.ndarray]]], dtype: str, tmp_path: Path
) -> None:
    model, inputs = make()
    if dtype != "fp32":
        model = pyrnn.quantize(model, dtype)
    original = model.state_dict()
    # Any float32 bit pattern (NaN payloads, -0.0, subnormals) in a float32 matrix survives
    # packing, and reading back changes nothing.
    rng = np.random.default_rng(5)
    patterns = {
        key: rng.integers(0, 2**32, size=value.shape, dtype=np.uint32).view(np.float32)
        for key, value in original.items()
        if value.dtype == np.float32 and value.ndim >= 2
    }
    odd = pyrnn.quantize(make()[0], dtype) if dtype != "fp32" else make()[0]
    if dtype == "fp32":
        odd.load_state_dict(patterns, strict=False)
        _assert_same(odd.state_dict(), {**original, **patterns})
    _assert_same(model.state_dict(), original)
    for key, value in model._constants.items():
        assert not value.flags.writeable
        assert np.array_equal(_bits(value), _bits(original[key])), key
    path = tmp_path / "model.safetensors"
    pyrnn.save(model, path)
    loaded = pyrnn.load(path)
    assert isinstance(loaded, pyrnn.Model)
    _assert_same(loaded.state_dict(), original)
    unpickled = pickle.loads(pickle.dumps(model))
    _assert_same(unpickled.state_dict(), original)
    expected = _flat_outputs(model(*inputs))
    for other in (loaded, unpickled):
        for a, b in zip(_flat_outputs(other(*inputs)), expected, strict=True):
            assert np.array_equal(_bits(a), _bits(b))
    # A partial load repacks the given weight and reads every other back from the old core.
    # (A quantised model quantises the floats given.)
    key = next(k for k, v in original.items() if v.ndim >= 2 and v.dtype != np.int64)
    model.load_state_dict({key: np.full(original[key].shape, 0.5, np.float32)}, strict=False)
    after = model.state_dict()
    if dtype == "fp32":
        assert np.all(after[key] == 0.5)
    replaced = (key, key + "_scale")
    _assert_same(
        {k: v for k, v in after.items() if k not in replaced},
        {k: v for k, v in original.items() if k not in replaced},
    )


# A 2-layer LSTM-1024 (64 MiB) with a Linear(1024, 1024) head (4 MiB), converted from torch.
_MODEL_SCRIPT = """
mode, path = sys.argv[1], sys.argv[2]
warm = pyrnn.LSTM(8, 8, seed=0)
warm(np.zeros((2, 8), np.float32))
del warm
if mode == "convert":
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1024, 1024, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(1024, 1024)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    torch.manual_seed(0)
    net = Net().eval()
    example = torch.zeros(2, 3, 1024)
    small = pyrnn.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 4)).eval(), torch.zeros(2, 4))
    del small
elif mode.startswith("save"):
    model = pyrnn.load(path) if mode == "save" else pyrnn.LSTM(1024, 1024, 2, seed=0)
    pyrnn.save(pyrnn.LSTM(8, 8, seed=0), path + ".warm")
elif mode == "reload":
    model = pyrnn.load(path)
    stream = model.stream()  # keeps running on the weights it was made with
    stream.step(np.zeros(1024, np.float32))
    bias = np.zeros(1024, np.float32)
before = reset_peak()
if mode == "load":
    model = pyrnn.load(path)
elif mode == "convert":
    model = pyrnn.from_torch(net, example)
elif mode == "reload":
    model.load_state_dict({"head.bias": bias}, strict=False)
else:
    pyrnn.save(model, path + ".copy")
figures = growth(before)
if mode == "convert":
    pyrnn.save(model, path)
report(figures, model)
"""


def _measure_model(mode: str, path: Path) -> dict[str, int]:
    return _run_memory_script(_MODEL_SCRIPT, mode, str(path))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
def test_a_whole_model_holds_its_weights_once(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    converted = _measure_model("convert", path)
    weights = converted["weights"]
    assert weights > 64 * _MIB
    # Converting: the packed weights; torch's own copy was there before.
    assert converted["grown"] <= 1.1 * weights + _SLACK, converted
    # Loading, in a fresh process: each tensor is read when the core packs it and let go before
    # the next, so the peak is the packed weights plus a tensor in flight.
    loaded = _measure_model("load", path)
    assert loaded["weights"] == weights
    assert loaded["grown"] <= 1.1 * weights + _SLACK, loaded
    assert loaded["peak"] <= 1.3 * weights + _SLACK, loaded


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
def test_loading_some_weights_shares_the_others_with_the_old_core(tmp_path: Path) -> None:
    """load_state_dict of the head's bias alone: the new core shares every other weight with the
    old one, which a stream made before still runs on, instead of a second packed copy."""
    path = tmp_path / "model.safetensors"
    _measure_model("convert", path)
    figures = _measure_model("reload", path)
    assert figures["weights"] > 64 * _MIB
    assert figures["grown"] <= 0.1 * figures["weights"] + _SLACK, figures
    assert figures["peak"] <= 0.1 * figures["weights"] + _SLACK, figures


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
@pytest.mark.parametrize("mode", ["save", "save_module"])
def test_saving_writes_one_tensor_at_a_time(tmp_path: Path, mode: str) -> None:
    """pyrnn.save reads each matrix back from the packed copy, writes it and lets it go: the
    file's bytes never all exist in memory, for a whole model or a module."""
    path = tmp_path / "model.safetensors"
    if mode == "save":
        _measure_model("convert", path)
    figures = _measure_model(mode, path)
    assert figures["weights"] > 64 * _MIB
    # The largest tensor in flight: 16 MiB here, 0.25x.
    assert figures["peak"] <= 0.3 * figures["weights"] + _SLACK, figures
    copy = pyrnn.load(str(path) + ".copy")
    original = pyrnn.load(path) if mode == "save" else pyrnn.LSTM(1024, 1024, 2, seed=0)
    _assert_same(copy.state_dict(), original.state_dict())


# A model of an ONNX graph exported for streaming (tests/test_onnx_import.py's
# folded_streaming_graph: a linear folded into an LSTM-1024 whose initial state comes from the
# inputs h, c, a linear head; outputs y and the final state): 37 MiB of weights. A small one of
# the same graph warms up first.
_STATE_INPUT_SCRIPT = """
warm = pyrnn.from_onnx(sys.argv[1])
warm.stream().step(np.zeros(4, np.float32))
del warm
model = pyrnn.from_onnx(sys.argv[2])
x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
model(x[:, None], *[np.zeros((1, 1, 1024), np.float32)] * 2)
before = reset_peak()
stream = model.stream()
outputs = [stream.step(frame) for frame in x]
report(growth(before), model)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
@_NOT_UNDER_ASAN
def test_a_stream_of_a_graph_with_state_inputs_shares_the_models_weights(tmp_path: Path) -> None:
    """Such a stream runs the graph without its state inputs, a second core graph: it takes
    the model's packed weights and constants rather than a copy of them."""
    onnx = pytest.importorskip("onnx")
    from test_onnx_import import folded_streaming_graph

    paths = [tmp_path / "warm.onnx", tmp_path / "model.onnx"]
    onnx.save(folded_streaming_graph(4, 8), paths[0])
    onnx.save(folded_streaming_graph(256, 1024), paths[1])
    figures = _run_memory_script(_STATE_INPUT_SCRIPT, *map(str, paths))
    assert figures["weights"] > 32 * _MIB
    assert figures["grown"] <= 0.1 * figures["weights"] + _SLACK, figures
