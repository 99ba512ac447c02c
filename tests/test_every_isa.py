"""Every ISA against the C++ double-accumulating oracle (`pyrnn._testing.reference_forward`) on
awkward sizes, where SIMD remainders break, and concurrent calls. (ISA selection itself,
PYRNN_ISA and set_isa errors are tested in test_isa.py.) Tolerance: 1e-5 + 1e-5 * |oracle|
(float32 vs float64 accumulation; relu is unbounded)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from oracle import oracle_forward
from overlap import run_until_overlapped

import pyrnn

AWKWARD = (1, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65)


def test_isa_fixture_sets_and_restores(isa: str) -> None:
    assert pyrnn.active_isa() == isa
    pyrnn.set_isa("scalar")
    assert pyrnn.active_isa() == "scalar"  # the fixture restores the starting choice afterwards


# -- every ISA against the C++ oracle ----------------------------------------------------------
def _oracle(module: pyrnn.Module, x: np.ndarray, h0: Any, c0: Any):
    return oracle_forward(module, x, h0, c0)


def _cases() -> list[Any]:
    cases = []
    kinds = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
    for index, size in enumerate(AWKWARD):
        kind = kinds[index % 4]
        other = AWKWARD[(index * 5 + 3) % len(AWKWARD)]
        batch = (1, 2, 5, 16)[index % 4]
        for input_size, hidden in ((size, other), (other, size)):
            cases.append(
                pytest.param(
                    kind, input_size, hidden, batch, id=f"{kind}-I{input_size}-H{hidden}-N{batch}"
                )
            )
        cases.append(
            pytest.param(
                kinds[(index + 1) % 4],
                size,
                size,
                3,
                id=f"{kinds[(index + 1) % 4]}-I{size}-H{size}-N3",
            )
        )
    return cases  # fmt: skip


@pytest.mark.usefixtures("isa")
@pytest.mark.parametrize(("kind", "input_size", "hidden", "batch"), _cases())
def test_every_isa_matches_the_oracle(kind: str, input_size: int, hidden: int, batch: int) -> None:
    options: dict[str, Any] = {"num_layers": 2, "bidirectional": True}
    if kind.startswith("rnn_"):
        module = pyrnn.RNN(input_size, hidden, nonlinearity=kind[4:], **options, seed=hidden)
    elif kind == "lstm":
        proj = hidden // 2
        module = pyrnn.LSTM(input_size, hidden, proj_size=proj, **options, seed=hidden)
    else:
        module = pyrnn.GRU(input_size, hidden, **options, seed=hidden)
    rng = np.random.default_rng(input_size * 100 + hidden)
    x = rng.standard_normal((9, batch, input_size)).astype(np.float32)  # N=16: 2 chunks
    out_size = module.config.get("proj_size") or hidden
    h0 = rng.standard_normal((4, batch, out_size)).astype(np.float32)
    c0 = rng.standard_normal((4, batch, hidden)).astype(np.float32) if kind == "lstm" else None
    expected_out, expected_h, expected_c = _oracle(module, x, h0, c0)
    out, state = module(x, (h0, c0) if kind == "lstm" else h0)
    pairs = [(out, expected_out)]
    pairs += [(state[0], expected_h), (state[1], expected_c)] if kind == "lstm" else []
    pairs += [] if kind == "lstm" else [(state, expected_h)]
    for actual, expected in pairs:
        expected = np.asarray(expected)
        assert actual.shape == expected.shape
        assert np.all(np.abs(actual - expected) <= 1e-5 + 1e-5 * np.abs(expected))


@pytest.mark.usefixtures("isa")
def test_concurrent_calls_agree_with_sequential() -> None:
    """Modules may be called from several threads at once (the GIL is released in the core):
    the results equal the sequential ones, and calls were shown to overlap (else the threads
    only took turns and nothing was tested)."""
    module = pyrnn.LSTM(17, 33, num_layers=2, bidirectional=True, seed=0)
    inputs = [
        np.random.default_rng(i).standard_normal((20, 3, 17)).astype(np.float32) for i in range(8)
    ]
    expected = [module(x)[0] for x in inputs]

    def run() -> None:
        results: list[Any] = [None] * len(inputs)

        def work(i: int) -> None:
            for _ in range(5):
                results[i] = module(inputs[i])[0]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_array_equal(got, want)

    run_until_overlapped(run)
