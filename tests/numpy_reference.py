"""A tiny float64 numpy implementation of the six torch.nn recurrent modules: the equations
written once, readably, as documentation and as a second oracle (test_cells.py checks it
against torch). Shapes: T steps, N batch, I input, H hidden, P projection (P = H without one).
Weights are PyTorch's: W_ih (G*H, I), W_hh (G*H, P), b_ih/b_hh (G*H,), W_hr (P, H); the G gate
blocks are stacked in PyTorch's order (LSTM i, f, g, o; GRU r, z, n)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Array = np.ndarray


def _sigmoid(v: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-v))


def _affine(x: Array, w: Array, b: Array | None) -> Array:
    """x (N, K) @ w.T (K, G*H) + b."""
    return x @ w.T + (0.0 if b is None else b)


def rnn_cell(
    x: Array, h: Array, p: Mapping[str, Array], suffix: str = "", nonlinearity: str = "tanh"
) -> Array:
    """h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu."""
    pre = _affine(x, p[f"weight_ih{suffix}"], p.get(f"bias_ih{suffix}")) + _affine(
        h, p[f"weight_hh{suffix}"], p.get(f"bias_hh{suffix}")
    )
    return np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0.0)


def lstm_cell(
    x: Array, h: Array, c: Array, p: Mapping[str, Array], suffix: str = ""
) -> tuple[Array, Array]:
    """i, f, o = sigmoid(.), g = tanh(.) of W_i* x + b_i* + W_h* h + b_h*;
    c' = f * c + i * g;  h' = o * tanh(c'), then h' = W_hr h' when projecting."""
    gates = _affine(x, p[f"weight_ih{suffix}"], p.get(f"bias_ih{suffix}")) + _affine(
        h, p[f"weight_hh{suffix}"], p.get(f"bias_hh{suffix}")
    )
    i, f, g, o = np.split(gates, 4, axis=-1)
    c1 = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h1 = _sigmoid(o) * np.tanh(c1)
    if f"weight_hr{suffix}" in p:
        h1 = h1 @ p[f"weight_hr{suffix}"].T
    return h1, c1


def gru_cell(x: Array, h: Array, p: Mapping[str, Array], suffix: str = "") -> Array:
    """r, z = sigmoid(W_i* x + b_i* + W_h* h + b_h*);
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))  (r multiplies the hidden part *with* its bias);
    h' = (1 - z) * n + z * h."""
    gi = _affine(x, p[f"weight_ih{suffix}"], p.get(f"bias_ih{suffix}"))
    gh = _affine(h, p[f"weight_hh{suffix}"], p.get(f"bias_hh{suffix}"))
    i_r, i_z, i_n = np.split(gi, 3, axis=-1)
    h_r, h_z, h_n = np.split(gh, 3, axis=-1)
    r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def cell(config: Mapping, p: Mapping[str, Array], x: Array, h: Array | None, c: Array | None):
    """One step of a cell module (config as pyrnn's), batched (N, I) input. Returns h' or
    (h', c'), with zero states when none are given."""
    params = {k: np.asarray(v, np.float64) for k, v in p.items()}
    x = np.asarray(x, np.float64)
    n_rows, hidden = x.shape[0], config["hidden_size"]
    h = np.zeros((n_rows, hidden)) if h is None else np.asarray(h, np.float64)
    if config["kind"] == "lstm_cell":
        c = np.zeros((n_rows, hidden)) if c is None else np.asarray(c, np.float64)
        return lstm_cell(x, h, c, params)
    if config["kind"] == "gru_cell":
        return gru_cell(x, h, params)
    return rnn_cell(x, h, params, nonlinearity=config.get("nonlinearity", "tanh"))


def sequence(
    config: Mapping,
    p: Mapping[str, Array],
    x: Array,
    h0: Array | None = None,
    c0: Array | None = None,
) -> tuple[Array, Array, Array | None]:
    """A whole RNN/LSTM/GRU (config as pyrnn's) over x (T, N, I). Layer l's input is layer l-1's
    output; a bidirectional layer runs a second set of weights (suffix _reverse) from t = T-1
    down to 0 and concatenates [forward | backward] on the feature axis. h_n and c_n are
    (L*D, N, P) and (L*D, N, H), ordered layer-major then direction.
    Returns (out (T, N, D*P), h_n, c_n or None)."""
    kind, hidden = config["kind"], config["hidden_size"]
    layers, directions = config.get("num_layers", 1), 2 if config.get("bidirectional") else 1
    out_size = config.get("proj_size", 0) or hidden
    params = {k: np.asarray(v, np.float64) for k, v in p.items()}
    layer_input = np.asarray(x, np.float64)
    steps, n_rows = layer_input.shape[:2]
    h_n = np.zeros((layers * directions, n_rows, out_size))
    c_n = np.zeros((layers * directions, n_rows, hidden))
    for layer in range(layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            h = np.zeros((n_rows, out_size)) if h0 is None else np.asarray(h0[index], np.float64)
            c = np.zeros((n_rows, hidden)) if c0 is None else np.asarray(c0[index], np.float64)
            out = np.zeros((steps, n_rows, out_size))
            order = range(steps - 1, -1, -1) if direction else range(steps)
            for t in order:
                if kind == "lstm":
                    h, c = lstm_cell(layer_input[t], h, c, params, suffix)
                elif kind == "gru":
                    h = gru_cell(layer_input[t], h, params, suffix)
                else:
                    h = rnn_cell(
                        layer_input[t], h, params, suffix, config.get("nonlinearity", "tanh")
                    )
                out[t] = h
            outputs.append(out)
            h_n[index], c_n[index] = h, c
        layer_input = np.concatenate(outputs, axis=-1)
    return layer_input, h_n, (c_n if kind == "lstm" else None)
