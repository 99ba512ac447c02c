"""Properties that must hold for every module configuration (hypothesis draws the configs and
data): feeding a sequence in chunks or step by step, carrying the state, equals feeding it
whole, through forward() and through streams (feed in chunks, step); a cell stepped by hand
equals the one-layer sequence module; batch rows are independent; save/load is the identity;
every ISA agrees with the double-precision reference oracle. Every property runs once per ISA
(the `isa` fixture).

Tolerances, as atol + rtol*|ref|:
- same kernels, different grouping of the same work (chunks, steps, permuted rows): exact on
  the scalar kernels, whose every output is the same dot products in the same order; 1e-6 +
  1e-6*|ref| on SIMD kernels, which block the GEMM's rows (and fold a one-step chunk's input
  projection into the step) differently, so a sum may round in another order.
- float32 kernels vs the float64 oracle: 1e-5 + 1e-5*|ref|, the bound cpp/tests/test_forward.cpp
  documents (bounded tanh/sigmoid values; the relative part for relu RNNs that grow)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import oracle_forward

import pyrnn

SAME_WORK = {"atol": 1e-6, "rtol": 1e-6}
VS_ORACLE = {"atol": 1e-5, "rtol": 1e-5}
SIZES = st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17, 33])
# max_examples from the hypothesis profile (tests/conftest.py: 25, or 200 in CI); the `isa`
# fixture runs each property once per ISA, set for all of its examples.
PROPERTY = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _restore_isa() -> Iterator[None]:
    before = pyrnn.active_isa()
    yield
    pyrnn.set_isa(before)


@st.composite
def sequence_modules(draw: Any, bidirectional: bool | None = None) -> Any:
    kind = draw(st.sampled_from(["rnn", "rnn_relu", "lstm", "gru"]))
    input_size, hidden = draw(SIZES), draw(SIZES)
    options: dict[str, Any] = {
        "num_layers": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()),
        "bidirectional": draw(st.booleans()) if bidirectional is None else bidirectional,
        "seed": draw(st.integers(0, 2**16)),
    }
    if kind == "lstm" and hidden > 1 and draw(st.booleans()):
        options["proj_size"] = draw(st.integers(1, hidden - 1))
    if kind.startswith("rnn"):
        options["nonlinearity"] = "relu" if kind == "rnn_relu" else "tanh"
    factory = {"rnn": pyrnn.RNN, "rnn_relu": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}
    return factory[kind](input_size, hidden, **options)


def _data(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _states(module: Any, rows: int, seed: int) -> Any:
    config = module.config
    layers = config["num_layers"] * (2 if config["bidirectional"] else 1)
    h = _data(seed, layers, rows, config.get("proj_size") or config["hidden_size"])
    if config["kind"] == "lstm":
        return h, _data(seed + 1, layers, rows, config["hidden_size"])
    return h


def _close(actual: Any, expected: Any, tolerance: dict[str, float]) -> None:
    if isinstance(expected, tuple):
        for a, e in zip(actual, expected, strict=True):
            _close(a, e, tolerance)
        return
    if tolerance is SAME_WORK and pyrnn.active_isa() == "scalar":
        np.testing.assert_array_equal(actual, expected)  # same sums in the same order
        return
    np.testing.assert_allclose(actual, expected, **tolerance)


@PROPERTY
@given(
    module=sequence_modules(bidirectional=False),
    steps=st.integers(1, 40),
    rows=st.integers(1, 5),
    cuts=st.lists(st.integers(1, 39), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_chunks_and_single_steps_equal_the_whole_sequence(
    isa: str, module: Any, steps: int, rows: int, cuts: list[int], seed: int
) -> None:
    x = _data(seed, steps, rows, module.config["input_size"])
    state0 = _states(module, rows, seed)
    whole, final = module(x, state0)
    bounds = sorted({0, steps, *(c for c in cuts if c < steps)})
    for edges in (bounds, list(range(steps + 1))):  # the drawn chunks, then single steps
        state, parts = state0, []
        for t0, t1 in itertools.pairwise(edges):
            out, state = module(x[t0:t1], state)
            parts.append(out)
        _close(np.concatenate(parts), whole, SAME_WORK)
        _close(state, final, SAME_WORK)


@PROPERTY
@given(
    kind=st.sampled_from(["rnn", "lstm", "gru"]),
    input_size=SIZES,
    hidden=SIZES,
    bias=st.booleans(),
    steps=st.integers(1, 12),
    rows=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_cell_steps_equal_the_one_layer_module(
    isa: str, kind: str, input_size: int, hidden: int, bias: bool, steps: int, rows: int, seed: int
) -> None:
    factory = {"rnn": pyrnn.RNN, "lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind]
    cell_factory = {"rnn": pyrnn.RNNCell, "lstm": pyrnn.LSTMCell, "gru": pyrnn.GRUCell}[kind]
    module = factory(input_size, hidden, bias=bias, seed=seed)
    cell = cell_factory(input_size, hidden, bias=bias)
    cell.load_state_dict(
        {key.removesuffix("_l0"): value for key, value in module.state_dict().items()}
    )
    x = _data(seed, steps, rows, input_size)
    whole, final = module(x)
    state = None
    for t in range(steps):
        state = cell(x[t], state)
        h = state[0] if kind == "lstm" else state
        _close(h, whole[t], SAME_WORK)
    if kind == "lstm":
        _close((state[0], state[1]), (final[0][0], final[1][0]), SAME_WORK)
    else:
        _close(state, final[0], SAME_WORK)


@PROPERTY
@given(
    module=sequence_modules(),
    steps=st.integers(1, 20),
    rows=st.integers(2, 9),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_batch_rows_are_independent(
    isa: str, module: Any, steps: int, rows: int, seed: int, data: Any
) -> None:
    permutation = np.array(data.draw(st.permutations(range(rows))))
    x = _data(seed, steps, rows, module.config["input_size"])
    state0 = _states(module, rows, seed)
    out, final = module(x, state0)

    def permute(state: Any) -> Any:
        if isinstance(state, tuple):
            return tuple(part[:, permutation] for part in state)
        return state[:, permutation]

    out_p, final_p = module(x[:, permutation], permute(state0))
    _close(out_p, out[:, permutation], SAME_WORK)
    _close(final_p, permute(final), SAME_WORK)


@PROPERTY
@given(module=sequence_modules(), batch_first=st.booleans(), seed=st.integers(0, 2**16))
def test_save_then_load_is_the_identity(
    isa: str, tmp_path_factory: pytest.TempPathFactory, module: Any, batch_first: bool, seed: int
) -> None:
    path: Path = tmp_path_factory.mktemp("saved") / "model.safetensors"
    pyrnn.save(module, path)
    loaded = pyrnn.load(path)
    assert type(loaded) is type(module)
    assert loaded.config == module.config
    original, restored = module.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for key, value in original.items():
        np.testing.assert_array_equal(restored[key], value)
    x = _data(seed, 5, 3, module.config["input_size"])
    _close(loaded(x), module(x), {"atol": 0.0, "rtol": 0.0})


def _reference(module: Any, x: np.ndarray, state0: Any) -> tuple[np.ndarray, ...]:
    h0, c0 = state0 if isinstance(state0, tuple) else (state0, None)
    return oracle_forward(module, x, h0, c0)


@PROPERTY
@given(
    module=sequence_modules(),
    steps=st.integers(1, 20),
    rows=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_every_isa_agrees_with_the_reference(
    isa: str, module: Any, steps: int, rows: int, seed: int
) -> None:
    x = _data(seed, steps, rows, module.config["input_size"])
    state0 = _states(module, rows, seed)
    out, final = module(x, state0)
    ref_out, ref_h, ref_c = _reference(module, x, state0)
    _close(out, ref_out, VS_ORACLE)
    if module.config["kind"] == "lstm":
        _close(final, (ref_h, ref_c), VS_ORACLE)
    else:
        _close(final, ref_h, VS_ORACLE)


@PROPERTY
@given(
    module=sequence_modules(bidirectional=False),
    steps=st.integers(1, 40),
    batch=st.one_of(st.none(), st.integers(1, 4)),
    cuts=st.lists(st.integers(1, 39), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_stream_feeds_and_steps_equal_forward(
    isa: str, module: Any, steps: int, batch: int | None, cuts: list[int], seed: int
) -> None:
    rows = 1 if batch is None else batch
    x = _data(seed, steps, rows, module.config["input_size"])
    if batch is None:
        whole, final = module(x[:, 0])
    else:
        whole, final = module(x)
    xs = x[:, 0] if batch is None else x
    bounds = sorted({0, steps, *(c for c in cuts if c < steps)})
    fed = module.stream(batch=batch)
    out = np.concatenate([fed.feed(xs[t0:t1]) for t0, t1 in itertools.pairwise(bounds)])
    _close(out, whole, SAME_WORK)
    _close(fed.state, final, SAME_WORK)
    stepped = module.stream(batch=batch)
    out = np.stack([stepped.step(xs[t]) for t in range(steps)])
    _close(out, whole, SAME_WORK)
    _close(stepped.state, final, SAME_WORK)
