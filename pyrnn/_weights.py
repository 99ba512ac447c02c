"""Weight types: how a float32 weight matrix is stored narrow (fp16, bf16, int8 with one scale
per row) and widened back. The one place that knows the rounding rules; numpy only.

Storage dtypes: fp16 as numpy float16, bf16 as uint16 (the top 16 bits of a float32, numpy
having no bfloat16), int8 as int8 plus a float32 scale per row (dim 0), weight = q * scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import as_float32

WEIGHT_DTYPES = ("fp32", "fp16", "bf16", "int8")
NARROW_DTYPES = WEIGHT_DTYPES[1:]
# The numpy dtype each type is stored in.
STORAGE: dict[str, np.dtype[Any]] = {
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "bf16": np.dtype(np.uint16),
    "int8": np.dtype(np.int8),
}
# The safetensors dtype each type is stored as in a file.
FILE_DTYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16", "int8": "I8"}
SCALE_SUFFIX = "_scale"
_FP16_MAX = float(np.finfo(np.float16).max)  # 65504
_INT8_MAX = 127


def check_weight_dtype(value: Any, name: str = "weights") -> str:
    if not isinstance(value, str) or value not in WEIGHT_DTYPES:
        raise ValueError(
            f"{name}: expected one of {', '.join(repr(d) for d in WEIGHT_DTYPES)}, got {value!r}"
        )
    return value


def to_fp16(weights: np.ndarray, name: str) -> np.ndarray:
    """float32 -> float16, round to nearest even; a weight beyond fp16's range is refused
    (it would become inf)."""
    finite = weights[np.isfinite(weights)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    if largest > _FP16_MAX:
        raise ValueError(
            f"{name}: has a weight of magnitude {largest:.6g}, beyond float16's range "
            f"(+-{_FP16_MAX:g}); it would become inf. Use weights='bf16' or 'int8', which keep "
            "float32's range"
        )
    return weights.astype(np.float16)


def to_bf16(weights: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16): round to nearest even of the float32 bits, as
    torch and the hardware conversions do; NaN stays NaN (quiet), inf stays inf."""
    bits = np.ascontiguousarray(weights, dtype=np.float32).view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit rounds half to even; the carry may roll into the
    # exponent, which is the correct rounding (up to inf past bfloat16's largest value).
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    result: np.ndarray = (rounded >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(weights)
    if nan.any():  # the addition could carry a NaN's payload into inf; keep it a quiet NaN
        result[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return result


def from_bf16(bits: np.ndarray) -> np.ndarray:
    wide: np.ndarray = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return wide


def to_int8(weights: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """float32 (rows, ...) -> (int8 of the same shape, float32 scales (rows,)): symmetric, one
    scale per row, scale = max|w_row| / 127, q = round half to even (w / scale) clipped to
    [-127, 127]; an all-zero row gets scale 1."""
    rows = weights.reshape(weights.shape[0], -1) if weights.ndim else weights.reshape(1, -1)
    if not np.isfinite(rows).all():
        raise ValueError(f"{name}: holds NaN or inf, which int8 cannot store")
    largest = np.max(np.abs(rows), axis=1) if rows.shape[1] else np.zeros(rows.shape[0])
    scales = (largest / np.float32(_INT8_MAX)).astype(np.float32)
    # A row whose largest weight is so small that the scale underflows is stored as zeros too.
    scales[~(scales > 0)] = 1.0
    quantized = np.rint(rows / scales[:, None])  # rint: round half to even
    quantized = np.clip(quantized, -_INT8_MAX, _INT8_MAX).astype(np.int8)
    return quantized.reshape(weights.shape), scales


def quantize_array(
    weights: np.ndarray, dtype: str, name: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """A float32 weight matrix stored as `dtype`: (storage array, scales or None), both
    read-only and C-contiguous."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    scales = None
    if dtype == "fp32":
        stored = np.array(weights, copy=True)
    elif dtype == "fp16":
        stored = to_fp16(weights, name)
    elif dtype == "bf16":
        stored = to_bf16(weights)
    else:
        stored, scales = to_int8(weights, name)
        scales.flags.writeable = False
    stored = np.ascontiguousarray(stored)
    stored.flags.writeable = False
    return stored, scales


def widen(stored: np.ndarray, dtype: str, scales: np.ndarray | None = None) -> np.ndarray:
    """The float32 values a stored matrix stands for (what the kernels compute with)."""
    if dtype == "fp32":
        return np.array(stored, dtype=np.float32)
    if dtype == "fp16":
        return stored.astype(np.float32)
    if dtype == "bf16":
        return from_bf16(stored)
    assert scales is not None
    shape = (stored.shape[0],) + (1,) * (stored.ndim - 1)
    values: np.ndarray = stored.astype(np.float32) * scales.reshape(shape)
    return values


def check_stored(
    value: Any, dtype: str, name: str, shape: tuple[int, ...], copy: bool = True
) -> np.ndarray:
    """A private read-only copy of an already-quantised matrix (with copy=False possibly the
    caller's own array, C-contiguous), checked: exactly the storage dtype of `dtype` and
    `shape`."""
    array = np.asarray(value)
    if array.dtype != STORAGE[dtype]:
        raise TypeError(
            f"{name}: expected dtype {STORAGE[dtype]} (weight_dtype {dtype!r}) or a float32 "
            f"array to quantise, got dtype {array.dtype}"
        )
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    if not copy:
        return np.ascontiguousarray(array)
    stored = np.array(array, dtype=STORAGE[dtype], order="C", copy=True)
    stored.flags.writeable = False
    return stored


def check_scales(value: Any, name: str, rows: int) -> np.ndarray:
    """A private read-only float32 copy of int8 scales: shape (rows,), finite and > 0."""
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected float32 scales, got dtype {array.dtype}")
    if array.shape != (rows,):
        raise ValueError(f"{name}: expected shape ({rows},) (one scale per row), got {array.shape}")
    scales = np.array(array, dtype=np.float32, order="C", copy=True)
    bad = ~(np.isfinite(scales) & (scales > 0))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{name}: scale of row {row} is {float(scales[row])!r}; every scale must be finite "
            "and > 0"
        )
    scales.flags.writeable = False
    return scales


def checked_matrix(
    state_dict: Mapping[str, Any],
    key: str,
    shape: tuple[int, ...] | None,
    dtype: str,
    copy: bool = True,
) -> dict[str, np.ndarray]:
    """Weight matrix `key` of a quantised model (and, int8, its '<key>_scale') as private
    read-only arrays: taken as it is when given in the storage dtype of `dtype`, else read as
    float32 and quantised. `shape` None takes the given shape. copy=False may return the
    caller's own matrix (for one packed at once); scales are always copied."""
    name, scale_key = f"state_dict[{key!r}]", key + SCALE_SUFFIX
    value = state_dict[key]
    stored = _as_storage(value)
    if stored is not None and (stored.dtype == STORAGE[dtype] or stored.dtype.kind in "iu"):
        result = {
            key: check_stored(stored, dtype, name, stored.shape if shape is None else shape, copy)
        }
        if dtype == "int8":
            if scale_key not in state_dict:
                raise ValueError(
                    f"{name}: int8 weights need their scales under {scale_key!r} (float32, one "
                    "per row), as state_dict() gives them"
                )
            rows = result[key].shape[0] if result[key].ndim else 1
            result[scale_key] = check_scales(
                state_dict[scale_key], f"state_dict[{scale_key!r}]", rows
            )
        return result
    if dtype == "int8" and scale_key in state_dict:
        raise ValueError(
            f"state_dict[{scale_key!r}]: a scale goes with int8 weights only; {key!r} is given "
            "as floats, which are quantised with scales of their own (drop the scale)"
        )
    floats = as_float32(value, name)
    if shape is not None and floats.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {floats.shape}")
    if floats.ndim < 1:
        raise ValueError(f"{name}: expected a weight matrix, got a scalar")
    array, scales = quantize_array(floats, dtype, name)
    return {key: array} if scales is None else {key: array, scale_key: scales}


def _as_storage(value: Any) -> np.ndarray | None:
    """`value` as a numpy array when it may already be quantised (an integer or float16 array
    or tensor); None for anything to read as float32."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without torch
        if str(getattr(value, "dtype", "")) in ("torch.int8", "torch.int16", "torch.float16"):
            value = value.detach().cpu().numpy()
        else:
            return None
    if isinstance(value, np.ndarray) and not isinstance(value, np.ma.MaskedArray):
        if value.dtype.kind in "iu" or value.dtype == np.float16:
            return value
    return None
