"""Helpers shared by the parity tests: presenting one array in many input forms, and the
tolerance check against torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

# The reference needs no parallelism: one torch thread avoids spin-waiting against other
# processes on a small CI machine (a first torch call took 0.1-3 s with 2 threads, 2 ms with 1).
torch.set_num_threads(1)


def present(x: np.ndarray, form: str) -> Any:
    """`x` (float32, exactly representable in float16) in one of the X_FORMS; same values."""
    if form == "f32":
        return x.copy()
    if form == "f64":
        return x.astype(np.float64)
    if form == "f16":
        return x.astype(np.float16)
    if form == "torch":
        return torch.from_numpy(x.copy())
    if form == "torch_grad":
        return torch.from_numpy(x.copy()).requires_grad_()
    if form == "strided_steps":
        big = np.full((2 * x.shape[0], *x.shape[1:]), np.nan, np.float32)
        big[::2] = x
        return big[::2]
    if form == "strided_features":
        big = np.full((*x.shape[:-1], 3 * x.shape[-1]), np.nan, np.float32)
        big[..., ::3] = x
        return big[..., ::3]
    if form == "negstride":
        return np.ascontiguousarray(x[::-1])[::-1]
    if form == "transposed":
        view = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
        assert not view.flags.c_contiguous or 1 in x.shape[:2]
        return view
    assert form == "list"
    return x.tolist()


def assert_close(actual: Any, expected: torch.Tensor, relu: bool, what: str) -> None:
    expected_np = expected.detach().numpy()
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}"
    assert actual.shape == tuple(expected.shape), f"{what}: {actual.shape} vs {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected_np)
    bound = 1e-5 + (1e-5 * np.abs(expected_np) if relu else 0.0)
    worst = float(np.max(error - bound, initial=-1.0))
    assert worst <= 0.0, f"{what}: max error {float(error.max()):.3g} exceeds the bound"
