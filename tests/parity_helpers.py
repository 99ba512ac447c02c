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


def assert_close(actual: Any, expected: torch.Tensor, relu: bool, what: str) -> None:
    expected_np = expected.detach().numpy()
    assert isinstance(actual, np.ndarray), f"{what}: got {type(actual).__name__}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}"
    assert actual.shape == tuple(expected.shape), f"{what}: {actual.shape} vs {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected_np)
    bound = 1e-5 + (1e-5 * np.abs(expected_np) if relu else 0.0)
    worst = float(np.max(error - bound, initial=-1.0))
    assert worst <= 0.0, f"{what}: max error {float(error.max()):.3g} exceeds the bound"


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
