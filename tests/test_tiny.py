"""Tiny networks (one row, H <= 64, I <= 4): their streams run the tiny kernels, which must agree
with the float64 oracle (numpy_reference) within the stated tolerance and with the general path
(forward()) as closely as a stream always has, on every ISA, at every specialised hidden size and
the sizes between them; everything else must fall back to the general path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy_reference
import pytest

import pyrnn

# Specialised sizes (4, 8, 12, 16, 24, 32, 48, 64), the sizes just around them, and 65, which
# takes the general path.
HIDDEN = [1, 3, 5, 8, 9, 16, 17, 31, 32, 33, 48, 64, 65]
INPUTS = [1, 2, 3, 4, 5]
KINDS = ["lstm", "gru", "rnn", "rnn_relu"]
# The stated agreement with float64 (README "Numerics", tests/parity_helpers.py): ATOL + RTOL
# |ref| + SUM_RTOL * S; S, the largest sum of |terms| of a pre-activation, is below 20 for these
# seeded PyTorch-initialised networks on standard normal input, so SUM_RTOL * S <= 5e-6.
ATOL, RTOL, SUM_RTOL, SCALE = 1e-5, 1e-5, 4 * 2.0**-24, 20.0
# Streams against forward(), as tests/test_stream.py holds them: the scalar kernels sum in the
# same order on both paths (exact); SIMD kernels may group a sum differently.
SIMD_ATOL, SIMD_RTOL = 1e-6, 1e-6


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    yield request.param
    pyrnn.set_isa(previous)


def make(kind: str, input_size: int, hidden: int, **options: Any) -> pyrnn.Module:
    if kind == "rnn_relu":
        return pyrnn.RNN(input_size, hidden, nonlinearity="relu", seed=5, **options)
    factory = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind]
    return factory(input_size, hidden, seed=5, **options)


def oracle(module: pyrnn.Module, x: np.ndarray) -> np.ndarray:
    """float64 outputs (T, P) of an unbatched run from zero state."""
    out, _, _ = numpy_reference.sequence(module.config, module.state_dict(), x[:, None, :])
    return out[:, 0]


def assert_oracle(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, atol=ATOL + SUM_RTOL * SCALE, rtol=RTOL)


def assert_general(actual: np.ndarray, expected: np.ndarray) -> None:
    if pyrnn.active_isa() == "scalar":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, atol=SIMD_ATOL, rtol=SIMD_RTOL)


def general(module: pyrnn.Module, x: np.ndarray) -> np.ndarray:
    """forward() over x (T, I) as one batch row: the general path."""
    out, _ = module(x[:, None, :])
    return np.asarray(out)[:, 0]


def fed_in_chunks(stream: pyrnn.Stream, x: np.ndarray, lengths: list[int]) -> np.ndarray:
    pieces, start = [], 0
    for length in itertools.cycle(lengths):
        stop = min(len(x), start + length)
        pieces.append(stream.feed(x[start:stop]))
        start = stop
        if start == len(x):
            return np.concatenate(pieces)
    raise AssertionError("unreachable")


def check(module: pyrnn.Module, steps: int = 300) -> None:
    """Steps, then feeds in chunks of 1 and 7 in turn and of 256, against the oracle and
    forward()."""
    x = np.random.default_rng(1).standard_normal((steps, module.config["input_size"]))
    x = x.astype(np.float32)
    expected, reference = general(module, x), oracle(module, x)
    stepped = module.stream()
    got = np.stack([stepped.step(row) for row in x])
    assert_general(got, expected)
    assert_oracle(got, reference)
    for lengths in ([1, 7], [256]):
        got = fed_in_chunks(module.stream(), x, lengths)
        assert_general(got, expected)
        assert_oracle(got, reference)


def is_tiny(kind: str, input_size: int, hidden: int) -> bool:
    return input_size <= 4 and hidden <= 64


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_size_matches_oracle(isa: str, kind: str, hidden: int) -> None:
    module = make(kind, 2, hidden)
    assert module.stream()._tiny == is_tiny(kind, 2, hidden)
    check(module, steps=120)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("input_size", INPUTS)
@pytest.mark.parametrize("hidden", [1, 8, 17, 32, 64])
def test_every_input_size_matches_oracle(isa: str, kind: str, input_size: int, hidden: int) -> None:
    module = make(kind, input_size, hidden)
    assert module.stream()._tiny == is_tiny(kind, input_size, hidden)
    check(module, steps=80)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("layers", "hidden"), [(2, 16), (2, 5), (3, 33), (2, 64)])
def test_stacked_layers_match_oracle(isa: str, kind: str, layers: int, hidden: int) -> None:
    module = make(kind, 1, hidden, num_layers=layers)
    assert module.stream()._tiny
    check(module, steps=200)


def test_state_reset_and_clone_mid_stream(isa: str) -> None:
    """State read and written, reset, and clones, between tiny steps and feeds: the stream
    carries on exactly as a general one does from the same state."""
    module = make("lstm", 1, 24, num_layers=2)
    x = np.random.default_rng(2).standard_normal((90, 1)).astype(np.float32)
    stream = module.stream()
    assert stream._tiny
    stream.feed(x[:31])  # odd: the state is in the other h buffer now
    state = stream.state
    twin = stream.clone()
    assert twin._tiny
    rest = stream.feed(x[31:])
    np.testing.assert_array_equal(twin.feed(x[31:]), rest)
    fresh = module.stream()
    fresh.state = state
    np.testing.assert_array_equal(np.stack([fresh.step(row) for row in x[31:]]), rest)
    # The general path (a batch of one row through forward) from the same state.
    h0, c0 = state
    expected, _ = module(x[31:, None, :], (h0[:, None, :], c0[:, None, :]))
    assert_general(rest, np.asarray(expected)[:, 0])
    stream.reset()
    assert_general(stream.feed(x), general(module, x))


def test_batch_of_one_row_is_tiny_and_larger_batches_fall_back(isa: str) -> None:
    module = make("gru", 3, 12)
    x = np.random.default_rng(3).standard_normal((60, 4, 3)).astype(np.float32)
    one = module.stream(batch=1)
    assert one._tiny
    assert_general(one.feed(x[:, :1]), np.asarray(module(x[:, :1])[0]))
    four = module.stream(batch=4)
    assert not four._tiny
    expected = np.asarray(module(x)[0])
    np.testing.assert_allclose(four.feed(x), expected, atol=SIMD_ATOL, rtol=SIMD_RTOL)
    four.reset(rows=[1])  # the general path's reset(rows) is unchanged
    assert not np.any(four.state[:, 1])


def test_general_networks_fall_back() -> None:
    """Shapes and variants the tiny kernels do not cover run the general path, correctly."""
    cases = [
        make("lstm", 5, 8),  # I > 4
        make("lstm", 1, 65),  # H > 64
        make("lstm", 1, 16, proj_size=4),
    ]
    for module in cases:
        assert not module.stream()._tiny
        check(module, steps=40)
    narrow = pyrnn.quantize(make("lstm", 1, 16), "fp16")  # narrow weights
    stream = narrow.stream()
    assert not stream._tiny
    x = np.random.default_rng(4).standard_normal((40, 1)).astype(np.float32)
    assert_general(stream.feed(x), general(narrow, x))


def test_nan_input_propagates(isa: str) -> None:
    module = make("lstm", 1, 8)
    stream = module.stream()
    x = np.zeros((5, 1), np.float32)
    x[2] = np.nan
    out = stream.feed(x)
    assert np.all(np.isfinite(out[:2])) and np.all(np.isnan(out[2:]))
