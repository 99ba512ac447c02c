"""Turning user inputs (numpy arrays, torch tensors, anything with __array__ or the buffer
protocol) into float32 arrays the core accepts, with errors that name the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOAT32 = np.dtype(np.float32)
_AXIS_LIMIT = 2**31 - 1


def _refuse_containers(value: Any, name: str) -> None:
    """Tuples that numpy would read as one array of the wrong meaning: a PackedSequence (numpy
    stacks its fields), any other named tuple, and tuples of arrays (stacked into a new axis)."""
    if not isinstance(value, tuple):
        return
    fields = getattr(type(value), "_fields", None)
    if type(value).__name__ == "PackedSequence" or (
        fields is not None and {"data", "batch_sizes", "sorted_indices"} <= set(fields)
    ):
        raise TypeError(
            f"{name}: expected an array, got a PackedSequence, which only the RNN, LSTM and "
            "GRU modules take; pad it first: padded, lengths = pyrnn.pad_packed_sequence(packed) "
            "(or torch.nn.utils.rnn's). A batch stream advances every row at each step; "
            "reset(row) starts a new sequence in one row"
        )
    if fields is not None:
        raise TypeError(
            f"{name}: expected an array, got the named tuple {type(value).__name__}"
            f"{tuple(fields)}; pass the array itself"
        )
    arrays = sum(1 for item in value if len(getattr(item, "shape", ())) > 0)
    if arrays:
        raise TypeError(
            f"{name}: expected one array, got a tuple holding {arrays} array(s); pass one array "
            "(np.stack makes one from several)"
        )


def _refuse_without_data(tensor: Any, name: str) -> None:
    """A torch tensor on the meta device has a shape but no data (torch's own error on reading it
    is "Cannot copy out of meta tensor")."""
    if getattr(tensor, "is_meta", False) is True:
        raise ValueError(
            f"{name}: expected a tensor with data, got a tensor of shape "
            f"{tuple(tensor.shape)} on the meta device, which has none; materialise it first "
            "(e.g. module.to_empty(device='cpu'), then load the weights)"
        )


def refuse_masked(value: Any, name: str) -> None:
    """numpy reads a masked array's data and drops its mask: refused wherever an array is taken."""
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: expected a plain array, got a numpy masked array, whose mask would be "
            f"ignored; fill the masked values first ({name}.filled(0.0))"
        )


def as_float32(value: Any, name: str) -> np.ndarray:
    """A float32 view of `value` when possible, else a float32 copy. Keeps strides (the core
    reads strided sequences) but guarantees alignment and a unit-stride last axis."""
    refuse_masked(value, name)
    if not isinstance(value, np.ndarray):
        _refuse_containers(value, name)
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without torch
            _refuse_without_data(value, name)
            value = value.detach().cpu()
            if str(getattr(value, "dtype", "")) == "torch.bfloat16":  # numpy has no bfloat16
                value = value.float()
        try:
            value = np.asarray(value)
        except Exception as error:
            raise TypeError(
                f"{name}: expected an array of real floats, got {type(value).__name__} "
                f"that numpy cannot read ({error})"
            ) from None
    # Before any cast or copy: a zero-stride broadcast view can claim any shape for free, and
    # the core indexes each axis with int, so longer axes are refused without allocating.
    for axis, length in enumerate(value.shape):
        if length > _AXIS_LIMIT:
            raise ValueError(
                f"{name}: axis {axis} has {length} entries, more than the limit of 2**31-1"
            )
    if value.dtype.kind != "f":
        raise TypeError(
            f"{name}: expected a real floating dtype (float16, float32 or float64), "
            f"got dtype {value.dtype}"
        )
    array: np.ndarray = value.astype(_FLOAT32, copy=False)
    last_stride_ok = array.ndim == 0 or array.shape[-1] <= 1 or array.strides[-1] == 4
    if not array.flags.aligned:
        # A fresh buffer is aligned; np.ascontiguousarray would return a contiguous but
        # misaligned array unchanged, and the kernels' float loads from it are undefined
        # behaviour (UBSan: "load of misaligned address").
        array = array.copy(order="C")
    elif not last_stride_ok:
        array = np.ascontiguousarray(array)
    return array


def as_state(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous float32 copy-or-view of a state array that must have exactly `shape`."""
    claimed = getattr(value, "shape", None)  # checked before converting: no copy of a wrong one
    if isinstance(claimed, tuple) and tuple(claimed) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(claimed)}")
    array = as_float32(value, name)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    return np.ascontiguousarray(array)


def as_parameter(value: Any, key: str, shape: tuple[int, ...], copy: bool = True) -> np.ndarray:
    """One weight as a C-contiguous float32 array, checked against `shape`: a private read-only
    copy, or with copy=False possibly the caller's own array (for weights packed at once)."""
    array = as_float32(value, f"state_dict[{key!r}]")
    if array.shape != shape:
        raise ValueError(f"state_dict[{key!r}]: expected shape {shape}, got {array.shape}")
    if not copy:
        return np.ascontiguousarray(array, dtype=_FLOAT32)
    array = np.array(array, dtype=_FLOAT32, order="C", copy=True)
    array.flags.writeable = False
    return array
