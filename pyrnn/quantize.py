"""pyrnn.quantize: a copy of a model whose weight matrices are stored in fp16, bf16 or int8."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from ._base import Module
from ._weights import NARROW_DTYPES, SCALE_SUFFIX
from .graph import Graph, structure_leaves
from .model import Model

__all__ = ["quantize"]

M = TypeVar("M", Module, Model)


def quantize(model: M, weights: str) -> M:
    """A new model of the same type whose weight matrices are stored as `weights`; `model`
    is unchanged.

    ``weights`` is ``"fp16"``, ``"bf16"`` or ``"int8"``. What is narrowed: the matrices of
    recurrent layers (W_ih, W_hh and an LSTM's projection W_hr) and, in a pyrnn.Model, the
    weights of its linear and conv1d layers. Biases, embedding tables, normalisation
    parameters and every other constant stay float32 (as does a matrix that anything but its
    layer reads). The kernels widen each weight as they load it: arithmetic, inputs, outputs
    and states stay float32. The quantised model holds its weights once, in the narrow type;
    ``model.weight_dtype`` says which, ``state_dict()`` returns them as stored.

    Rounding:

    - ``fp16``: IEEE half precision, round to nearest even (numpy's float32 -> float16). A
      weight beyond fp16's range (|w| > 65504) is refused with ValueError naming the tensor,
      never made inf.
    - ``bf16``: the top 16 bits of the float32, rounded to nearest even (NaN stays NaN):
      float32's range, 8 bits of precision. Stored as uint16 arrays of those bits.
    - ``int8``: symmetric, one float32 scale per output row (each gate unit of W_ih, W_hh and
      W_hr, each output feature of a Linear, each output channel of a Conv1d):
      ``scale = max|w_row| / 127``, ``q = round_half_even(w / scale)`` clipped to
      [-127, 127], weight = q * scale. A row of zeros gets scale 1. Stored as int8 arrays,
      each with its scales under ``'<key>_scale'`` (float32, shape (rows,)).

    A model that is already quantised is refused (ValueError): its float32 weights are not
    kept, so quantise the original float32 model instead.
    """
    if weights not in NARROW_DTYPES:
        raise ValueError(
            f"weights: expected one of {', '.join(repr(d) for d in NARROW_DTYPES)}, got {weights!r}"
        )
    if isinstance(model, Module):
        _refuse_quantized(model.weight_dtype)
        return _quantize_module(model, weights)  # type: ignore[return-value]
    if isinstance(model, Model):
        _refuse_quantized(model.weight_dtype)
        return _quantize_model(model, weights)
    raise TypeError(
        f"model: expected a pyrnn module (RNN, LSTM, GRU or a cell) or a pyrnn.Model, got "
        f"{type(model).__name__}"
    )


def _refuse_quantized(weight_dtype: str) -> None:
    if weight_dtype != "fp32":
        raise ValueError(
            f"model: is already quantised (weight_dtype {weight_dtype!r}) and holds no float32 "
            "weights to quantise again; quantise the original float32 model instead"
        )


def _quantize_module(module: Module, weights: str) -> Module:
    spec = dataclasses.replace(module._spec, weight_dtype=weights)
    result = type(module).__new__(type(module))
    # Each float32 matrix is unpacked, quantised and packed in turn.
    result._load(spec, module._parameters, True, spec.kind)
    return result


# Where each op takes weight matrices that the core packs: operand positions (rnn: see
# _rnn_matrices) and the rank a matrix has there.
_WEIGHT_OPERANDS = {"linear": ((1,), 2), "conv1d": ((1,), 3), "rnn_cell": ((3, 4), 2)}


def _rnn_matrices(inputs: list[str | int | None], attrs: dict[str, Any]) -> list[int]:
    """Operand positions of an rnn node's W_ih, W_hh (and W_hr) of every layer."""
    groups = int(attrs["num_layers"]) * (2 if attrs["bidirectional"] else 1)
    base = 4 if attrs["has_biases"] else 2
    count = len(inputs) - 3
    if groups < 1 or count % groups:
        return []
    per = count // groups
    positions = []
    for group in range(groups):
        at = 3 + group * per
        positions += [at, at + 1] + ([at + per - 1] if per == base + 1 else [])
    return positions


def _quantize_model(model: Model, weights: str) -> Model:
    graph = model.graph
    constants = model._constants
    # Per node using matrices: their names; every use of each constant: is it such a matrix?
    node_matrices: list[tuple[bool, list[str]]] = []  # (all of them or none, names)
    elsewhere: set[str] = set(structure_leaves(graph.outputs))
    for node in graph.nodes:
        if node.op == "rnn":
            positions, rank, together = _rnn_matrices(node.inputs, node.attrs), 2, True
        elif node.op in _WEIGHT_OPERANDS:
            positions, rank = list(_WEIGHT_OPERANDS[node.op][0]), _WEIGHT_OPERANDS[node.op][1]
            together = node.op == "rnn_cell"
        else:
            positions, rank, together = [], 0, False
        names = []
        for index, operand in enumerate(node.inputs):
            if not isinstance(operand, str) or operand not in constants:
                continue
            dtype, shape = model._meta[operand]  # nothing unpacked to decide
            if index in positions and dtype == "float32" and len(shape) == rank:
                names.append(operand)
            else:
                elsewhere.add(operand)
        node_matrices.append((together, names))
    # A scale tensor's name must be free.
    if weights == "int8":
        elsewhere |= {name for name in constants if name + SCALE_SUFFIX in constants}
    # A recurrent layer's matrices share one type: one that must stay float32 keeps its
    # layer's others float32, which may keep another layer sharing them float32, and so on.
    changed = True
    while changed:
        changed = False
        for together, names in node_matrices:
            if together and any(name in elsewhere for name in names):
                fresh = set(names) - elsewhere
                if fresh:
                    elsewhere |= fresh
                    changed = True
    chosen = {name for _, names in node_matrices for name in names} - elsewhere
    if not chosen:
        raise ValueError(
            "model: has no weight matrix to quantise (the matrices of linear, conv1d and "
            "recurrent layers, used by nothing else)"
        )
    quantized = [name for name in graph.constants if name in chosen]
    new_graph = Graph.from_json(
        {**graph.to_json(), "weight_dtype": weights, "quantized": quantized}
    )
    return Model(new_graph, constants)
