"""Variable-length batches: modules run torch's and pyrnn's PackedSequence like torch.nn, and the
numpy pack/pad helpers match torch.nn.utils.rnn's on the same arrays."""

from __future__ import annotations

import ctypes
import mmap
import sys
from typing import Any

import numpy as np
import pytest
import torch
from parity_helpers import assert_close, terms
from torch.nn.utils import rnn as torch_rnn

import pyrnn
from pyrnn import _testing

# (module, constructor options): every cell, both RNN activations, an LSTM with a projection.
KINDS = [
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu"}),
    ("GRU", {}),
    ("LSTM", {}),
    ("LSTM", {"proj_size": 2}),
]
SHAPES = [(1, False), (1, True), (2, False), (2, True)]  # (num_layers, bidirectional)
BATCHES = [1, 3, 7]
HIDDEN = [1, 5, 17]  # 1 unit, a partial block, a block and a bit


def _lengths(rng: np.random.Generator, batch: int, steps: int, sort: bool) -> np.ndarray:
    """Lengths in [1, steps] with the full length and (batch > 1) length 1 among them."""
    lengths = rng.integers(1, steps + 1, batch)
    lengths[0] = steps
    if batch > 1:
        lengths[1] = 1
    if sort:
        return np.sort(lengths)[::-1].copy()
    return rng.permutation(lengths)


def _pair(name: str, options: dict[str, Any], input_size: int, hidden: int, **shape: Any):
    """A torch module and the pyrnn module converted from it (the same weights)."""
    if options.get("proj_size", 0) >= hidden:
        options = {**options, "proj_size": 0} if hidden == 1 else {**options, "proj_size": 1}
    torch.manual_seed(hidden * 31 + input_size)
    reference = getattr(torch.nn, name)(input_size, hidden, **options, **shape)
    return reference, pyrnn.from_torch(reference)


def _hx(reference: torch.nn.Module, batch: int, seed: int) -> Any:
    layers = reference.num_layers * (2 if reference.bidirectional else 1)
    output = getattr(reference, "proj_size", 0) or reference.hidden_size
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(layers, batch, output, generator=generator)
    if isinstance(reference, torch.nn.LSTM):
        return h, torch.randn(layers, batch, reference.hidden_size, generator=generator)
    return h


def _as_numpy(hx: Any) -> Any:
    if isinstance(hx, tuple):
        return tuple(part.numpy() for part in hx)
    return hx.numpy()


def _check(module: Any, got: Any, expected: Any, relu: bool, what: str) -> None:
    """Output (packed data) and final states of a pyrnn call against torch's."""
    k = terms(module)
    (out, state), (ref_out, ref_state) = got, expected
    assert_close(np.asarray(out.data), ref_out.data, relu, f"{what}: output", k)
    np.testing.assert_array_equal(np.asarray(out.batch_sizes), ref_out.batch_sizes.numpy())
    states = state if isinstance(state, tuple) else (state,)
    ref_states = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    for index, (part, ref_part) in enumerate(zip(states, ref_states, strict=True)):
        assert_close(part, ref_part, relu, f"{what}: state {index}", k)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize(("num_layers", "bidirectional"), SHAPES)
@pytest.mark.parametrize(("name", "options"), KINDS)
def test_modules_run_packed_sequences_like_torch(
    isa: str, name: str, options: dict[str, Any], num_layers: int, bidirectional: bool, batch: int
) -> None:
    """Every module over torch's and pyrnn's packed batches, sorted or not, with and without hx,
    from padded batches in both layouts: output, h_n (and c_n) as torch.nn gives them."""
    index = KINDS.index((name, options)) + 5 * SHAPES.index((num_layers, bidirectional)) + batch
    hidden = HIDDEN[index % 3]
    steps = (1, 6, 11)[index % 3] if batch == 1 else (4, 9)[index % 2]
    input_size = (3, 1)[index % 2]
    reference, module = _pair(
        name, options, input_size, hidden, num_layers=num_layers, bidirectional=bidirectional
    )
    relu = options.get("nonlinearity") == "relu"
    rng = np.random.default_rng(index)
    for case, (enforce_sorted, given_hx, batch_first) in enumerate(
        [(s, h, b) for s in (True, False) for h in (False, True) for b in (False, True)]
    ):
        what = f"enforce_sorted={enforce_sorted}, hx={given_hx}, batch_first={batch_first}"
        lengths = _lengths(rng, batch, steps, sort=enforce_sorted)
        shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
        padded = rng.standard_normal(shape).astype(np.float32)
        packed = torch_rnn.pack_padded_sequence(
            torch.from_numpy(padded), torch.from_numpy(lengths), batch_first, enforce_sorted
        )
        hx = _hx(reference, batch, case) if given_hx else None
        with torch.no_grad():
            expected = reference(packed, hx)
        hx_np = _as_numpy(hx) if given_hx else None

        got = module(packed, hx_np)
        assert isinstance(got[0], torch_rnn.PackedSequence), what
        _check(module, got, expected, relu, f"torch packed, {what}")

        ours = pyrnn.pack_padded_sequence(padded, lengths, batch_first, enforce_sorted)
        got = module(ours, hx_np)
        assert isinstance(got[0], pyrnn.PackedSequence), what
        _check(module, got, expected, relu, f"pyrnn packed, {what}")


def test_reverse_direction_starts_at_each_sequence_end() -> None:
    """A one-row bidirectional batch packed with a longer one: its backward output at step 0 is
    the backward pass over its own steps only, as if run alone."""
    _, module = _pair("GRU", {}, 2, 4, bidirectional=True)
    rng = np.random.default_rng(0)
    padded = rng.standard_normal((5, 2, 2)).astype(np.float32)
    out, hn = module(pyrnn.pack_padded_sequence(padded, [5, 2]))
    alone, alone_hn = module(padded[:2, 1:2])
    full, _ = pyrnn.pad_packed_sequence(out)
    np.testing.assert_allclose(full[:2, 1], alone[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(hn[:, 1], alone_hn[:, 0], rtol=1e-6, atol=1e-6)
    assert np.all(full[2:, 1] == 0.0)


# -- pack / pad helpers -------------------------------------------------------------------------
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_pack_and_pad_match_torch(batch: int, enforce_sorted: bool, batch_first: bool) -> None:
    rng = np.random.default_rng(batch)
    steps = 6
    lengths = _lengths(rng, batch, steps, sort=enforce_sorted)
    if batch > 3:
        lengths[2] = lengths[3]  # equal lengths: the sort keeps their order, as torch's does
    shape = (batch, steps, 2, 3) if batch_first else (steps, batch, 2, 3)
    padded = rng.standard_normal(shape).astype(np.float32)
    ours = pyrnn.pack_padded_sequence(padded, lengths, batch_first, enforce_sorted)
    theirs = torch_rnn.pack_padded_sequence(
        torch.from_numpy(padded), torch.from_numpy(lengths), batch_first, enforce_sorted
    )
    np.testing.assert_array_equal(ours.data, theirs.data.numpy())
    np.testing.assert_array_equal(ours.batch_sizes, theirs.batch_sizes.numpy())
    for field in ("sorted_indices", "unsorted_indices"):
        mine, torch_field = getattr(ours, field), getattr(theirs, field)
        assert (mine is None) == (torch_field is None), field
        if mine is not None:
            np.testing.assert_array_equal(mine, torch_field.numpy())
    assert ours.data.dtype == np.float32 and ours.batch_sizes.dtype == np.int64

    for total_length, padding_value in [(None, 0.0), (steps + 2, -7.5)]:
        got, got_lengths = pyrnn.pad_packed_sequence(ours, batch_first, padding_value, total_length)
        want, want_lengths = torch_rnn.pad_packed_sequence(
            theirs, batch_first, padding_value, total_length
        )
        np.testing.assert_array_equal(got, want.numpy())
        np.testing.assert_array_equal(got_lengths, want_lengths.numpy())
        # pyrnn's pad reads torch's packed sequences too
        again, _ = pyrnn.pad_packed_sequence(theirs, batch_first, padding_value, total_length)
        np.testing.assert_array_equal(again, want.numpy())


def test_round_trip_restores_the_batch() -> None:
    rng = np.random.default_rng(1)
    lengths = np.array([3, 7, 1, 7, 4])
    padded = rng.standard_normal((5, 7, 2)).astype(np.float32)
    padded[np.arange(7)[None, :] >= lengths[:, None]] = 0.0
    packed = pyrnn.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    back, back_lengths = pyrnn.pad_packed_sequence(packed, batch_first=True)
    np.testing.assert_array_equal(back, padded)
    np.testing.assert_array_equal(back_lengths, lengths)
    assert packed.data.shape == (int(lengths.sum()), 2)


# -- padding does no work -----------------------------------------------------------------------
def test_padding_values_have_no_effect(isa: str) -> None:
    """NaN in every padding position changes nothing: the padding is never read."""
    _, module = _pair("LSTM", {}, 3, 5, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    lengths = np.array([2, 9, 5, 1])
    padded = rng.standard_normal((9, 4, 3)).astype(np.float32)
    pad = np.arange(9)[:, None] >= lengths[None, :]
    clean, dirty = padded.copy(), padded.copy()
    clean[pad], dirty[pad] = 0.0, np.nan
    a = module(pyrnn.pack_padded_sequence(clean, lengths, enforce_sorted=False))
    b = module(pyrnn.pack_padded_sequence(dirty, lengths, enforce_sorted=False))
    np.testing.assert_array_equal(a[0].data, b[0].data)
    for x, y in zip(a[1], b[1], strict=True):
        np.testing.assert_array_equal(x, y)
    assert np.all(np.isfinite(a[0].data))


def _guarded_rows(rows: int, features: int) -> tuple[np.ndarray, Any]:
    """A float32 (rows, features) array that ends exactly where an inaccessible page starts:
    reading past its last row faults instead of passing unnoticed."""
    page = mmap.PAGESIZE
    size = rows * features * 4
    pages = (size + page - 1) // page
    memory = mmap.mmap(-1, (pages + 1) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + pages * page, page, 0) == 0  # PROT_NONE
    start = pages * page - size
    array = np.frombuffer(memory, np.float32, rows * features, start).reshape(rows, features)
    return array, memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
def test_packed_rows_are_read_no_further_than_their_sum(isa: str) -> None:
    """data of exactly S = sum(lengths) rows, followed by a page that faults when read, runs
    through every direction and layer: nothing past row S is touched."""
    _, module = _pair("GRU", {}, 4, 6, num_layers=2, bidirectional=True)
    lengths = [8, 5, 5, 2, 1]
    padded = np.random.default_rng(3).standard_normal((8, 5, 4)).astype(np.float32)
    packed = pyrnn.pack_padded_sequence(padded, lengths)
    data, memory = _guarded_rows(*packed.data.shape)
    data[:] = packed.data
    out, _ = module(pyrnn.PackedSequence(data, packed.batch_sizes))
    expected, _ = module(packed)
    np.testing.assert_array_equal(out.data, expected.data)
    del data
    memory.close()


# -- threads ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_packed_results_do_not_depend_on_threads(isa: str, name: str, bidirectional: bool) -> None:
    """Hidden 40 (three blocks) split over 1, 2 and 3 threads at every step, the active rows
    shrinking from 9 to 1 across chunk boundaries: bit-identical results."""
    module = getattr(pyrnn, name)(7, 40, num_layers=2, bidirectional=bidirectional, seed=3)
    rng = np.random.default_rng(4)
    lengths = np.array([300, 1, 37, 150, 299, 2, 64, 65, 3])
    padded = rng.standard_normal((300, 9, 7)).astype(np.float32)
    packed = pyrnn.pack_padded_sequence(padded, lengths, enforce_sorted=False)
    _testing.set_split_every_step(True)
    results = []
    for threads in (1, 2, 3):
        pyrnn.set_num_threads(threads)
        out, state = module(packed)
        results.append([out.data, *(state if isinstance(state, tuple) else (state,))])
    for threads, got in zip((2, 3), results[1:], strict=True):
        for a, b in zip(results[0], got, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{threads} threads")


# -- bad input ----------------------------------------------------------------------------------
X = np.zeros((4, 3, 2), np.float32)
GOOD = pyrnn.pack_padded_sequence(X, [4, 2, 1])
LSTM = pyrnn.LSTM(2, 3, seed=0)

BAD_CASES = [
    ("unsorted", lambda: pyrnn.pack_padded_sequence(X, [2, 4, 1]), ValueError, r"^lengths: expected lengths sorted longest first with enforce_sorted=True, got lengths\[0\]=2 < lengths\[1\]=4; sort the batch or pass enforce_sorted=False$"),
    ("length 0", lambda: pyrnn.pack_padded_sequence(X, [4, 2, 0]), ValueError, r"^lengths\[2\]: expected a length >= 1, got 0$"),
    ("negative length", lambda: pyrnn.pack_padded_sequence(X, [4, -1, 1], enforce_sorted=False), ValueError, r"^lengths\[1\]: expected a length >= 1, got -1$"),
    ("too long", lambda: pyrnn.pack_padded_sequence(X, [5, 2, 1]), ValueError, r"^lengths\[0\]: expected at most the padded length T=4, got 5$"),
    ("too long batch_first", lambda: pyrnn.pack_padded_sequence(X, [4, 3, 3, 2], batch_first=True), ValueError, r"^lengths\[0\]: expected at most the padded length T=3, got 4$"),
    ("wrong count", lambda: pyrnn.pack_padded_sequence(X, [4, 2]), ValueError, r"^lengths: expected one length per sequence of the batch \(3\), got 2$"),
    ("2-D lengths", lambda: pyrnn.pack_padded_sequence(X, [[4, 2, 1]]), ValueError, r"^lengths: expected a 1-D array, got shape \(1, 3\)$"),
    ("float lengths", lambda: pyrnn.pack_padded_sequence(X, [4.0, 2.0, 1.0]), TypeError, r"^lengths: expected ints, got dtype float64$"),
    ("1-D input", lambda: pyrnn.pack_padded_sequence(np.zeros(3), [1]), ValueError, r"^input: expected a padded batch \(T, N, \*\), got shape \(3,\)$"),
    ("empty batch", lambda: pyrnn.pack_padded_sequence(np.zeros((3, 0, 2)), []), ValueError, r"^input: expected a batch of at least 1 sequence, got 0$"),
    ("total_length short", lambda: pyrnn.pad_packed_sequence(GOOD, total_length=3), ValueError, r"^total_length: expected at least the longest sequence's length 4, got 3$"),
    ("total_length float", lambda: pyrnn.pad_packed_sequence(GOOD, total_length=5.0), TypeError, r"^total_length: expected an int or None, got float$"),
    ("pad an array", lambda: pyrnn.pad_packed_sequence(X), TypeError, r"^sequence: expected a PackedSequence \(pyrnn's or torch's\), got ndarray$"),
    ("growing batch_sizes", lambda: LSTM(pyrnn.PackedSequence(np.zeros((5, 2)), np.array([2, 3]))), ValueError, r"^input.batch_sizes: expected non-increasing sizes \(sequences sorted longest first\), got batch_sizes\[0\]=2 < batch_sizes\[1\]=3$"),
    ("zero batch size", lambda: LSTM(pyrnn.PackedSequence(np.zeros((2, 2)), np.array([2, 0]))), ValueError, r"^input.batch_sizes: expected every step to have >= 1 rows, got 0$"),
    ("no steps", lambda: LSTM(pyrnn.PackedSequence(np.zeros((0, 2)), np.zeros(0, np.int64))), ValueError, r"^input.batch_sizes: expected at least 1 step, got none$"),
    ("rows not the sum", lambda: LSTM(pyrnn.PackedSequence(np.zeros((6, 2)), np.array([3, 2]))), ValueError, r"^input.data: expected 5 rows \(the sum of batch_sizes\), got 6$"),
    ("wrong features", lambda: LSTM(pyrnn.PackedSequence(np.zeros((5, 3)), np.array([3, 2]))), ValueError, r"^input.data: expected \(S, input_size=2\) rows, got shape \(5, 3\)$"),
    ("float batch_sizes", lambda: LSTM(pyrnn.PackedSequence(np.zeros((5, 2)), np.array([3.0, 2.0]))), TypeError, r"^input.batch_sizes: expected ints, got dtype float64$"),
    ("not a permutation", lambda: LSTM(pyrnn.PackedSequence(np.zeros((5, 2)), np.array([3, 2]), np.array([0, 0, 1]))), ValueError, r"^input.sorted_indices: expected a permutation of the 3 rows, got \[0 0 1\]$"),
    ("not the inverse", lambda: LSTM(pyrnn.PackedSequence(np.zeros((5, 2)), np.array([3, 2]), np.array([1, 2, 0]), np.array([1, 2, 0]))), ValueError, r"^input.unsorted_indices: expected the inverse permutation of sorted_indices$"),
    ("hx batch", lambda: LSTM(GOOD, (np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))), ValueError, r"^hx\[0\]: expected shape \(1, 3, 3\), got \(1, 2, 3\)$"),
    ("hx unbatched", lambda: pyrnn.GRU(2, 3)(GOOD, np.zeros((1, 3))), ValueError, r"^hx: expected shape \(1, 3, 3\), got \(1, 3\)$"),
    ("stream feed", lambda: LSTM.stream(batch=3).feed(GOOD), TypeError, r"^x: expected an array, got a PackedSequence, which only the RNN, LSTM and GRU modules take"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "error", "message"), [pytest.param(c, e, m, id=n) for n, c, e, m in BAD_CASES]
)
def test_bad_input_is_refused_clearly(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_core_checks_batch_sizes_itself() -> None:
    """The binding refuses what Python checks first, for callers of the core."""
    network = LSTM._network
    out, hn, cn = (np.empty(shape, np.float32) for shape in ((5, 3), (1, 3, 3), (1, 3, 3)))
    data = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match=r"^batch_sizes\[1\]: expected in \[1, 2\], got 3$"):
        network.forward_packed(data, np.array([2, 3]), out, None, None, hn, cn)
    with pytest.raises(
        ValueError, match=r"^data: expected 4 rows \(the sum of batch_sizes\), got 5$"
    ):
        network.forward_packed(data, np.array([3, 1]), out, None, None, hn, cn)
    with pytest.raises(ValueError, match=r"^batch_sizes: expected a 1-D array of at least 1 step"):
        network.forward_packed(data, np.zeros(0, np.int64), out, None, None, hn, cn)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_large_batches_run_one_step_chunks(isa: str, name: str, bidirectional: bool) -> None:
    """130 sequences: a chunk is one step, and the steps where few rows are left take the
    kernels' one-step path (the input projected inside the step)."""
    reference, module = _pair(name, {}, 3, 5, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(5)
    lengths = np.concatenate([np.full(126, 2), [9, 7, 1, 4]])
    padded = rng.standard_normal((9, 130, 3)).astype(np.float32)
    packed = torch_rnn.pack_padded_sequence(
        torch.from_numpy(padded), torch.from_numpy(lengths), enforce_sorted=False
    )
    with torch.no_grad():
        expected = reference(packed)
    _check(module, module(packed), expected, False, f"{name} bidirectional={bidirectional}")
