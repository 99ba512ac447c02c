"""The three cells against torch.nn (pairwise grid, every ISA), the numpy reference against torch
(so its equations are trustworthy documentation), PyTorch-style initialisation, state_dict
semantics, and pickling/copying of all six module types.

Tolerances against torch as in test_parity.py (parity_helpers.assert_close: a bound growing with
sqrt(K), and with |torch| for RNNCell relu, which is unbounded)."""

from __future__ import annotations

import copy
import pickle
import zlib
from typing import Any

import numpy as np
import numpy_reference
import pytest
import torch
from covering import case_id, pairwise
from parity_helpers import assert_close, present, terms

import pyrnn

_TORCH_CELLS = {
    "rnn_tanh_cell": torch.nn.RNNCell,
    "rnn_relu_cell": torch.nn.RNNCell,
    "lstm_cell": torch.nn.LSTMCell,
    "gru_cell": torch.nn.GRUCell,
}
_PYRNN_CELLS = {
    "rnn_tanh_cell": pyrnn.RNNCell,
    "rnn_relu_cell": pyrnn.RNNCell,
    "lstm_cell": pyrnn.LSTMCell,
    "gru_cell": pyrnn.GRUCell,
}
CELL_FORMS = ("f32", "f64", "f16", "torch", "torch_grad", "strided_features", "negstride", "list")


def _cell_grid() -> list[Any]:
    params = []
    for kind in _TORCH_CELLS:
        factors = {
            "bias": (False, True),
            "batched": (False, True),
            "input_size": (1, 3, 17, 64),
            "hidden_size": (1, 3, 17, 64),
            "batch": (1, 3),
            "initial_state": (False, True),
            "x_form": CELL_FORMS,
            "direction": ("from_torch", "to_torch"),
        }
        for case in pairwise(factors, lambda c: c["batched"] or c["batch"] == 1, seed=len(params)):
            params.append(pytest.param(kind, case, id=f"{kind}-{case_id(case)}"))
    return params


def cell_arguments(kind: str, case: dict[str, Any]) -> dict[str, Any]:
    args = {"input_size": case["input_size"], "hidden_size": case["hidden_size"]}
    args["bias"] = case.get("bias", True)
    if kind.startswith("rnn_"):
        args["nonlinearity"] = kind.split("_")[1]
    return args


def make_cell_pair(kind: str, args: dict[str, Any], direction: str, seed: int):
    torch.manual_seed(seed)
    reference = _TORCH_CELLS[kind](**args)
    if direction == "from_torch":
        return reference, pyrnn.from_torch(reference)
    module = _PYRNN_CELLS[kind](**args, seed=seed)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return reference, module


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize(("kind", "case"), _cell_grid())
def test_cell_parity(kind: str, case: dict[str, Any]) -> None:
    """Three chained steps, the state fed back each time, compared to torch at every step."""
    args = cell_arguments(kind, case)
    reference, module = make_cell_pair(
        kind, args, case["direction"], zlib.crc32(repr(case).encode())
    )
    rng = np.random.default_rng(11)
    batch = (case["batch"],) if case["batched"] else ()
    hidden = (*batch, case["hidden_size"])
    state = None
    if case["initial_state"]:
        h = rng.standard_normal(hidden).astype(np.float32)
        state = (h, rng.standard_normal(hidden).astype(np.float32)) if kind == "lstm_cell" else h
    relu = kind == "rnn_relu_cell"
    for _ in range(3):
        x = rng.standard_normal((*batch, case["input_size"])).astype(np.float16).astype(np.float32)
        torch_state = None
        if state is not None:
            torch_state = (
                tuple(map(torch.from_numpy, state))
                if kind == "lstm_cell"
                else torch.from_numpy(state)
            )
        with torch.no_grad():
            expected = reference(torch.from_numpy(x), torch_state)
        state = module(present(x, case["x_form"]), state)
        if kind == "lstm_cell":
            assert isinstance(state, tuple) and len(state) == 2
            assert_close(state[0], expected[0], relu, "h'", terms(module))
            assert_close(state[1], expected[1], relu, "c'", terms(module))
        else:
            assert_close(state, expected, relu, "h'", terms(module))


# -- the numpy reference is itself checked against torch ------------------------------------
def _torch_state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("rnn", {"nonlinearity": "tanh", "num_layers": 2, "bidirectional": True}),
        ("rnn", {"nonlinearity": "relu", "num_layers": 2, "bias": False}),
        ("lstm", {"num_layers": 2, "bidirectional": True}),
        ("lstm", {"num_layers": 3, "bidirectional": True, "proj_size": 2}),
        ("lstm", {"bias": False, "proj_size": 1}),
        ("gru", {"num_layers": 2, "bidirectional": True}),
        ("gru", {"bias": False}),
    ],
)
def test_numpy_reference_sequence_matches_torch(kind: str, options: dict[str, Any]) -> None:
    torch.manual_seed(5)
    torch_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    reference = torch_class(3, 5, **options)
    config = {"kind": kind, "input_size": 3, "hidden_size": 5, **options}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2, 3)).astype(np.float32)
    directions = 2 if options.get("bidirectional") else 1
    layers = options.get("num_layers", 1) * directions
    h0 = rng.standard_normal((layers, 2, options.get("proj_size") or 5)).astype(np.float32)
    c0 = rng.standard_normal((layers, 2, 5)).astype(np.float32)
    hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
    with torch.no_grad():
        out, state = reference(torch.from_numpy(x), hx)
    np_out, np_h, np_c = numpy_reference.sequence(
        config, _torch_state_dict(reference), x, h0, c0 if kind == "lstm" else None
    )
    # float64 reference vs float32 torch: a few float32 ulp of values of order 1.
    np.testing.assert_allclose(np_out, out.numpy(), rtol=1e-5, atol=2e-6)
    if kind == "lstm":
        np.testing.assert_allclose(np_h, state[0].numpy(), rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(np_c, state[1].numpy(), rtol=1e-5, atol=2e-6)
    else:
        np.testing.assert_allclose(np_h, state.numpy(), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("kind", list(_TORCH_CELLS))
@pytest.mark.parametrize("bias", [False, True])
def test_numpy_reference_cell_matches_torch(kind: str, bias: bool) -> None:
    torch.manual_seed(6)
    args = cell_arguments(kind, {"input_size": 4, "hidden_size": 6, "bias": bias})
    reference = _TORCH_CELLS[kind](**args)
    config = {"kind": kind.replace("_tanh", "").replace("_relu", ""), **args}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    h = rng.standard_normal((3, 6)).astype(np.float32)
    c = rng.standard_normal((3, 6)).astype(np.float32)
    state = (torch.from_numpy(h), torch.from_numpy(c)) if kind == "lstm_cell" else None
    with torch.no_grad():
        expected = reference(torch.from_numpy(x), state or torch.from_numpy(h))
    result = numpy_reference.cell(config, _torch_state_dict(reference), x, h, c)
    for actual, wanted in zip(
        result if kind == "lstm_cell" else [result],
        expected if kind == "lstm_cell" else [expected],
        strict=True,
    ):
        np.testing.assert_allclose(actual, wanted.numpy(), rtol=1e-5, atol=2e-6)


def test_numpy_reference_is_not_trivially_passing() -> None:
    """A wrong weight must move the reference far from torch (the check above can fail)."""
    torch.manual_seed(6)
    reference = torch.nn.GRU(4, 6)
    weights = _torch_state_dict(reference)
    weights["bias_hh_l0"] = weights["bias_hh_l0"] + 0.1
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    with torch.no_grad():
        out, _ = reference(torch.from_numpy(x))
    np_out, _, _ = numpy_reference.sequence({"kind": "gru", "hidden_size": 6}, weights, x)
    assert np.abs(np_out - out.numpy()).max() > 1e-3


# -- every ISA agrees with the C++ double-accumulating oracle and with the numpy reference -----
@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize(
    "config",
    [
        {"kind": "rnn", "nonlinearity": "relu", "num_layers": 2, "bidirectional": True},
        {"kind": "lstm", "num_layers": 2, "bidirectional": True, "proj_size": 3},
        {"kind": "gru", "num_layers": 3, "bias": False},
    ],
)
def test_pyrnn_matches_numpy_reference(config: dict[str, Any]) -> None:
    config = {"input_size": 9, "hidden_size": 17, **config}
    constructor = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[config["kind"]]
    module = constructor(**{k: v for k, v in config.items() if k != "kind"}, seed=2)
    x = np.random.default_rng(3).standard_normal((8, 2, 9)).astype(np.float32)
    out, state = module(x)
    np_out, np_h, _ = numpy_reference.sequence(config, module.state_dict(), x)
    h = state[0] if config["kind"] == "lstm" else state
    tolerance = 1e-5 * (1 + np.abs(np_out))  # relu is unbounded: relative part
    assert np.all(np.abs(out - np_out) <= tolerance)
    assert np.all(np.abs(h - np_h) <= 1e-5 * (1 + np.abs(np_h)))


# -- initialisation ---------------------------------------------------------------------------
ALL_CONSTRUCTORS = [
    pytest.param(lambda **kw: pyrnn.RNN(7, 16, num_layers=2, bidirectional=True, **kw), id="rnn"),
    pytest.param(lambda **kw: pyrnn.LSTM(7, 16, num_layers=2, proj_size=4, **kw), id="lstm"),
    pytest.param(lambda **kw: pyrnn.GRU(7, 16, bidirectional=True, **kw), id="gru"),
    pytest.param(lambda **kw: pyrnn.RNNCell(7, 16, nonlinearity="relu", **kw), id="rnn_cell"),
    pytest.param(lambda **kw: pyrnn.LSTMCell(7, 16, **kw), id="lstm_cell"),
    pytest.param(lambda **kw: pyrnn.GRUCell(7, 16, **kw), id="gru_cell"),
]


@pytest.mark.parametrize("make", ALL_CONSTRUCTORS)
def test_pytorch_style_initialisation(make) -> None:
    """Every weight and bias uniform in +-1/sqrt(hidden_size) (hidden_size=16: +-0.25), seeded
    runs reproducible, different seeds different, and spread over the interval."""
    module = make(seed=1)
    bound = 1 / np.sqrt(16)
    values = np.concatenate([v.ravel() for v in module.state_dict().values()])
    assert values.dtype == np.float32
    assert np.all(np.abs(values) <= bound)
    # uniform on [-b, b]: with thousands of draws both ends are approached and the mean is ~0
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound
    assert abs(values.mean()) < 0.1 * bound  # sd of the mean is bound/sqrt(3n) < 0.02 bound
    again = make(seed=1).state_dict()
    other = make(seed=2).state_dict()
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, again[key])
        assert not np.array_equal(value, other[key])
    unseeded = [make().state_dict() for _ in range(2)]
    assert not all(np.array_equal(unseeded[0][k], unseeded[1][k]) for k in unseeded[0])


@pytest.mark.parametrize("make", ALL_CONSTRUCTORS)
def test_state_dict_keys_and_shapes_match_torch(make) -> None:
    module = make(seed=0)
    config = module.config
    kind = config.pop("kind")
    torch_class = {
        "rnn": torch.nn.RNN,
        "lstm": torch.nn.LSTM,
        "gru": torch.nn.GRU,
        "rnn_cell": torch.nn.RNNCell,
        "lstm_cell": torch.nn.LSTMCell,
        "gru_cell": torch.nn.GRUCell,
    }[kind]
    reference = torch_class(**config)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    actual = {k: v.shape for k, v in module.state_dict().items()}
    assert list(actual) == list(expected)  # same keys in torch's order
    assert actual == expected


# -- state_dict / load_state_dict -------------------------------------------------------------
def test_state_dict_returns_private_writable_copies() -> None:
    module = pyrnn.LSTM(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    before = module(x)[0]
    weights = module.state_dict()
    weights["weight_ih_l0"][...] = 100.0
    np.testing.assert_array_equal(module(x)[0], before)
    assert not np.shares_memory(module.state_dict()["weight_ih_l0"], module.weight_ih_l0)
    with pytest.raises(ValueError, match="read-only"):
        module.weight_ih_l0[0, 0] = 1.0


def test_load_state_dict_copies_its_input() -> None:
    module = pyrnn.GRU(3, 4, seed=0)
    weights = pyrnn.GRU(3, 4, seed=1).state_dict()
    module.load_state_dict(weights)
    x = np.ones((2, 1, 3), np.float32)
    before = module(x)[0]
    weights["weight_hh_l0"][...] = 5.0  # the caller's array changes later: the module does not
    np.testing.assert_array_equal(module(x)[0], before)


def test_load_state_dict_strict_false_reports_missing_and_unexpected() -> None:
    module = pyrnn.LSTM(3, 4, seed=0)
    original = module.state_dict()
    donor = pyrnn.LSTM(3, 4, seed=1).state_dict()
    partial = {"weight_ih_l0": donor["weight_ih_l0"], "decoder.weight": np.zeros(2)}
    result = module.load_state_dict(partial, strict=False)
    assert isinstance(result, pyrnn.IncompatibleKeys)
    assert result.missing_keys == ["weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert result.unexpected_keys == ["decoder.weight"]
    missing, unexpected = result  # a named pair, as torch's
    assert (missing, unexpected) == (result.missing_keys, result.unexpected_keys)
    after = module.state_dict()
    np.testing.assert_array_equal(after["weight_ih_l0"], donor["weight_ih_l0"])
    np.testing.assert_array_equal(after["weight_hh_l0"], original["weight_hh_l0"])


def test_load_state_dict_strict_true_returns_empty_keys_and_takes_torch_tensors() -> None:
    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 4, bidirectional=True, proj_size=2)
    module = pyrnn.LSTM(3, 4, bidirectional=True, proj_size=2, seed=0)
    weights = {k: v.requires_grad_() for k, v in reference.state_dict(keep_vars=True).items()}
    assert module.load_state_dict(weights) == ([], [])
    for key, value in reference.state_dict().items():
        np.testing.assert_array_equal(module.state_dict()[key], value.numpy())


def test_failed_load_state_dict_changes_nothing() -> None:
    module = pyrnn.RNN(3, 4, num_layers=2, seed=0)
    before = module.state_dict()
    bad = pyrnn.RNN(3, 4, num_layers=2, seed=1).state_dict()
    bad["weight_hh_l1"] = np.zeros((4, 5), np.float32)  # last key mis-shaped
    with pytest.raises(ValueError, match="weight_hh_l1"):
        module.load_state_dict(bad, strict=False)
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_weights_are_attributes_like_torch() -> None:
    module = pyrnn.LSTM(3, 4, bidirectional=True, seed=0)
    np.testing.assert_array_equal(
        module.weight_hh_l0_reverse, module.state_dict()["weight_hh_l0_reverse"]
    )
    with pytest.raises(AttributeError, match="weight_hr_l0"):
        _ = module.weight_hr_l0


# -- pickling and copying ----------------------------------------------------------------------
@pytest.mark.parametrize("make", ALL_CONSTRUCTORS)
@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_pickle_and_copy_round_trip(make, how: str) -> None:
    module = make(seed=4)
    if how == "pickle":
        clone = pickle.loads(pickle.dumps(module))
    elif how == "deepcopy":
        clone = copy.deepcopy(module)
    else:
        clone = copy.copy(module)
    assert type(clone) is type(module)
    assert clone.config == module.config
    assert repr(clone) == repr(module)
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[key], value)
    cell = module.config["kind"].endswith("_cell")
    x = np.random.default_rng(0).standard_normal((2, 7) if cell else (3, 2, 7)).astype(np.float32)
    expected, actual = module(x), clone(x)
    for a, b in zip(
        _flatten(actual),
        _flatten(expected),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    # the clone is independent: loading new weights into it leaves the original alone
    clone.load_state_dict(make(seed=5).state_dict())
    for a, b in zip(_flatten(module(x)), _flatten(expected), strict=True):
        np.testing.assert_array_equal(a, b)


def _flatten(result: Any) -> list[np.ndarray]:
    if isinstance(result, tuple):
        return [array for item in result for array in _flatten(item)]
    return [result]


def test_repr_shows_non_default_arguments() -> None:
    assert repr(pyrnn.LSTM(3, 4, num_layers=2, proj_size=2)) == (
        "LSTM(3, 4, num_layers=2, proj_size=2)"
    )
    assert repr(pyrnn.RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity='relu')"
    assert repr(pyrnn.GRU(1, 1)) == "GRU(1, 1)"
