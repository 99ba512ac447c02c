"""pyrnn.quantize: weight matrices stored in fp16, bf16 or int8 (one scale per row).

Accuracy against the same model in fp32 over T=200 steps, on every ISA, with PyTorch's default
initialisation and with trained-like weights (each row scaled by 10**u, u in [-3, 0]: rows
spanning 3 orders of magnitude). Bounds, per weight type: fp16 (11-bit significand, relative
rounding error <= 2**-11) max abs error of outputs <= 1e-3; bf16 (8 bits, <= 2**-8) <= 1e-2;
int8 (error <= scale / 2 = max|w_row| / 254 per weight) cosine similarity of the final hidden
states >= 0.999 and max abs error <= 5e-2. The rounding rules themselves are checked exactly."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from oracle import oracle_forward

import pyrnn
from pyrnn._weights import from_bf16, to_bf16, to_int8, widen

TYPES = ("fp16", "bf16", "int8")
STEPS = 200
MAX_ERROR = {"fp16": 1e-3, "bf16": 1e-2, "int8": 5e-2}
MODULES: dict[str, Any] = {
    "rnn_tanh": lambda: pyrnn.RNN(12, 40, num_layers=2, seed=1),
    "rnn_relu": lambda: pyrnn.RNN(12, 40, nonlinearity="relu", seed=2),
    "lstm": lambda: pyrnn.LSTM(12, 40, num_layers=2, seed=3),
    "lstm_proj_bidirectional": lambda: pyrnn.LSTM(12, 40, proj_size=17, bidirectional=True, seed=4),
    "gru": lambda: pyrnn.GRU(12, 40, num_layers=2, batch_first=True, seed=5),
    "rnn_cell": lambda: pyrnn.RNNCell(12, 40, seed=6),
    "lstm_cell": lambda: pyrnn.LSTMCell(12, 40, seed=7),
    "gru_cell": lambda: pyrnn.GRUCell(12, 40, seed=8),
}


def trained_like(module: pyrnn.Module, seed: int = 0) -> pyrnn.Module:
    """`module` with each row of every weight matrix scaled by 10**u, u uniform in [-3, 0]."""
    rng = np.random.default_rng(seed)
    weights = module.state_dict()
    for key, value in weights.items():
        if key.startswith("weight"):
            value *= (10.0 ** rng.uniform(-3.0, 0.0, value.shape[0]))[:, None].astype(np.float32)
    module.load_state_dict(weights)
    return module


def run(module: pyrnn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every step's output, the final hidden state): cells are stepped through x."""
    if module.config["kind"].endswith("_cell"):
        state: Any = None
        outputs = []
        for frame in x:
            state = module(frame, state)
            outputs.append(state[0] if isinstance(state, tuple) else state)
        return np.stack(outputs), outputs[-1]
    out, hn = module(x)
    return out, hn[0] if isinstance(hn, tuple) else hn


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_accuracy(
    got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray], weights: str
) -> None:
    error = float(np.abs(got[0] - want[0]).max())
    assert error <= MAX_ERROR[weights], f"{weights}: max abs error {error}"
    if weights == "int8":
        assert cosine(got[1], want[1]) >= 0.999


@pytest.mark.parametrize("weights", TYPES)
@pytest.mark.parametrize("init", ["random", "trained-like"])
@pytest.mark.parametrize("name", list(MODULES))
def test_accuracy_against_fp32(isa: str, name: str, init: str, weights: str) -> None:
    module = MODULES[name]()
    if init == "trained-like":
        trained_like(module)
    x = np.random.default_rng(9).standard_normal((STEPS, 3, 12)).astype(np.float32)
    quantized = pyrnn.quantize(module, weights)
    assert quantized.weight_dtype == weights and module.weight_dtype == "fp32"
    check_accuracy(run(quantized, x), run(module, x), weights)


@pytest.mark.parametrize("weights", TYPES)
def test_kernels_compute_the_widened_weights(isa: str, weights: str) -> None:
    """The quantised module equals an fp32 module holding the widened weights (the kernels
    widen exactly; the products are the same) and the double-precision oracle."""
    module = pyrnn.LSTM(7, 33, num_layers=2, proj_size=5, seed=11)
    quantized = pyrnn.quantize(module, weights)
    stored = quantized.state_dict()
    widened = {
        key: widen(value, weights, stored.get(key + "_scale"))
        if key.startswith("weight")
        else value
        for key, value in stored.items()
        if not key.endswith("_scale")
    }
    twin = pyrnn.LSTM(7, 33, num_layers=2, proj_size=5)
    twin.load_state_dict(widened)
    x = np.random.default_rng(1).standard_normal((20, 2, 7)).astype(np.float32)
    got, want = quantized(x)[0], twin(x)[0]
    # int8 applies the scale to the sum rather than to each product: a few ulps apart.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 if weights == "int8" else 1e-6)
    oracle = oracle_forward(quantized, x)[0]
    np.testing.assert_allclose(got, oracle, rtol=0, atol=1e-5)


# -- what is stored ---------------------------------------------------------------------------
@pytest.mark.parametrize("weights", TYPES)
def test_weights_are_stored_once_in_the_narrow_type(weights: str) -> None:
    module = pyrnn.LSTM(6, 20, num_layers=2, proj_size=4, seed=0)
    original = module.state_dict()
    quantized = pyrnn.quantize(module, weights)
    storage = {"fp16": np.float16, "bf16": np.uint16, "int8": np.int8}[weights]
    stored = quantized.state_dict()
    for key, value in original.items():
        array = getattr(quantized, key)
        assert not array.flags.writeable
        if key.startswith("weight"):
            assert array.dtype == storage and stored[key].dtype == storage
        else:
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, value)  # biases stay float32, untouched
    scales = [key for key in stored if key.endswith("_scale")]
    if weights == "int8":
        assert scales == [key + "_scale" for key in original if key.startswith("weight")]
        assert list(stored).index("weight_ih_l0_scale") == list(stored).index("weight_ih_l0") + 1
        assert stored["weight_hr_l0_scale"].shape == (4,)
        assert stored["weight_hr_l0_scale"].dtype == np.float32
    else:
        assert scales == []
    # The matrices are held in the narrow type only: no float32 copy behind them.
    held = sum(array.nbytes for array in quantized._parameters.values())
    matrices = sum(v.size for k, v in original.items() if k.startswith("weight"))
    biases = sum(v.nbytes for k, v in original.items() if not k.startswith("weight"))
    per_weight = {"fp16": 2, "bf16": 2, "int8": 1}[weights]
    rows = sum(v.shape[0] for k, v in original.items() if k.startswith("weight"))
    assert held == matrices * per_weight + biases + (4 * rows if weights == "int8" else 0)
    # The original is unchanged.
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, original[key])
    assert module.weight_dtype == "fp32"


def test_rounding_rules() -> None:
    w = np.array(
        [[1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, -65504.0, 1e-8], [0.1, -0.2, 0.3, 0.4]], np.float32
    )
    module = pyrnn.RNNCell(4, 2)
    module.load_state_dict({"weight_ih": w}, strict=False)
    fp16 = pyrnn.quantize(module, "fp16").weight_ih
    # Halfway cases round to even: 1 + 2**-11 -> 1, 1 + 3 * 2**-11 -> 1 + 2**-9.
    np.testing.assert_array_equal(fp16, w.astype(np.float16))
    assert fp16[0, 0] == 1.0 and fp16[0, 1] == 1.0 + 2.0**-9
    # bf16: nearest even of the float32 bits; halfway 1 + 2**-8 -> 1, 1 + 3 * 2**-8 -> 1 + 2**-6.
    halves = np.array([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8)], np.float32)
    np.testing.assert_array_equal(from_bf16(to_bf16(halves)), [1.0, 1 + 2.0**-6, -1.0])
    specials = np.array([np.inf, -np.inf, np.nan, -0.0, 3.4e38], np.float32)
    widened = from_bf16(to_bf16(specials))
    assert widened[0] == np.inf and widened[1] == -np.inf and np.isnan(widened[2])
    assert np.signbit(widened[3]) and widened[4] == np.inf  # past bf16's largest: rounds to inf
    nan_payload = np.array([0x7F800001], np.uint32).view(np.float32)  # a NaN with a low payload
    assert np.isnan(from_bf16(to_bf16(nan_payload))[0])
    # int8: scale = max|row| / 127, half to even, an all-zero row gets scale 1.
    rows = np.array(
        [[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [-127.0, 1.5, 2.5, 0.5]], np.float32
    )
    q, scales = to_int8(rows, "w")
    np.testing.assert_array_equal(scales, np.array([1 / 127, 1.0, 1.0], np.float32))
    np.testing.assert_array_equal(q[0], [127, -64, 32, 0])  # 63.5 -> 64, 31.75 -> 32
    np.testing.assert_array_equal(q[1], [0, 0, 0, 0])
    np.testing.assert_array_equal(q[2], [-127, 2, 2, 0])  # 1.5 -> 2, 2.5 -> 2, 0.5 -> 0


def test_bf16_rounding_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    values *= 10.0 ** np.random.default_rng(1).uniform(-30, 30, values.size).astype(np.float32)
    expected = torch.from_numpy(values).bfloat16().view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bf16(values), expected)


# -- refusals ---------------------------------------------------------------------------------
def test_refusals() -> None:
    module = pyrnn.GRU(3, 4, seed=0)
    with pytest.raises(
        ValueError, match=r"weights: expected one of 'fp16', 'bf16', 'int8', got 'int4'"
    ):
        pyrnn.quantize(module, "int4")
    with pytest.raises(ValueError, match="got 'fp32'"):
        pyrnn.quantize(module, "fp32")
    with pytest.raises(TypeError, match=r"model: expected a pyrnn module .* got dict"):
        pyrnn.quantize({}, "fp16")  # type: ignore[type-var]
    quantized = pyrnn.quantize(module, "bf16")
    with pytest.raises(ValueError, match=r"already quantised \(weight_dtype 'bf16'\)"):
        pyrnn.quantize(quantized, "int8")
    huge = module.state_dict()
    huge["weight_hh_l0"][2, 1] = 70000.0
    module.load_state_dict(huge)
    with pytest.raises(
        ValueError,
        match=r"state_dict\['weight_hh_l0'\]: has a weight of magnitude 70000, beyond float16's",
    ):
        pyrnn.quantize(module, "fp16")
    assert pyrnn.quantize(module, "bf16").weight_dtype == "bf16"  # bf16 keeps float32's range
    nan = module.state_dict()
    nan["weight_ih_l0"][0, 0] = np.nan
    module.load_state_dict(nan)
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l0'\]: holds NaN or inf"):
        pyrnn.quantize(module, "int8")


def test_load_state_dict_takes_the_stored_form_or_floats() -> None:
    module = pyrnn.LSTM(5, 6, seed=0)
    quantized = pyrnn.quantize(module, "int8")
    stored = quantized.state_dict()
    twin = pyrnn.quantize(pyrnn.LSTM(5, 6, seed=1), "int8")
    twin.load_state_dict(stored)
    for key, value in stored.items():
        np.testing.assert_array_equal(getattr(twin, key), value)
    twin.load_state_dict(module.state_dict())  # floats: quantised again, same result
    for key, value in stored.items():
        np.testing.assert_array_equal(getattr(twin, key), value)
    cases = [
        ({"weight_ih_l0_scale": None}, "int8 weights need their scales under 'weight_ih_l0_scale'"),
        (
            {"weight_ih_l0_scale": np.ones(3, np.float32)},
            r"expected shape \(24,\) \(one scale per row\), got \(3,\)",
        ),
        ({"weight_ih_l0_scale": np.full(24, np.nan, np.float32)}, "scale of row 0 is nan"),
        ({"weight_ih_l0_scale": np.zeros(24, np.float32)}, "scale of row 0 is 0.0"),
        ({"weight_ih_l0_scale": -np.ones(24, np.float32)}, "scale of row 0 is -1.0"),
        ({"weight_ih_l0_scale": np.full(24, np.inf, np.float32)}, "scale of row 0 is inf"),
        (
            {"weight_ih_l0": stored["weight_ih_l0"].astype(np.int16)},
            r"expected dtype int8 \(weight_dtype 'int8'\) or a float32 array to quantise, got "
            "dtype int16",
        ),
        ({"weight_ih_l0": module.weight_ih_l0}, "a scale goes with int8 weights only"),
    ]
    for change, message in cases:
        bad = {**stored, **change}
        bad = {key: value for key, value in bad.items() if value is not None}
        with pytest.raises((ValueError, TypeError), match=message):
            twin.load_state_dict(bad)
    scales_only = {"weight_hh_l0_scale": stored["weight_hh_l0_scale"]}
    with pytest.raises(ValueError, match="a scale without its int8 weight 'weight_hh_l0'"):
        twin.load_state_dict(scales_only, strict=False)
    with pytest.raises(ValueError, match="unexpected keys"):
        pyrnn.LSTM(5, 6).load_state_dict(stored)  # an fp32 module takes no scales
    with pytest.raises(TypeError, match="expected a real floating dtype"):
        pyrnn.LSTM(5, 6).load_state_dict(
            {**module.state_dict(), "weight_hh_l0": stored["weight_hh_l0"]}
        )
    fp16 = pyrnn.quantize(module, "fp16")
    with pytest.raises(TypeError, match=r"expected dtype float16 \(weight_dtype 'fp16'\)"):
        fp16.load_state_dict({**fp16.state_dict(), "weight_hh_l0": stored["weight_hh_l0"]})


def test_network_binding_checks_narrow_matrices() -> None:
    from pyrnn import _core

    w_ih, w_hh = np.zeros((4, 3), np.int8), np.zeros((4, 4), np.int8)
    ones = np.ones(4, np.float32)
    _core.Network(
        "rnn_tanh",
        3,
        4,
        1,
        False,
        0,
        [(w_ih, w_hh, None, None, None)],
        "int8",
        [(ones, ones, None)],
    )
    with pytest.raises(ValueError, match="scales: required for weight_type 'int8'"):
        _core.Network("rnn_tanh", 3, 4, 1, False, 0, [(w_ih, w_hh, None, None, None)], "int8")
    with pytest.raises(
        ValueError, match=r"w_ih: expected dtype float16 for weight_type 'fp16', got int8"
    ):
        _core.Network("rnn_tanh", 3, 4, 1, False, 0, [(w_ih, w_hh, None, None, None)], "fp16")
    with pytest.raises(ValueError, match=r"w_hh scales: expected shape \(4,\), got \(3,\)"):
        _core.Network(
            "rnn_tanh",
            3,
            4,
            1,
            False,
            0,
            [(w_ih, w_hh, None, None, None)],
            "int8",
            [(ones, ones[:3], None)],
        )
    with pytest.raises(ValueError, match=r"w_ih scales: row 1 has scale 0\.0"):
        zero = ones.copy()
        zero[1] = 0
        _core.Network(
            "rnn_tanh",
            3,
            4,
            1,
            False,
            0,
            [(w_ih, w_hh, None, None, None)],
            "int8",
            [(zero, ones, None)],
        )
    with pytest.raises(
        ValueError, match="weight_type: expected 'fp32', 'fp16', 'bf16' or 'int8', got 'fp8'"
    ):
        _core.Network("rnn_tanh", 3, 4, 1, False, 0, [(w_ih, w_hh, None, None, None)], "fp8")
    with pytest.raises(ValueError, match="w_ih: expected a C-contiguous array"):
        _core.Network(
            "rnn_tanh",
            3,
            4,
            1,
            False,
            0,
            [(np.zeros((3, 4), np.int8).T, w_hh, None, None, None)],
            "int8",
            [(ones, ones, None)],
        )
    with pytest.raises(ValueError, match="scales: only weight_type 'int8' takes scales"):
        _core.Network(
            "rnn_tanh",
            3,
            4,
            1,
            False,
            0,
            [(w_ih.astype(np.float16), w_hh.astype(np.float16), None, None, None)],
            "fp16",
            [(ones, ones, None)],
        )


# -- streams, pickles, files ------------------------------------------------------------------
@pytest.mark.parametrize("weights", TYPES)
def test_stream_of_a_quantized_module_equals_its_forward(isa: str, weights: str) -> None:
    module = pyrnn.quantize(pyrnn.GRU(5, 19, num_layers=2, seed=3), weights)
    x = np.random.default_rng(2).standard_normal((30, 2, 5)).astype(np.float32)
    full = module(x)[0]
    stream = module.stream(batch=2)
    steps = np.stack([stream.step(frame) for frame in x])
    np.testing.assert_allclose(steps, full, rtol=1e-6, atol=1e-6)
    twin = pickle.loads(pickle.dumps(stream))
    assert twin.module.weight_dtype == weights
    np.testing.assert_array_equal(twin.step(x[0]), stream.step(x[0]))


@pytest.mark.parametrize("weights", TYPES)
def test_pickle_keeps_the_narrow_form(weights: str) -> None:
    module = pyrnn.quantize(pyrnn.LSTM(4, 9, proj_size=3, seed=0), weights)
    twin = pickle.loads(pickle.dumps(module))
    assert twin.weight_dtype == weights
    assert repr(twin) == f"pyrnn.quantize(LSTM(4, 9, proj_size=3), weights='{weights}')"
    for key, value in module.state_dict().items():
        assert getattr(twin, key).dtype == value.dtype
        np.testing.assert_array_equal(getattr(twin, key), value)
    assert module.config["weight_dtype"] == weights
    assert "weight_dtype" not in pyrnn.LSTM(4, 9).config  # absent means fp32


@pytest.mark.parametrize("weights", TYPES)
def test_files_are_smaller_and_load_without_torch(tmp_path: Path, weights: str) -> None:
    module = pyrnn.LSTM(64, 256, num_layers=2, seed=0)
    pyrnn.save(module, tmp_path / "fp32.safetensors")
    quantized = pyrnn.quantize(module, weights)
    path = tmp_path / f"{weights}.safetensors"
    pyrnn.save(quantized, path)
    ratio = path.stat().st_size / (tmp_path / "fp32.safetensors").stat().st_size
    # Matrices at 2 or 1 bytes a weight; biases (and int8 scales) stay 4 bytes a value.
    assert ratio < (0.51 if weights != "int8" else 0.27), ratio
    loaded = pyrnn.load(path)
    assert loaded.weight_dtype == weights
    x = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x)[0], quantized(x)[0])
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, pyrnn\n"
        f"m = pyrnn.load({str(path)!r})\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "print(m.weight_dtype, m.weight_ih_l0.dtype)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    storage = {"fp16": "float16", "bf16": "uint16", "int8": "int8"}[weights]
    assert result.stdout.split() == [weights, storage]


# -- converted models -------------------------------------------------------------------------
def converted_model() -> tuple[pyrnn.Model, Any]:
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 6)
            self.conv = torch.nn.Conv1d(6, 12, 3, padding=2, groups=2)
            self.lstm = torch.nn.LSTM(12, 24, batch_first=True)
            self.cell = torch.nn.GRUCell(24, 16)
            self.norm = torch.nn.LayerNorm(16)
            self.fc = torch.nn.Linear(16, 5)

        def forward(self, ids: Any) -> Any:
            y = self.conv(self.embed(ids).transpose(1, 2))[:, :, :-2].transpose(1, 2)
            out, _ = self.lstm(y)
            return self.fc(self.norm(self.cell(out[:, -1])))

    torch.manual_seed(0)
    net = Net().eval()
    ids = torch.randint(0, 10, (3, STEPS))
    return pyrnn.from_torch(net, ids), ids.numpy()


@pytest.mark.parametrize("weights", TYPES)
def test_converted_model(isa: str, weights: str, tmp_path: Path) -> None:
    model, ids = converted_model()
    quantized = pyrnn.quantize(model, weights)
    assert quantized.weight_dtype == weights and model.weight_dtype == "fp32"
    # The matrices of conv1d, the recurrent layer, the cell and the linear layer; the
    # embedding table, the norm and every bias stay float32.
    assert quantized.graph.quantized == [
        "conv.weight",
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "cell.weight_ih",
        "cell.weight_hh",
        "fc.weight",
    ]
    stored = quantized.state_dict()
    assert stored["embed.weight"].dtype == np.float32 and stored["fc.bias"].dtype == np.float32
    assert ("conv.weight_scale" in stored) == (weights == "int8")
    want, got = model(ids), quantized(ids)
    assert float(np.abs(got - want).max()) <= MAX_ERROR[weights]
    if weights == "int8":
        assert cosine(got, want) >= 0.999
    path = tmp_path / "model.safetensors"
    pyrnn.save(quantized, path)
    loaded = pyrnn.load(path)
    assert isinstance(loaded, pyrnn.Model) and loaded.weight_dtype == weights
    np.testing.assert_array_equal(loaded(ids), got)
    twin = pickle.loads(pickle.dumps(quantized))
    np.testing.assert_array_equal(twin(ids), got)
    with pytest.raises(ValueError, match="already quantised"):
        pyrnn.quantize(quantized, "int8")
    quantized.load_state_dict(model.state_dict())  # floats: quantised again
    np.testing.assert_array_equal(quantized(ids), got)


@pytest.mark.parametrize("weights", TYPES)
def test_stream_of_a_quantized_model_equals_its_forward(isa: str, weights: str) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh())
    lstm = torch.nn.LSTM(8, 12, batch_first=True)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.front, self.lstm, self.head = net, lstm, torch.nn.Linear(12, 3)

        def forward(self, x: Any) -> Any:
            return self.head(self.lstm(self.front(x))[0])

    x = torch.randn(2, 40, 5)
    model = pyrnn.quantize(pyrnn.from_torch(Net().eval(), x), weights)
    full = model(x)
    stream = model.stream(batch=2)
    steps = np.stack([stream.step(np.ascontiguousarray(x[:, t].numpy())) for t in range(40)], 1)
    np.testing.assert_allclose(steps, full, rtol=1e-6, atol=1e-6)


def test_a_model_matrix_used_elsewhere_stays_float32() -> None:
    from pyrnn.graph import Graph, InputSpec, Node

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    graph = Graph(
        [InputSpec("x", "float32", [None, 4])],
        {"tuple": [{"tensor": "y"}, {"tensor": "z"}]},
        ["shared", "own"],
        [
            Node("linear", ["x", "shared", None], ["a"]),
            Node("linear", ["a", "own", None], ["y"]),
            Node("add", ["a", "shared"], ["z"]),  # reads the matrix as a value
        ],
    )
    model = pyrnn.Model(graph, {"shared": w, "own": w.copy()})
    quantized = pyrnn.quantize(model, "int8")
    assert quantized.graph.quantized == ["own"]
    assert quantized.state_dict()["shared"].dtype == np.float32
    # The core refuses a narrow constant anywhere but a packed weight, naming it.
    forced = Graph.from_json({**graph.to_json(), "weight_dtype": "fp16", "quantized": ["shared"]})
    with pytest.raises(
        pyrnn.GraphError, match="'shared' is a float16 weight; op 'add' takes it as a float32 value"
    ):
        pyrnn.Model(forced, {"shared": w, "own": w})
    only_value = Graph(
        graph.inputs, {"tensor": "z"}, ["shared"], [Node("add", ["x", "shared"], ["z"])]
    )
    with pytest.raises(ValueError, match="has no weight matrix to quantise"):
        pyrnn.quantize(pyrnn.Model(only_value, {"shared": w}), "bf16")


def test_graph_json_is_backward_compatible() -> None:
    model, _ = converted_model()
    data = model.graph.to_json()
    assert "weight_dtype" not in data and "quantized" not in data  # fp32 graphs as they were
    quantized = pyrnn.quantize(model, "bf16").graph.to_json()
    assert quantized["weight_dtype"] == "bf16"
    assert pyrnn.graph.Graph.from_json(quantized).quantized == quantized["quantized"]
    with pytest.raises(pyrnn.GraphError, match=r"missing fields \['quantized'\]"):
        pyrnn.graph.Graph.from_json({**data, "weight_dtype": "bf16"})
    with pytest.raises(pyrnn.GraphError, match="'weight_dtype' must be one of"):
        pyrnn.graph.Graph.from_json({**quantized, "weight_dtype": "fp32"})
    with pytest.raises(pyrnn.GraphError, match="listed twice"):
        pyrnn.graph.Graph.from_json({**quantized, "quantized": ["fc.weight", "fc.weight"]})
