"""Helpers shared by the parity tests: presenting one array in many input forms, and the
tolerance checks against torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy_reference
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


def terms(module: Any) -> int:
    """K, the most terms any gate pre-activation sums: the widest layer input (x, or both
    directions' outputs of the layer below) plus the recurrent state, plus the two biases."""
    config = module.config
    output = config.get("proj_size") or config["hidden_size"]
    below = (2 if config.get("bidirectional") else 1) * output
    widest = max(config["input_size"], below if config.get("num_layers", 1) > 1 else 0)
    return widest + output + 2


# Bound of |pyrnn - torch| for inputs and weights of order 1 (PyTorch's initialisation), as
# (SUM_ULPS_FIXED + SUM_ULPS_PER_ROOT_K * sqrt(K)) * 2**-24, K the terms of the longest sum
# (terms()); relu RNNs, which grow without bound, get the same again times |torch|. Both sides
# sum each pre-activation in float32 in a different order: the rounding differences add up like
# a random walk over the K terms of partial sums of order 1, hence sqrt(K); the fixed part is
# the activations' few ulp and what carries through time. Measured over the parity grid, the
# chunked and the large-size tests, every kind and every ISA (K = 4 to 1400): at most
# 2.2 * sqrt(K) * 2**-24, and 4 ulp at K = 4 (2.4e-7), 2e-6 at K ~ 1400. The bound, 16 +
# 3 sqrt(K) ulp (9.5e-7 + 1.8e-7 * sqrt(K): 1.3e-6 at K = 4, 7.6e-6 at K = 1400), leaves a
# factor of 2.7 or more everywhere; a fixed 1e-5 would let through errors 10x those measured.
SUM_ULPS_FIXED, SUM_ULPS_PER_ROOT_K = 16, 3


def assert_close(actual: Any, expected: torch.Tensor, relu: bool, what: str, k: int) -> None:
    """|actual - expected| within the bound above for sums of `k` terms (see terms())."""
    expected_np = expected.detach().numpy()
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}"
    assert actual.shape == tuple(expected.shape), f"{what}: {actual.shape} vs {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected_np)
    tolerance = (SUM_ULPS_FIXED + SUM_ULPS_PER_ROOT_K * np.sqrt(k)) * 2.0**-24
    bound = tolerance * (1.0 + (np.abs(expected_np) if relu else 0.0))
    worst = float(np.max(error - bound, initial=-1.0))
    assert worst <= 0.0, (
        f"{what}: max error {float(error.max()):.3g} exceeds the bound {tolerance:.3g} for "
        f"sums of K={k} terms"
    )


# The stated agreement with torch.nn float32 (README, "Numerics"), for inputs of any size:
#   |pyrnn - torch| <= ATOL + RTOL * |torch| + SUM_RTOL * S,
# S being the largest sum of |terms| of any pre-activation in the run (pre_activation_scale).
# Both sides sum each pre-activation's terms in float32 in different orders; that rounding
# scales with the terms, not with the result, which can be small when they cancel. Measured:
# at most 1.2 * 2**-24 * S (sums of 2 to 1089 terms, inputs up to 1e4, input weights up to 1e3
# times PyTorch's initialisation, every ISA): SUM_RTOL leaves a factor of 3. ATOL covers the
# activations' approximations and what small differences carry through time; RTOL outputs that
# grow (relu RNNs) or accumulate (an LSTM's c). Recurrent weights far beyond PyTorch's
# initialisation amplify any rounding step after step (torch float32 against float64 too):
# no fixed bound holds there.
ATOL, RTOL, SUM_RTOL = 1e-5, 1e-5, 4 * 2.0**-24


def pre_activation_scale(module: Any, x: np.ndarray) -> float:
    """S for a unidirectional pyrnn sequence module run over x (T, N, I) from zero states: the
    largest sum_k |w_k| * |v_k| (+ |b_ih| + |b_hh|) over every gate pre-activation of every
    step and layer (and over the projection's outputs), in float64 with float64 states."""
    config = module.config
    assert not config["bidirectional"]
    params = {key: value.astype(np.float64) for key, value in module.state_dict().items()}
    layer_input, scale = np.asarray(x, np.float64), 0.0
    with np.errstate(over="ignore"):  # exp(-v) of a very negative gate: sigmoid is 0, as wanted
        for layer in range(config["num_layers"]):
            layer_input, layer_scale = _layer_scale(config, params, f"_l{layer}", layer_input)
            scale = max(scale, layer_scale)
    return scale


def _layer_scale(
    config: dict[str, Any], p: dict[str, np.ndarray], suffix: str, xs: np.ndarray
) -> tuple[np.ndarray, float]:
    """One layer over xs (T, N, features): its outputs (T, N, P) and its largest S."""
    kind, proj, hidden = config["kind"], config.get("proj_size", 0), config["hidden_size"]
    w_ih, w_hh = np.abs(p[f"weight_ih{suffix}"]), np.abs(p[f"weight_hh{suffix}"])
    bias = np.abs(p.get(f"bias_ih{suffix}", 0.0)) + np.abs(p.get(f"bias_hh{suffix}", 0.0))
    cell_params = {k: v for k, v in p.items() if not k.startswith("weight_hr")}
    h, c = np.zeros((xs.shape[1], proj or hidden)), np.zeros((xs.shape[1], hidden))
    outputs, scale = [], 0.0
    for x in xs:
        scale = max(scale, float((np.abs(x) @ w_ih.T + np.abs(h) @ w_hh.T + bias).max()))
        if kind == "lstm":
            h, c = numpy_reference.lstm_cell(x, h, c, cell_params, suffix)  # before W_hr
            if proj:
                w_hr = p[f"weight_hr{suffix}"]
                scale = max(scale, float((np.abs(h) @ np.abs(w_hr).T).max()))
                h = h @ w_hr.T
        elif kind == "gru":
            h = numpy_reference.gru_cell(x, h, p, suffix)
        else:
            h = numpy_reference.rnn_cell(x, h, p, suffix, config["nonlinearity"])
        outputs.append(h)
    return np.stack(outputs), scale


def assert_within_stated_tolerance(actual: Any, expected: torch.Tensor, scale: float, what: str):
    """|actual - expected| <= ATOL + RTOL * |expected| + SUM_RTOL * scale, elementwise."""
    expected_np = expected.detach().numpy().astype(np.float64)
    assert isinstance(actual, np.ndarray) and actual.shape == expected_np.shape, what
    error = np.abs(actual.astype(np.float64) - expected_np)
    bound = ATOL + RTOL * np.abs(expected_np) + SUM_RTOL * scale
    worst = int(np.argmax(error - bound))
    assert error.flat[worst] <= bound.flat[worst], (
        f"{what}: error {error.flat[worst]:.3g} exceeds the bound {bound.flat[worst]:.3g} "
        f"(|torch| = {abs(expected_np.flat[worst]):.3g}, S = {scale:.3g}); max error "
        f"{error.max():.3g}"
    )
