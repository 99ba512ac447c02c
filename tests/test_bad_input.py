"""Every bad input gets a clear exception: ValueError/TypeError (pyrnn.FormatError, a ValueError,
for files) whose message names the argument or key, what was expected and what was given.
Each `match` below checks all three parts of the message."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import pyrnn
from pyrnn import _testing

LSTM2 = pyrnn.LSTM(3, 4, num_layers=2, seed=0)  # hx = (h0, c0), each (2, N, 4)
GRU = pyrnn.GRU(3, 4, batch_first=True, seed=0)
RNN_CELL = pyrnn.RNNCell(3, 4, seed=0)
LSTM_CELL = pyrnn.LSTMCell(3, 4, seed=0)
X = np.zeros((5, 2, 3), np.float32)
H = np.zeros((2, 2, 4), np.float32)

_FLOAT_DTYPES = r"expected a real floating dtype \(float16, float32 or float64\), got dtype "

CALL_CASES = [
    # -- wrong rank
    ("rank 1 sequence", lambda: LSTM2(np.zeros(3)), ValueError, r"input: expected a 2-D \(T, I\) unbatched or 3-D \(T, N, I\) batched array, got shape \(3,\)"),
    ("rank 4 sequence", lambda: GRU(np.zeros((1, 2, 3, 3))), ValueError, r"input: expected .*3-D \(N, T, I\) batched array, got shape \(1, 2, 3, 3\)"),
    ("rank 0 sequence", lambda: LSTM2(np.float32(1)), ValueError, r"input: expected a 2-D .* got shape \(\)"),
    ("rank 3 cell", lambda: RNN_CELL(np.zeros((1, 2, 3))), ValueError, r"input: expected a 1-D \(I,\) unbatched or 2-D \(N, I\) batched array, got shape \(1, 2, 3\)"),
    ("rank 0 cell", lambda: LSTM_CELL(np.float32(1)), ValueError, r"input: expected a 1-D .* got shape \(\)"),
    # -- wrong feature size
    ("features", lambda: LSTM2(np.zeros((5, 2, 4))), ValueError, r"input: expected input_size=3 features in the last axis, got 4"),
    ("features unbatched", lambda: GRU(np.zeros((5, 1))), ValueError, r"input: expected input_size=3 .* got 1"),
    ("features cell", lambda: RNN_CELL(np.zeros((2, 17))), ValueError, r"input: expected input_size=3 .* got 17"),
    # -- states: mismatched batch, wrong rank, wrong size
    ("lstm hx[0] batch", lambda: LSTM2(X, (np.zeros((2, 3, 4)), H)), ValueError, r"hx\[0\]: expected shape \(2, 2, 4\), got \(2, 3, 4\)"),
    ("lstm hx[1] batch", lambda: LSTM2(X, (H, np.zeros((2, 1, 4)))), ValueError, r"hx\[1\]: expected shape \(2, 2, 4\), got \(2, 1, 4\)"),
    ("lstm hx[0] layers", lambda: LSTM2(X, (np.zeros((1, 2, 4)), H)), ValueError, r"hx\[0\]: expected shape \(2, 2, 4\), got \(1, 2, 4\)"),
    ("gru hx hidden", lambda: GRU(np.zeros((2, 5, 3)), np.zeros((1, 2, 5))), ValueError, r"hx: expected shape \(1, 2, 4\), got \(1, 2, 5\)"),
    ("gru hx 3-D for unbatched", lambda: GRU(np.zeros((5, 3)), np.zeros((1, 1, 4))), ValueError, r"hx: expected shape \(1, 4\), got \(1, 1, 4\)"),
    ("gru hx 2-D for batched", lambda: GRU(np.zeros((2, 5, 3)), np.zeros((1, 4))), ValueError, r"hx: expected shape \(1, 2, 4\), got \(1, 4\)"),
    ("rnn hx batch", lambda: pyrnn.RNN(3, 4)(X, np.zeros((1, 3, 4))), ValueError, r"hx: expected shape \(1, 2, 4\), got \(1, 3, 4\)"),
    ("lstm hx not a pair", lambda: LSTM2(X, H), TypeError, r"hx: expected None or a pair \(h, c\), got ndarray"),
    ("lstm hx triple", lambda: LSTM2(X, (H, H, H)), TypeError, r"hx: expected None or a pair \(h, c\), got tuple"),
    ("cell hx batch", lambda: RNN_CELL(np.zeros((2, 3)), np.zeros((3, 4))), ValueError, r"hx: expected shape \(2, 4\), got \(3, 4\)"),
    ("cell hx rank", lambda: RNN_CELL(np.zeros(3), np.zeros((1, 4))), ValueError, r"hx: expected shape \(4,\), got \(1, 4\)"),
    ("lstm cell c batch", lambda: LSTM_CELL(np.zeros((2, 3)), (np.zeros((2, 4)), np.zeros((1, 4)))), ValueError, r"hx\[1\]: expected shape \(2, 4\), got \(1, 4\)"),
    ("lstm cell hx not a pair", lambda: LSTM_CELL(np.zeros((2, 3)), np.zeros((2, 4))), TypeError, r"hx: expected None or a pair \(h, c\), got ndarray"),
    # -- wrong dtype: input, states
    ("complex", lambda: LSTM2(X.astype(np.complex64)), TypeError, r"input: " + _FLOAT_DTYPES + "complex64"),
    ("object", lambda: LSTM2(X.astype(object)), TypeError, r"input: " + _FLOAT_DTYPES + "object"),
    ("string", lambda: LSTM2(np.full((5, 2, 3), "a")), TypeError, r"input: " + _FLOAT_DTYPES + "<U1"),
    ("int", lambda: LSTM2(X.astype(np.int64)), TypeError, r"input: " + _FLOAT_DTYPES + "int64"),
    ("bool", lambda: RNN_CELL(np.zeros(3, bool)), TypeError, r"input: " + _FLOAT_DTYPES + "bool"),
    ("None input", lambda: GRU(None), TypeError, r"input: " + _FLOAT_DTYPES + "object"),
    ("int list", lambda: GRU([[[1, 2, 3]]]), TypeError, r"input: " + _FLOAT_DTYPES + "int64"),
    ("ragged list", lambda: GRU([[[1.0, 2.0, 3.0]], [[1.0]]]), TypeError, r"input: expected an array of real floats, got list that numpy cannot read"),
    ("torch complex", lambda: LSTM2(torch.zeros(5, 2, 3, dtype=torch.complex64)), TypeError, r"input: " + _FLOAT_DTYPES + "complex64"),
    ("torch int", lambda: LSTM2(torch.zeros(5, 2, 3, dtype=torch.int32)), TypeError, r"input: " + _FLOAT_DTYPES + "int32"),
    ("complex lstm hx[0]", lambda: LSTM2(X, (H.astype(complex), H)), TypeError, r"hx\[0\]: " + _FLOAT_DTYPES + "complex128"),
    ("string lstm hx[1]", lambda: LSTM2(X, (H, np.full((2, 2, 4), "x"))), TypeError, r"hx\[1\]: " + _FLOAT_DTYPES + "<U1"),
    ("int cell hx", lambda: RNN_CELL(np.zeros(3), np.zeros(4, int)), TypeError, r"hx: " + _FLOAT_DTYPES + "int64"),
    # -- T = 0
    ("T=0", lambda: LSTM2(np.zeros((0, 2, 3))), ValueError, r"input: expected a sequence of at least 1 time step, got 0"),
    ("T=0 batch_first", lambda: GRU(np.zeros((2, 0, 3))), ValueError, r"input: expected a sequence of at least 1 time step, got 0"),
    ("T=0 unbatched", lambda: GRU(np.zeros((0, 3))), ValueError, r"input: expected a sequence of at least 1 time step, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(call, error, message, id=name) for name, call, error, message in CALL_CASES],
)
def test_bad_call(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        call()
    assert type(info.value) is error  # exactly ValueError/TypeError, not a subclass


CONSTRUCTOR_CASES = [
    ("negative input_size", lambda: pyrnn.LSTM(-1, 4), ValueError, r"input_size: expected an int >= 1, got -1"),
    ("zero hidden_size", lambda: pyrnn.GRU(3, 0), ValueError, r"hidden_size: expected an int >= 1, got 0"),
    ("zero num_layers", lambda: pyrnn.RNN(3, 4, num_layers=0), ValueError, r"num_layers: expected an int >= 1, got 0"),
    ("negative cell size", lambda: pyrnn.GRUCell(3, -2), ValueError, r"hidden_size: expected an int >= 1, got -2"),
    ("proj_size = hidden", lambda: pyrnn.LSTM(3, 4, proj_size=4), ValueError, r"proj_size: expected 0 or less than hidden_size=4, got 4"),
    ("proj_size > hidden", lambda: pyrnn.LSTM(3, 4, proj_size=9), ValueError, r"proj_size: expected 0 or less than hidden_size=4, got 9"),
    ("negative proj_size", lambda: pyrnn.LSTM(3, 4, proj_size=-1), ValueError, r"proj_size: expected an int >= 0, got -1"),
    ("nonlinearity typo", lambda: pyrnn.RNN(3, 4, nonlinearity="tahn"), ValueError, r"nonlinearity: expected 'tanh' or 'relu', got 'tahn'"),
    ("nonlinearity case", lambda: pyrnn.RNNCell(3, 4, nonlinearity="ReLU"), ValueError, r"nonlinearity: expected 'tanh' or 'relu', got 'ReLU'"),
    ("bool input_size", lambda: pyrnn.LSTM(True, 4), TypeError, r"input_size: expected an int, got bool True"),
    ("float input_size", lambda: pyrnn.LSTM(3.0, 4), TypeError, r"input_size: expected an int, got float 3.0"),
    ("float hidden_size", lambda: pyrnn.RNNCell(3, 4.5), TypeError, r"hidden_size: expected an int, got float 4.5"),
    ("float num_layers", lambda: pyrnn.GRU(3, 4, num_layers=2.0), TypeError, r"num_layers: expected an int, got float 2.0"),
    ("str hidden_size", lambda: pyrnn.LSTMCell(3, "4"), TypeError, r"hidden_size: expected an int, got str '4'"),
    ("float proj_size", lambda: pyrnn.LSTM(3, 4, proj_size=1.0), TypeError, r"proj_size: expected an int, got float 1.0"),
    ("dropout > 1", lambda: pyrnn.LSTM(3, 4, dropout=1.5), ValueError, r"dropout: expected a float in \[0, 1\], got 1.5"),
    ("dropout str", lambda: pyrnn.GRU(3, 4, dropout="0.1"), TypeError, r"dropout: expected a float in \[0, 1\], got '0.1'"),
    ("dropout bool", lambda: pyrnn.GRU(3, 4, dropout=np.True_), TypeError, r"dropout: expected a float in \[0, 1\], got np.True_"),
    ("dropout NaN", lambda: pyrnn.GRU(3, 4, dropout=np.float32("nan")), ValueError, r"dropout: expected a float in \[0, 1\], got nan"),
    ("bidirectional str", lambda: pyrnn.GRU(3, 4, bidirectional="yes"), TypeError, r"bidirectional: expected a bool, got str 'yes'"),
    ("bias 2", lambda: pyrnn.RNN(3, 4, bias=2), TypeError, r"bias: expected a bool, got int 2"),
    ("batch_first None", lambda: pyrnn.LSTM(3, 4, batch_first=None), TypeError, r"batch_first: expected a bool, got NoneType None"),
    ("bias numpy int 2", lambda: pyrnn.GRUCell(3, 4, bias=np.int64(2)), TypeError, r"bias: expected a bool, got int64 np.int64\(2\)"),
    ("bias bool array", lambda: pyrnn.LSTM(3, 4, bias=np.array([True])), TypeError, r"bias: expected a bool, got ndarray array\(\[ True\]\)"),
    ("from_torch Linear without example", lambda: pyrnn.from_torch(torch.nn.Linear(3, 4)), TypeError, r"example_inputs: converting a Linear captures one call of its forward; pass example tensors"),
    ("from_torch Sequential without example", lambda: pyrnn.from_torch(torch.nn.Sequential(torch.nn.LSTM(3, 4))), TypeError, r"example_inputs: converting a Sequential captures one call"),
    ("from_torch array", lambda: pyrnn.from_torch(np.zeros(3)), TypeError, r"module: expected a torch.nn.Module, got numpy.ndarray"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(c, e, m, id=name) for name, c, e, m in CONSTRUCTOR_CASES],
)
def test_bad_constructor_or_conversion(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_positional_arguments_follow_torch() -> None:
    """torch.nn.RNN's fourth positional argument is nonlinearity; LSTM's is bias."""
    assert pyrnn.RNN(3, 4, 2, "relu").config["nonlinearity"] == "relu"
    assert pyrnn.LSTM(3, 4, 2, False).config["bias"] is False
    assert pyrnn.RNNCell(3, 4, False, "relu").config == {
        "kind": "rnn_cell",
        "input_size": 3,
        "hidden_size": 4,
        "bias": False,
        "nonlinearity": "relu",
    }


def test_numpy_scalars_are_accepted_for_bool_and_float_arguments() -> None:
    """Flags and rates read from arrays or .npz configs arrive as numpy.bool_ / numpy floats;
    they mean what the Python values mean, and the config stores Python types (JSON-ready)."""
    lstm = pyrnn.LSTM(
        3, 4, bias=np.False_, batch_first=np.True_, bidirectional=np.True_, dropout=np.float32(0.25)
    )
    config = lstm.config
    assert (config["bias"], config["batch_first"], config["bidirectional"]) == (False, True, True)
    assert type(config["bias"]) is bool and type(config["dropout"]) is float
    assert config["dropout"] == 0.25
    assert "bias_ih_l0" not in lstm.state_dict()
    assert lstm(np.zeros((2, 5, 3), np.float32))[0].shape == (2, 5, 8)  # batch_first, 2 directions
    assert pyrnn.GRUCell(3, 4, bias=np.True_).config["bias"] is True
    assert pyrnn.RNN(3, 4, bias=np.bool_(False)).config == pyrnn.RNN(3, 4, bias=False).config


def test_state_errors_name_the_argument_the_caller_passed() -> None:
    """Modules and cells take their initial state as ``hx`` (LSTMs: the pair ``hx`` = (h, c)),
    streams as ``s.state``; a wrong state is reported under that name."""
    x_seq, x_cell, wrong = np.zeros((2, 1, 3)), np.zeros((1, 3)), np.zeros((9, 9))
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: pyrnn.RNN(3, 4)(x_seq, wrong), "hx"),
        (lambda: pyrnn.GRU(3, 4)(x_seq, wrong), "hx"),
        (lambda: pyrnn.LSTM(3, 4)(x_seq, (wrong, np.zeros((1, 1, 4)))), "hx[0]"),
        (lambda: pyrnn.LSTM(3, 4)(x_seq, (np.zeros((1, 1, 4)), wrong)), "hx[1]"),
        (lambda: pyrnn.RNNCell(3, 4)(x_cell, wrong), "hx"),
        (lambda: pyrnn.GRUCell(3, 4)(x_cell, wrong), "hx"),
        (lambda: pyrnn.LSTMCell(3, 4)(x_cell, (wrong, np.zeros((1, 4)))), "hx[0]"),
        (lambda: pyrnn.LSTMCell(3, 4)(x_cell, (np.zeros((1, 4)), wrong)), "hx[1]"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=rf"^{re.escape(name)}: expected shape \("):
            call()
    gru_stream, lstm_stream = pyrnn.GRU(3, 4).stream(), pyrnn.LSTM(3, 4).stream()
    for stream, value, name in [
        (gru_stream, wrong, "state"),
        (lstm_stream, (wrong, np.zeros((1, 4))), "state[0]"),
        (lstm_stream, (np.zeros((1, 4)), wrong), "state[1]"),
    ]:
        with pytest.raises(ValueError, match=rf"^{re.escape(name)}: expected shape \("):
            stream.state = value


# -- arrays that are not what they seem ------------------------------------------------------
_META = "expected a tensor with data, got a tensor of shape .* on the meta device, which has none; materialise it first \\(e.g. module.to_empty\\(device='cpu'\\), then load the weights\\)"
_MASKED = r"expected a plain array, got a numpy masked array, whose mask would be ignored; fill the masked values first "
_PACKED = r"expected an array, got a PackedSequence, which only the RNN, LSTM and GRU modules take; pad it first: padded, lengths = pyrnn.pad_packed_sequence\(packed\)"


def _meta(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, device="meta")


def _masked(array: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.masked_array(array, mask=np.zeros(array.shape, bool))


def _packed() -> Any:
    return torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(5, 2, 3), [5, 3])


class _Pair(NamedTuple):
    x: np.ndarray
    lengths: list[int]


GRU_STREAM = GRU.stream(batch=2)  # batch_first: feed takes (2, T, 3)
LSTM2_STREAM = LSTM2.stream(batch=2)
GRU_KEYS = GRU.state_dict()

ARRAY_KIND_CASES = [
    # -- torch tensors on the meta device: shape, no data
    ("meta input", lambda: GRU(_meta(2, 5, 3)), ValueError, r"^input: " + _META),
    ("meta hx", lambda: GRU(np.zeros((2, 5, 3)), _meta(1, 2, 4)), ValueError, r"^hx: " + _META),
    ("meta lstm hx[1]", lambda: LSTM2(X, (H, _meta(2, 2, 4))), ValueError, r"^hx\[1\]: " + _META),
    ("meta cell input", lambda: RNN_CELL(_meta(3)), ValueError, r"^input: " + _META),
    ("meta step", lambda: GRU_STREAM.step(_meta(2, 3)), ValueError, r"^x: " + _META),
    ("meta feed", lambda: GRU_STREAM.feed(_meta(2, 5, 3)), ValueError, r"^x: " + _META),
    ("meta state", lambda: setattr(LSTM2_STREAM, "state", (H, _meta(2, 2, 4))), ValueError, r"^state\[1\]: " + _META),
    ("meta state_dict", lambda: GRU.load_state_dict({**GRU_KEYS, "weight_hh_l0": _meta(12, 4)}), ValueError, r"^state_dict\['weight_hh_l0'\]: " + _META),
    ("meta from_torch", lambda: pyrnn.from_torch(torch.nn.LSTM(3, 4, device="meta")), ValueError, r"^module: expected weights with data, got 4 on the meta device, which have none \(weight_ih_l0, weight_hh_l0, bias_ih_l0, \.\.\.\); materialise them first \(e\.g\. module\.to_empty\(device='cpu'\), then load the weights\)"),
    # -- packed sequences, named tuples and tuples of arrays: numpy would stack them
    ("packed cell input", lambda: RNN_CELL(_packed()), TypeError, r"^input: " + _PACKED),
    ("packed feed", lambda: GRU_STREAM.feed(_packed()), TypeError, r"^x: " + _PACKED),
    ("named tuple input", lambda: GRU(_Pair(np.zeros((2, 5, 3)), [5, 3])), TypeError, r"^input: expected an array, got the named tuple _Pair\('x', 'lengths'\); pass the array itself"),
    ("tuple of arrays", lambda: GRU((np.zeros((5, 3)), np.zeros((5, 3)))), TypeError, r"^input: expected one array, got a tuple holding 2 array\(s\); pass one array \(np.stack makes one from several\)"),
    ("tuple of tensors hx", lambda: pyrnn.GRU(3, 4)(np.zeros((5, 3)), (torch.zeros(1, 4),)), TypeError, r"^hx: expected one array, got a tuple holding 1 array\(s\)"),
    # -- masked arrays: the mask would be dropped
    ("masked input", lambda: LSTM2(_masked(X)), TypeError, r"^input: " + _MASKED + r"\(input.filled\(0.0\)\)"),
    ("masked hx[0]", lambda: LSTM2(X, (_masked(H), H)), TypeError, r"^hx\[0\]: " + _MASKED + r"\(hx\[0\].filled\(0.0\)\)"),
    ("masked cell hx", lambda: RNN_CELL(np.zeros(3), _masked(np.zeros(4))), TypeError, r"^hx: " + _MASKED),
    ("masked step", lambda: GRU_STREAM.step(_masked(np.zeros((2, 3), np.float32))), TypeError, r"^x: " + _MASKED + r"\(x.filled\(0.0\)\)"),
    ("masked feed", lambda: GRU_STREAM.feed(_masked(np.zeros((2, 5, 3), np.float32))), TypeError, r"^x: " + _MASKED),
    ("masked step out", lambda: GRU_STREAM.step(np.zeros((2, 3)), out=_masked(np.zeros((2, 4), np.float32))), TypeError, r"^out: expected a plain numpy array, got a numpy masked array, whose mask would be ignored; pass a plain array \(np.empty\(shape, np.float32\) makes one\)"),
    ("masked feed out", lambda: GRU_STREAM.feed(np.zeros((2, 5, 3)), out=_masked(np.zeros((2, 5, 4), np.float32))), TypeError, r"^out: expected a plain numpy array, got a numpy masked array"),
    ("masked state", lambda: setattr(LSTM2_STREAM, "state", (_masked(H), H)), TypeError, r"^state\[0\]: " + _MASKED),
    ("masked state_dict", lambda: GRU.load_state_dict({**GRU_KEYS, "bias_ih_l0": _masked(GRU_KEYS["bias_ih_l0"])}), TypeError, r"^state_dict\['bias_ih_l0'\]: " + _MASKED),
    # -- half an LSTM state: torch refuses it too
    ("lstm hx c None", lambda: LSTM2(X, (H, None)), TypeError, r"^hx\[1\]: expected an array \(the initial c\), got None; pass both h and c, or hx=None for zero states"),
    ("lstm hx h None", lambda: LSTM2(X, (None, H)), TypeError, r"^hx\[0\]: expected an array \(the initial h\), got None"),
    ("lstm hx both None", lambda: LSTM2(X, [None, None]), TypeError, r"^hx\[0\]: expected an array \(the initial h\), got None"),
    ("lstm cell hx c None", lambda: LSTM_CELL(np.zeros(3), (np.zeros(4), None)), TypeError, r"^hx\[1\]: expected an array \(the initial c\), got None"),
    ("lstm state c None", lambda: setattr(LSTM2_STREAM, "state", (H, None)), TypeError, r"^state\[1\]: expected an array, got None; an LSTM stream's state is the pair \(h, c\), both given \(reset\(\) zeroes it\)"),
    ("gru state None", lambda: setattr(GRU_STREAM, "state", None), TypeError, r"^state: expected an array, got None \(reset\(\) zeroes the state\)"),
    # -- ints the core takes as int
    ("batch 2**31", lambda: GRU.stream(batch=2**31), ValueError, r"^batch: expected at most 2\*\*31-1 rows \(the core's limit\), got 2147483648$"),
    ("batch 2**70", lambda: GRU.stream(batch=2**70), ValueError, r"^batch: expected at most 2\*\*31-1 rows"),
    ("reset row 2**40", lambda: GRU_STREAM.reset(2**40), IndexError, r"^rows: index 1099511627776 is out of range for a stream of batch=2"),
    ("core reset row 2**31", lambda: GRU_STREAM._reset_row(2**31), ValueError, r"^rows: expected an int in \[0, 2\*\*31-1\], got 2147483648"),
    ("core reset row float", lambda: GRU_STREAM._reset_row(1.0), TypeError, r"^rows: expected an int, got float"),
    ("time_steps count 2**31", lambda: _testing.time_steps(GRU_STREAM, np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), 2**31), ValueError, r"^count: expected an int in \[0, 2\*\*31-1\], got 2147483648"),
    ("time_steps count -1", lambda: _testing.time_steps(GRU_STREAM, np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), -1), ValueError, r"^count: expected an int in \[0, 2\*\*31-1\], got -1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [pytest.param(c, e, m, id=name) for name, c, e, m in ARRAY_KIND_CASES],
)
def test_array_kinds_that_would_mislead(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    before = {key: value.copy() for key, value in GRU.state_dict().items()}
    GRU_STREAM.reset()
    LSTM2_STREAM.reset()
    with pytest.raises(error, match=message) as info:
        call()
    assert type(info.value) is error
    for key, value in GRU.state_dict().items():  # a refused load changes nothing
        np.testing.assert_array_equal(value, before[key])
    assert not np.any(GRU_STREAM.state) and not np.any(LSTM2_STREAM.state[0])  # nor a step


# -- state_dict keys ------------------------------------------------------------------------
def _lstm_weights(**changes: Any) -> dict[str, Any]:
    weights: dict[str, Any] = pyrnn.LSTM(3, 4, seed=1).state_dict()
    for key, value in changes.items():
        if value is None:
            del weights[key]
        else:
            weights[key] = value
    return weights


STATE_DICT_CASES = [
    ("missing key", _lstm_weights(bias_hh_l0=None), True, ValueError, r"state_dict: missing keys \['bias_hh_l0'\] for LSTM\(3, 4\); expected exactly \['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0'\]"),
    ("extra key", _lstm_weights(weight_hr_l0=np.zeros((2, 4))), True, ValueError, r"state_dict: unexpected keys \['weight_hr_l0'\] for LSTM\(3, 4\); expected exactly \['weight_ih_l0'"),
    ("missing and extra", _lstm_weights(weight_ih_l0=None, weight_ih_l1=np.zeros((16, 4))), True, ValueError, r"missing keys \['weight_ih_l0'\] and unexpected keys \['weight_ih_l1'\]"),
    ("mis-shaped", _lstm_weights(weight_ih_l0=np.zeros((16, 4))), True, ValueError, r"state_dict\['weight_ih_l0'\]: expected shape \(16, 3\), got \(16, 4\)"),
    ("mis-shaped bias", _lstm_weights(bias_ih_l0=np.zeros((16, 1))), False, ValueError, r"state_dict\['bias_ih_l0'\]: expected shape \(16,\), got \(16, 1\)"),
    ("transposed weight", _lstm_weights(weight_hh_l0=np.zeros((4, 16))), False, ValueError, r"state_dict\['weight_hh_l0'\]: expected shape \(16, 4\), got \(4, 16\)"),
    ("complex weight", _lstm_weights(weight_ih_l0=np.zeros((16, 3), complex)), True, TypeError, r"state_dict\['weight_ih_l0'\]: " + _FLOAT_DTYPES + "complex128"),
    ("int weight", _lstm_weights(bias_hh_l0=np.zeros(16, int)), True, TypeError, r"state_dict\['bias_hh_l0'\]: " + _FLOAT_DTYPES + "int64"),
    ("None weight", _lstm_weights(weight_hh_l0=np.array(None)), True, TypeError, r"state_dict\['weight_hh_l0'\]: " + _FLOAT_DTYPES + "object"),
    ("not a mapping", [("weight_ih_l0", np.zeros((16, 3)))], True, TypeError, r"state_dict: expected a mapping of key -> array, got list"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("state_dict", "strict", "error", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in STATE_DICT_CASES],
)
def test_bad_state_dict(
    state_dict: Any, strict: bool, error: type[Exception], message: str
) -> None:
    module = pyrnn.LSTM(3, 4, seed=0)
    before = module.state_dict()
    with pytest.raises(error, match=message):
        module.load_state_dict(state_dict, strict=strict)
    for key, value in module.state_dict().items():  # all or nothing
        np.testing.assert_array_equal(value, before[key])


def test_cell_state_dict_key_names() -> None:
    with pytest.raises(ValueError, match=r"missing keys \['weight_ih', 'weight_hh', 'bias_ih', "):
        pyrnn.GRUCell(3, 4).load_state_dict(pyrnn.GRU(3, 4).state_dict())


# -- files ------------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_header(path: Path, header: bytes, data: bytes = b"") -> Path:
    return _write(path, struct.pack("<Q", len(header)) + header + data)


def _with_metadata(path: Path, metadata: dict[str, str] | None, **shape_changes: Any) -> Path:
    weights = _lstm_weights(**shape_changes)
    save_file({k: np.asarray(v, np.float32) for k, v in weights.items()}, path, metadata)
    return path


def _config(**config: Any) -> dict[str, str]:
    full = {"kind": "lstm", "input_size": 3, "hidden_size": 4, **config}
    return {"format": "pyrnn", "version": "1", "config": json.dumps(full)}


def _all(*parts: str) -> str:
    """A pattern matching text that contains every part, in any order: for messages whose
    wording may change while naming the same key, expected and actual values."""
    return "".join(f"(?=.*{part})" for part in parts)


FILE_CASES = [
    ("text file", lambda p: _write(p, b"hello, this is not a model"), {}, r"header length \d+ exceeds the file \(26 bytes\) .*not a safetensors file or truncated"),
    ("empty file", lambda p: _write(p, b""), {}, r"0 bytes is too short for a safetensors header"),
    ("7 bytes", lambda p: _write(p, b"\x01" * 7), {}, r"7 bytes is too short for a safetensors header"),
    ("header not JSON", lambda p: _with_header(p, b'{"a": 1'), {}, r"header is not valid JSON"),
    ("header not UTF-8", lambda p: _with_header(p, b"\xff\xfe{}"), {}, r"header is not valid JSON"),
    ("header a list", lambda p: _with_header(p, b"[1, 2]"), {}, r"header must be a JSON object, got list"),
    ("metadata not strings", lambda p: _with_header(p, b'{"__metadata__": {"format": 1}}'), {}, r"__metadata__ must map strings to strings"),
    ("bad dtype", lambda p: _with_header(p, b'{"w": {"dtype": "I8", "shape": [1], "data_offsets": [0, 1]}}', b"\0"), {}, r"tensor 'w': dtype must be one of \['F16', 'F32', 'F64'\], got 'I8'"),
    ("truncated data", lambda p: _with_header(p, b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}', b"\0" * 8), {}, r"tensor 'w': data_offsets \[0, 16\] outside the 8-byte data section"),
    ("size mismatch", lambda p: _with_header(p, b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}', b"\0" * 16), {}, r"tensor 'w': shape \[3\] of F32 needs 12 bytes, data_offsets give 16"),
    ("negative shape", lambda p: _with_header(p, b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}'), {}, _all(r"tensor 'w'", "non-negative ints", r"got \[-1\]")),
    ("overlap", lambda p: _with_header(p, b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}', b"\0" * 12), {}, r"tensors 'a' and 'b' overlap"),
    ("no metadata, no kind", lambda p: _with_metadata(p, None), {}, r"no pyrnn metadata \(format=None\); to load a plain PyTorch state_dict pass kind='lstm'"),
    ("foreign format, no kind", lambda p: _with_metadata(p, {"format": "pt"}), {}, r"no pyrnn metadata \(format='pt'\)"),
    ("no version", lambda p: _with_metadata(p, {"format": "pyrnn", "config": "{}"}), {}, r"pyrnn format version None is not supported \(expected '1' or '2'\)"),
    ("future version", lambda p: _with_metadata(p, {**_config(), "version": "3"}), {}, r"pyrnn format version '3' is not supported \(expected '1' or '2'\); upgrade pyrnn"),
    ("version 2 without graph", lambda p: _with_metadata(p, {**_config(), "version": "2"}), {}, r"pyrnn metadata of version 2 lacks 'graph'"),
    ("no config", lambda p: _with_metadata(p, {"format": "pyrnn", "version": "1"}), {}, r"pyrnn metadata lacks 'config'"),
    ("config not JSON", lambda p: _with_metadata(p, {**_config(), "config": "{kind: lstm"}), {}, r"metadata 'config' is not JSON"),
    ("config a list", lambda p: _with_metadata(p, {**_config(), "config": "[1]"}), {}, r"metadata 'config' must be a JSON object, got \[1\]"),
    ("config lacks hidden_size", lambda p: _with_metadata(p, {**_config(), "config": '{"kind": "lstm", "input_size": 3}'}), {}, r"invalid config: config: missing required fields \['hidden_size'\]"),
    ("config unknown field", lambda p: _with_metadata(p, _config(colour="red")), {}, r"invalid config: config: unknown fields \['colour'\]; expected some of \["),
    ("config bad kind", lambda p: _with_metadata(p, _config(kind="transformer")), {}, r"invalid config: kind: expected one of rnn, lstm, gru, rnn_cell, lstm_cell, gru_cell, got 'transformer'"),
    ("config negative size", lambda p: _with_metadata(p, _config(hidden_size=-4)), {}, r"invalid config: hidden_size: expected an int >= 1, got -4"),
    ("config float size", lambda p: _with_metadata(p, _config(input_size=3.5)), {}, r"invalid config: input_size: expected an int, got float 3.5"),
    ("config bool size", lambda p: _with_metadata(p, _config(input_size=True)), {}, r"invalid config: input_size: expected an int, got bool True"),
    ("config vs weights", lambda p: _with_metadata(p, _config(hidden_size=5)), {}, _all("'weight_ih_l0'", r"\(20, 3\)", r"\(16, 3\)")),
    ("config more layers", lambda p: _with_metadata(p, _config(num_layers=2)), {}, _all("missing", r"'weight_ih_l1', 'weight_hh_l1', 'bias_ih_l1', 'bias_hh_l1'")),
    ("file extra key", lambda p: _with_metadata(p, _config(), extra=np.zeros(2)), {}, _all("unexpected", r"\['extra'\]")),
    ("prefix matches nothing", lambda p: _with_metadata(p, None), {"kind": "lstm", "prefix": "enc."}, r"no tensor key starts with prefix 'enc.'; keys begin \['bias_hh_l0'"),
    ("kind does not fit", lambda p: _with_metadata(p, None), {"kind": "gru"}, r"'weight_ih_l0' has shape \(16, 3\); a gru needs \(3\*hidden_size, input_size\)"),
    ("sequence weights as cell", lambda p: _with_metadata(p, None), {"kind": "lstm_cell"}, r"no 'weight_ih' under the prefix; found \['bias_hh_l0'"),
    ("lstm weights as rnn", lambda p: _with_metadata(p, None), {"kind": "rnn"}, _all("'weight_hh_l0'", r"\(16, 16\)", r"\(16, 4\)")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make", "options", "message"),
    [pytest.param(make, options, message, id=name) for name, make, options, message in FILE_CASES],
)
def test_bad_file(tmp_path: Path, make, options: dict[str, Any], message: str) -> None:
    path = make(tmp_path / "model.safetensors")
    with pytest.raises(pyrnn.FormatError, match=re.escape(str(path)) + ": .*" + message):
        pyrnn.load(path, **options)


def test_format_error_is_a_value_error() -> None:
    assert issubclass(pyrnn.FormatError, ValueError)


def test_unknown_kind_is_a_value_error(tmp_path: Path) -> None:
    path = _with_metadata(tmp_path / "plain.safetensors", None)
    with pytest.raises(ValueError, match=r"kind: expected one of rnn, lstm, .* got 'lstmm'"):
        pyrnn.load(path, kind="lstmm")


def test_save_refuses_non_modules(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"module: expected a pyrnn module or pyrnn\.Model, got Linear"
    ):
        pyrnn.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def _read_only(shape: tuple[int, ...]) -> np.ndarray:
    array = np.zeros(shape, np.float32)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize(
    ("name", "hn", "cn", "message"),
    [
        ("hn float64", np.zeros((2, 2, 4)), None, r"hn: expected dtype float32, got float64"),
        ("cn float64", None, np.zeros((2, 2, 4)), r"cn: expected dtype float32, got float64"),
        (
            "hn Fortran order",
            np.zeros((2, 2, 4), np.float32, order="F"),
            None,
            r"hn: expected a C-contiguous array",
        ),
        (
            "cn read-only",
            None,
            _read_only((2, 2, 4)),
            r"cn: is read-only",
        ),
    ],
)
def test_core_forward_refuses_state_outputs_it_would_have_to_copy(
    name: str, hn: np.ndarray | None, cn: np.ndarray | None, message: str
) -> None:
    # The private core call writes hn/cn in place; a converted copy would silently drop them.
    hn = np.full((2, 2, 4), np.nan, np.float32) if hn is None else hn
    cn = np.full((2, 2, 4), np.nan, np.float32) if cn is None else cn
    out = np.empty((5, 2, 4), np.float32)
    with pytest.raises(ValueError, match=message):
        LSTM2._network.forward(X, out, None, None, hn, cn)


def test_core_forward_writes_the_state_outputs_it_is_given() -> None:
    hn, cn = np.full((2, 2, 4), np.nan, np.float32), np.full((2, 2, 4), np.nan, np.float32)
    LSTM2._network.forward(X, np.empty((5, 2, 4), np.float32), None, None, hn, cn)
    _, (ref_h, ref_c) = LSTM2(X)
    np.testing.assert_array_equal(hn, ref_h)
    np.testing.assert_array_equal(cn, ref_c)


def _core_overlap_cases() -> list[Any]:
    buffer = np.zeros(64, np.float32)

    def view(start: int, *shape: int) -> np.ndarray:
        return buffer[start : start + int(np.prod(shape))].reshape(shape)

    bi = pyrnn.GRU(2, 1, bidirectional=True, seed=0)  # out has 2 features, as x has
    lstm = pyrnn.LSTM(2, 2, seed=0)  # x (3, 1, 2), out (3, 1, 2), h0/c0/hn/cn (1, 1, 2)
    x, out = np.ones((3, 1, 2), np.float32), np.empty((3, 1, 2), np.float32)
    h, c = np.ones((1, 1, 2), np.float32), np.ones((1, 1, 2), np.float32)
    hn, cn = np.empty((1, 1, 2), np.float32), np.empty((1, 1, 2), np.float32)
    shared = view(0, 3, 1, 2)
    return [
        # A bidirectional layer reads x again after writing out: not even out=x is safe there.
        pytest.param(bi, shared, shared, None, None, view(8, 2, 1, 1), None, "out", "x", id="out is x"),
        pytest.param(lstm, view(0, 3, 1, 2), view(4, 3, 1, 2), h, c, hn, cn, "out", "x", id="out shifted over x"),
        pytest.param(lstm, x, out, view(0, 1, 1, 2), c, view(0, 1, 1, 2), cn, "hn", "h0", id="hn is h0"),
        pytest.param(lstm, x, out, h, view(0, 1, 1, 2), hn, view(1, 1, 1, 2), "cn", "c0", id="cn over c0"),
        pytest.param(lstm, x, view(0, 3, 1, 2), h, c, view(4, 1, 1, 2), cn, "hn", "out", id="hn inside out"),
        pytest.param(lstm, x, out, view(0, 1, 1, 2), c, hn, view(1, 1, 1, 2), "cn", "h0", id="cn over h0"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("module", "x", "out", "h0", "c0", "hn", "cn", "output", "other"), _core_overlap_cases()
)
def test_core_forward_refuses_outputs_sharing_memory(
    module: pyrnn.Module,
    x: Any,
    out: Any,
    h0: Any,
    c0: Any,
    hn: Any,
    cn: Any,
    output: str,
    other: str,
) -> None:
    # The private core call writes out, hn and cn in place: each must share no memory with x,
    # h0, c0 or another output. (forward() always makes fresh ones.)
    with pytest.raises(ValueError, match=rf"^{output}: overlaps {other} in memory; expected an array sharing no memory with {other} \(np.empty_like makes one\)"):  # fmt: skip
        module._network.forward(x, out, h0, c0, hn, cn)
