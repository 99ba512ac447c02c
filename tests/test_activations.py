"""The vectorised sigmoid and tanh of every ISA this CPU runs, against float64 numpy over a
dense sweep of the whole float32 range plus the special values (+-inf, NaN, +-0, denormals,
huge magnitudes). The bound asserted here is the one documented in cpp/kernels/simd-inl.h."""

from __future__ import annotations

import numpy as np
import pytest

import pyrnn
from pyrnn import _testing

# Documented bound (simd-inl.h, README): |y - ref| <= RTOL * |ref| + ATOL. RTOL is 2e-7, between
# 1.7 and 3.4 float32 ulps of the result (measured worst case over every 13th float32: 1.47e-7
# for sigmoid, 1.42e-7 for tanh on AVX2/AVX-512, 1.65e-7 for glibc's tanhf on the scalar path);
# ATOL = FLT_MIN covers results that are themselves sub-normal (sigmoid(x) for x < -87.3), where
# a relative bound is meaningless and the kernels return 0 or a nearby denormal.
RTOL = 2e-7
ATOL = float(np.finfo(np.float32).tiny)

FUNCTIONS = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
}


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sweep() -> np.ndarray:
    """Every 2053rd float32 bit pattern (about 2 million values covering every exponent and
    sign), every float in a dense band around the transition points, and the specials."""
    bits = np.arange(0, 2**32, 2053, dtype=np.uint64).astype(np.uint32)
    grid = bits.view(np.float32)
    dense = np.linspace(-20.0, 20.0, 400_001, dtype=np.float32)
    tiny = np.finfo(np.float32).tiny
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, tiny, -tiny, tiny / 2, -tiny / 2,
         0.625, -0.625, np.nextafter(np.float32(0.625), np.float32(0)), 88.0, 88.3, 88.72,
         -88.0, -88.3, -88.72, -103.9, -104.0, 9.01, -9.01, 17.0, -17.0,
         3e38, -3e38, np.finfo(np.float32).max, -np.finfo(np.float32).max],
        dtype=np.float32,
    )  # fmt: skip
    x = np.concatenate([grid, dense, specials])
    return x[~np.isnan(x)]


SWEEP = _sweep()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_error_bound_over_the_float_range(isa: str, name: str) -> None:
    x = SWEEP
    with np.errstate(over="ignore"):
        ref = FUNCTIONS[name](x.astype(np.float64))
    y = _testing.activation(isa, name, x).astype(np.float64)
    err = np.abs(y - ref)
    bad = ~(err <= RTOL * np.abs(ref) + ATOL)
    assert not bad.any(), (
        f"{isa} {name}: {bad.sum()} values exceed {RTOL:g}*|ref| + {ATOL:g}, e.g. "
        f"x={x[bad][:5]}, got {y[bad][:5]}, expected {ref[bad][:5]}"
    )


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_nan_propagates(isa: str, name: str) -> None:
    nans = np.array([np.nan, -np.nan, np.float32(np.nan)] * 11, dtype=np.float32)
    x = np.concatenate([nans, np.linspace(-100, 100, 33, dtype=np.float32)])
    rng = np.random.default_rng(0)
    rng.shuffle(x)
    y = _testing.activation(isa, name, x)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))


def test_exact_limits(isa: str) -> None:
    big = np.array([np.inf, 3e38, 1e10, 200.0, 89.0, 30.0], dtype=np.float32)
    x = np.concatenate([big, -big])
    sig = _testing.activation(isa, "sigmoid", x)
    tanh = _testing.activation(isa, "tanh", x)
    np.testing.assert_array_equal(sig[: big.size], 1.0)
    # sigmoid(-30) = 9.4e-14 is a normal float; beyond -88.7 the true value is sub-normal.
    np.testing.assert_array_equal(sig[big.size : 2 * big.size - 1], 0.0)
    assert 0 < sig[-1] < 1e-13
    np.testing.assert_array_equal(tanh, np.sign(x))


def test_zeros_and_denormals(isa: str) -> None:
    denormals = np.array([1e-45, 1e-40, 5e-39, np.finfo(np.float32).tiny / 2], dtype=np.float32)
    x = np.concatenate([[0.0, -0.0], denormals, -denormals]).astype(np.float32)
    tanh = _testing.activation(isa, "tanh", x)
    # tanh(x) = x to within float rounding for |x| < 2^-12, so exactly x, with the sign of zero.
    np.testing.assert_array_equal(tanh, x)
    np.testing.assert_array_equal(np.signbit(tanh), np.signbit(x))
    np.testing.assert_array_equal(_testing.activation(isa, "sigmoid", x), 0.5)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 33])
def test_every_length_and_the_tail(isa: str, n: int) -> None:
    x = np.linspace(-4, 4, n, dtype=np.float32)
    y = _testing.activation(isa, "tanh", x)
    assert y.shape == (n,)
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=RTOL, atol=ATOL)


def test_bad_arguments_are_named() -> None:
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="name: expected 'sigmoid' or 'tanh', got 'relu'"):
        _testing.activation("scalar", "relu", x)
    with pytest.raises(ValueError, match=r"isa: expected one of .*scalar.*, got 'sse9'"):
        _testing.activation("sse9", "tanh", x)
