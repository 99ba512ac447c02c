"""Prints the accuracy table of README's "Smaller, faster weights": pyrnn's fp16, bf16 and int8
weights against the same model in fp32, and torch's own dynamic int8 LSTM
(torch.ao.quantization.quantize_dynamic) against torch in fp32, on the same weights and inputs.

Models: LSTM(40, 128, num_layers=2), the shape of the bundled default model, and GRU(40, 128),
over T=200 steps of 4 sequences of standard normal inputs, with two sets of weights:
"random" is PyTorch's default initialisation; "trained-like" scales each row of every matrix by
10**u, u uniform in [-3, 0] (rows spanning 3 orders of magnitude, as trained networks' rows
do), which is what per-row scales are for. Errors: max |y - y_fp32| over every output of every
step, and the cosine similarity of the final hidden states (flattened) with fp32's.

    python tools/quantize_accuracy.py          # needs torch
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import pyrnn

SEED = 20261202
STEPS, BATCH, INPUT, HIDDEN = 200, 4, 40, 128


def trained_like(module: torch.nn.Module, seed: int) -> None:
    """Each row of every weight matrix scaled by 10**u, u uniform in [-3, 0]."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.startswith("weight"):
                rows = parameter.shape[0]
                factors = 10.0 ** rng.uniform(-3.0, 0.0, rows)
                parameter.mul_(torch.from_numpy(factors).float()[:, None])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def final_hidden(result: tuple[np.ndarray, object]) -> np.ndarray:
    state = result[1]
    return np.asarray(state[0] if isinstance(state, tuple) else state)


def rows_for(kind: str, weights: str) -> list[tuple[str, float, float]]:
    torch.manual_seed(SEED)
    factory = torch.nn.LSTM if kind == "lstm" else torch.nn.GRU
    layers = 2 if kind == "lstm" else 1
    reference = factory(INPUT, HIDDEN, num_layers=layers).eval()
    if weights == "trained-like":
        trained_like(reference, SEED)
    x = np.random.default_rng(SEED).standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    module = pyrnn.from_torch(reference)
    base = module(x)
    rows = []
    for dtype in ("fp16", "bf16", "int8"):
        result = pyrnn.quantize(module, dtype)(x)
        rows.append(
            (
                f"pyrnn {dtype}",
                float(np.abs(result[0] - base[0]).max()),
                cosine(final_hidden(result), final_hidden(base)),
            )
        )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        torch_base = reference(torch.from_numpy(x))
        # quantize_dynamic swaps submodules: the layer goes in a container.
        dynamic = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(reference), {torch.nn.LSTM, torch.nn.GRU}, dtype=torch.qint8
        )
        assert type(dynamic[0]) is not type(reference), "torch did not quantise the layer"
        torch_int8 = dynamic[0](torch.from_numpy(x))
    out, base_out = torch_int8[0].numpy(), torch_base[0].numpy()
    h = torch_int8[1][0] if isinstance(torch_int8[1], tuple) else torch_int8[1]
    h_base = torch_base[1][0] if isinstance(torch_base[1], tuple) else torch_base[1]
    rows.append(
        (
            "torch dynamic int8",
            float(np.abs(out - base_out).max()),
            cosine(h.numpy(), h_base.numpy()),
        )
    )
    return rows


def main() -> None:
    print(f"T={STEPS}, batch {BATCH}, input {INPUT}, hidden {HIDDEN}; errors against fp32")
    print()
    print("| model | weights | stored as | max abs error of outputs | cosine of final h |")
    print("| --- | --- | --- | --- | --- |")
    for kind, label in (("lstm", "LSTM(40, 128, 2 layers)"), ("gru", "GRU(40, 128)")):
        for weights in ("random", "trained-like"):
            for name, error, similarity in rows_for(kind, weights):
                print(f"| {label} | {weights} | {name} | {error:.2e} | {similarity:.6f} |")


if __name__ == "__main__":
    main()
