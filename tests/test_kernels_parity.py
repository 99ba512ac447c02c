"""Smoke parity of every ISA's kernels against PyTorch: every cell kind over the awkward sizes
(remainders of 8- and 16-lane vectors and of the 16-unit blocks), batch sizes that exercise
the matrix-vector step (1) and each register-tile height with its remainders (2, 5, 64), and
projected LSTMs. The full parity grid lives with the module tests; this one targets kernels."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import pyrnn

torch = pytest.importorskip("torch")

# float32 kernels vs PyTorch's float32 (MKL) with different summation orders and activation
# approximations (documented <= 2e-7 relative): 1e-5 absolute for bounded values, plus 1e-5
# relative for relu RNNs whose outputs are unbounded.
ATOL = 1e-5
RTOL = 1e-5

SIZES = [1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65]
KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    before = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    yield str(request.param)
    pyrnn.set_isa(before)


def _torch_module(kind: str, input_size: int, hidden: int, **options: object) -> object:
    torch.manual_seed(input_size * 1000 + hidden)
    if kind == "lstm":
        return torch.nn.LSTM(input_size, hidden, **options)
    if kind == "gru":
        return torch.nn.GRU(input_size, hidden, **options)
    return torch.nn.RNN(input_size, hidden, nonlinearity=kind[4:], **options)


def _check(module: object, steps: int, batch: int, input_size: int) -> None:
    rng = np.random.default_rng(steps * 100 + batch)
    x = rng.standard_normal((steps, batch, input_size)).astype(np.float32)
    with torch.inference_mode():
        expected, expected_state = module(torch.from_numpy(x))
    ours = pyrnn.from_torch(module)
    out, state = ours(x)
    np.testing.assert_allclose(out, expected.numpy(), atol=ATOL, rtol=RTOL)
    if isinstance(expected_state, tuple):
        for got, want in zip(state, expected_state, strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=ATOL, rtol=RTOL)
    else:
        np.testing.assert_allclose(state, expected_state.numpy(), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("hidden", SIZES)
def test_hidden_sizes(isa: str, kind: str, hidden: int) -> None:
    for batch in (1, 5):
        _check(_torch_module(kind, 9, hidden), steps=6, batch=batch, input_size=9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("input_size", SIZES)
def test_input_sizes(isa: str, kind: str, input_size: int) -> None:
    _check(_torch_module(kind, input_size, 17), steps=5, batch=2, input_size=input_size)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [1, 2, 5, 64])
def test_batch_sizes(isa: str, kind: str, batch: int) -> None:
    _check(_torch_module(kind, 65, 63), steps=4, batch=batch, input_size=65)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("batch", [1, 2, 5, 64])
@pytest.mark.parametrize(("hidden", "proj"), [(17, 1), (33, 15), (64, 17), (65, 64)])
def test_projected_lstm(isa: str, hidden: int, proj: int, batch: int) -> None:
    module = _torch_module("lstm", 7, hidden, proj_size=proj)
    _check(module, steps=5, batch=batch, input_size=7)


@pytest.mark.parametrize("kind", KINDS)
def test_stacked_bidirectional_long(isa: str, kind: str) -> None:
    # 150 steps: more than one input-projection chunk for batch 1 (128 steps per chunk).
    module = _torch_module(kind, 16, 32, num_layers=2, bidirectional=True)
    _check(module, steps=150, batch=1, input_size=16)
    _check(module, steps=20, batch=3, input_size=16)
