"""Variable-length batches as PyTorch packs them, on numpy arrays: PackedSequence,
pack_padded_sequence and pad_packed_sequence with torch.nn.utils.rnn's signatures and meaning.

A packed batch sorts its sequences longest first and stores step t's rows one after another:
``data`` is (S, F) with S the sum of the lengths, and step t holds ``batch_sizes[t]`` rows, the
sequences still running at t. The RNN, LSTM and GRU modules run it with no work on padding.
"""

from __future__ import annotations

import operator
import sys
from typing import Any, NamedTuple

import numpy as np

from ._arrays import as_float32

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence"]


class PackedSequence(NamedTuple):
    """torch.nn.utils.rnn.PackedSequence's fields as numpy arrays: data (S, F) float32,
    batch_sizes (T,) int64, and the permutation that sorted the batch longest first
    (sorted_indices[i] is the original row of sorted row i) with its inverse, or None for a batch
    packed already sorted (enforce_sorted=True)."""

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: np.ndarray | None = None
    unsorted_indices: np.ndarray | None = None


def _lengths(lengths: Any, rows: int) -> np.ndarray:
    """`lengths` as an int64 (N,) array, one positive length per row of the batch."""
    if hasattr(lengths, "detach") and hasattr(lengths, "cpu"):  # a torch tensor, without torch
        lengths = lengths.detach().cpu()
    try:
        array = np.asarray(lengths)
    except Exception as error:
        raise TypeError(
            f"lengths: expected a 1-D sequence of ints, got {type(lengths).__name__} ({error})"
        ) from None
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected ints, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array, got shape {array.shape}")
    if array.shape[0] != rows:
        raise ValueError(
            f"lengths: expected one length per sequence of the batch ({rows}), got {array.shape[0]}"
        )
    array = array.astype(np.int64)
    if rows and array.min() < 1:
        at = int(np.argmin(array))
        raise ValueError(f"lengths[{at}]: expected a length >= 1, got {int(array[at])}")
    return array


def pack_padded_sequence(
    input: Any, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True
) -> PackedSequence:
    """Packs a padded batch (T, N, *) (or (N, T, *) with batch_first) of sequences of the given
    lengths, as torch.nn.utils.rnn.pack_padded_sequence. With enforce_sorted=True the lengths
    must be sorted longest first; otherwise the batch is sorted here (stably) and the returned
    sorted_indices / unsorted_indices record the permutation."""
    x = as_float32(input, "input")
    if x.ndim < 2:
        raise ValueError(
            f"input: expected a padded batch {'(N, T, *)' if batch_first else '(T, N, *)'}, "
            f"got shape {x.shape}"
        )
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    steps, rows = x.shape[0], x.shape[1]
    if rows == 0:
        raise ValueError("input: expected a batch of at least 1 sequence, got 0")
    sizes = _lengths(lengths, rows)
    longest = int(sizes.max())
    if longest > steps:
        at = int(np.argmax(sizes))
        raise ValueError(
            f"lengths[{at}]: expected at most the padded length T={steps}, got {longest}"
        )
    if enforce_sorted:
        falls = np.flatnonzero(sizes[1:] > sizes[:-1])
        if falls.size:
            at = int(falls[0]) + 1
            raise ValueError(
                f"lengths: expected lengths sorted longest first with enforce_sorted=True, got "
                f"lengths[{at - 1}]={int(sizes[at - 1])} < lengths[{at}]={int(sizes[at])}; "
                "sort the batch or pass enforce_sorted=False"
            )
        sorted_indices = None
        unsorted_indices = None
    else:
        sorted_indices = np.argsort(-sizes, kind="stable").astype(np.int64)
        unsorted_indices = _inverse(sorted_indices)
        sizes = sizes[sorted_indices]
        x = x[:, sorted_indices]
    x = x[:longest]
    # Row (t, n) is kept when t < lengths[n]; numpy takes kept rows t-major, n ascending.
    keep = np.arange(longest)[:, None] < sizes[None, :]
    data = np.ascontiguousarray(x[keep], dtype=np.float32)
    batch_sizes = keep.sum(axis=1, dtype=np.int64)
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(
    sequence: Any,
    batch_first: bool = False,
    padding_value: float = 0.0,
    total_length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The padded batch (T, N, *) (or (N, T, *) with batch_first) and the lengths (N,) int64 of
    a packed sequence, rows in the original order, as torch.nn.utils.rnn.pad_packed_sequence.
    total_length pads T up to that many steps (at least the longest sequence)."""
    data, batch_sizes, _, unsorted_indices = packed_parts(sequence, "sequence")
    steps = batch_sizes.shape[0]
    if total_length is not None:
        try:
            total = operator.index(total_length)
        except TypeError:
            raise TypeError(
                f"total_length: expected an int or None, got {type(total_length).__name__}"
            ) from None
        if total < steps:
            raise ValueError(
                f"total_length: expected at least the longest sequence's length {steps}, "
                f"got {total}"
            )
        steps = total
    rows = int(batch_sizes[0])
    sizes = (np.arange(rows)[None, :] < batch_sizes[:, None]).sum(axis=0, dtype=np.int64)
    keep = np.arange(steps)[:, None] < sizes[None, :]
    padded = np.full((steps, rows, *data.shape[1:]), padding_value, np.float32)
    padded[keep] = data
    if unsorted_indices is not None:
        padded = padded[:, unsorted_indices]
        sizes = sizes[unsorted_indices]
    if batch_first:
        padded = np.ascontiguousarray(np.swapaxes(padded, 0, 1))
    return padded, sizes


def _inverse(permutation: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(permutation.shape[0], dtype=permutation.dtype)
    return inverse


def is_packed(value: Any) -> bool:
    """Whether `value` is a pyrnn or a torch PackedSequence (recognised without importing
    torch: a torch one exists only once torch is imported)."""
    if isinstance(value, PackedSequence):
        return True
    rnn = sys.modules.get("torch.nn.utils.rnn")
    packed = getattr(rnn, "PackedSequence", None) if rnn is not None else None
    return packed is not None and isinstance(value, packed)


def _index_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected ints, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array.astype(np.int64)


def packed_parts(
    sequence: Any, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(data (S, *) float32, batch_sizes (T,), sorted_indices, unsorted_indices) of a pyrnn or
    torch PackedSequence, checked as the core relies on them: batch sizes from N down to >= 1,
    never growing, summing to S, and the indices each other's inverse permutation of N."""
    if not is_packed(sequence):
        raise TypeError(
            f"{name}: expected a PackedSequence (pyrnn's or torch's), got {type(sequence).__name__}"
        )
    data = as_float32(sequence.data, f"{name}.data")
    batch_sizes = _index_array(sequence.batch_sizes, f"{name}.batch_sizes")
    if data.ndim < 1:
        raise ValueError(f"{name}.data: expected (S, *) rows, got shape {data.shape}")
    if batch_sizes.shape[0] < 1:
        raise ValueError(f"{name}.batch_sizes: expected at least 1 step, got none")
    low = int(batch_sizes.min())
    if low < 1:
        raise ValueError(f"{name}.batch_sizes: expected every step to have >= 1 rows, got {low}")
    grows = np.flatnonzero(batch_sizes[1:] > batch_sizes[:-1])
    if grows.size:
        at = int(grows[0]) + 1
        raise ValueError(
            f"{name}.batch_sizes: expected non-increasing sizes (sequences sorted longest "
            f"first), got batch_sizes[{at - 1}]={int(batch_sizes[at - 1])} < "
            f"batch_sizes[{at}]={int(batch_sizes[at])}"
        )
    total = int(batch_sizes.sum())
    if data.shape[0] != total:
        raise ValueError(
            f"{name}.data: expected {total} rows (the sum of batch_sizes), got {data.shape[0]}"
        )
    rows = int(batch_sizes[0])
    indices: list[np.ndarray | None] = []
    for field in ("sorted_indices", "unsorted_indices"):
        value = getattr(sequence, field)
        if value is None:
            indices.append(None)
            continue
        array = _index_array(value, f"{name}.{field}")
        if array.shape[0] != rows or not np.array_equal(np.sort(array), np.arange(rows)):
            raise ValueError(
                f"{name}.{field}: expected a permutation of the {rows} rows, got {array[:8]}"
            )
        indices.append(array)
    sorted_indices, unsorted_indices = indices
    if sorted_indices is None and unsorted_indices is not None:
        raise ValueError(f"{name}.sorted_indices: None while unsorted_indices is given")
    if sorted_indices is not None:
        if unsorted_indices is None:
            unsorted_indices = _inverse(sorted_indices)
        elif not np.array_equal(sorted_indices[unsorted_indices], np.arange(rows)):
            raise ValueError(
                f"{name}.unsorted_indices: expected the inverse permutation of sorted_indices"
            )
    return data, batch_sizes, sorted_indices, unsorted_indices


def repacked(like: Any, data: np.ndarray) -> Any:
    """A PackedSequence of the same type and order as `like` (pyrnn's or torch's) holding
    `data`."""
    if isinstance(like, PackedSequence):
        return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
    torch = sys.modules["torch"]
    return type(like)(
        torch.from_numpy(data), like.batch_sizes, like.sorted_indices, like.unsorted_indices
    )
