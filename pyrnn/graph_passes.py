"""Rewrites of a model's graph before the core builds it: the same function, fewer weights read
per step. The model keeps its original graph and constants (for state_dict, files and repr);
only what the core runs changes. Rewrites see the constants' dtypes and shapes only; a derived
constant is computed from the originals when the core fetches it, so that the weights are
read (from a file, say) one at a time.

``fold_linear_into_recurrent``: a linear layer whose only reader is a recurrent layer's input
is a product of two linear maps, W_ih (W x + b) = (W_ih W) x + W_ih b, so it folds into the
first layer's input weights. A streamed frame then reads W_ih W instead of W and W_ih (for the
Linear(64, 64) in front of an LSTM-64, 16 KiB fewer bytes from L2 per step: about 0.15 us).
The products are formed in float64 and rounded once, at least as accurate as the two float32
products they replace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from .graph import Graph, Node, structure_leaves

__all__ = ["fold_linear_into_recurrent"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

Meta = Mapping[str, tuple[str, tuple[int, ...]]]  # constant -> (storage dtype, shape)
Fetch = Callable[[str], np.ndarray]
# A derived constant: its (dtype, shape), and how to compute it from the originals.
Derived = dict[str, tuple[tuple[str, tuple[int, ...]], Callable[[Fetch], np.ndarray]]]


def fold_linear_into_recurrent(graph: Graph, meta: Meta) -> tuple[Graph, Derived]:
    """The graph with every foldable linear -> rnn pair folded, and its derived constants.
    The folded graph keeps every original constant, read by no node when folded away (the
    model's state_dict still has it)."""
    readers = Counter(x for node in graph.nodes for x in node.inputs if isinstance(x, str))
    outputs = set(structure_leaves(graph.outputs))
    producer = {name: node for node in graph.nodes for name in node.outputs}
    derived: Derived = {}
    folded: set[int] = set()
    nodes: list[Node] = []
    for node in graph.nodes:
        source = node.inputs[0] if node.op == "rnn" else None
        linear = producer.get(source) if isinstance(source, str) else None
        rewritten = None
        if linear is not None and linear.op == "linear":
            rewritten = _fold(linear, node, readers, outputs, meta, derived, len(folded))
        if rewritten is None:
            nodes.append(node)
            continue
        folded.add(id(linear))
        nodes.append(rewritten)
    if not folded:
        return graph, {}
    nodes = [node for node in nodes if id(node) not in folded]
    names = [*graph.constants, *derived]
    result = Graph(
        graph.inputs, graph.outputs, names, nodes, graph.weight_dtype, list(graph.quantized)
    )
    return result, derived


def _fold(
    linear: Node,
    rnn: Node,
    readers: Counter[str],
    outputs: set[str],
    meta: Meta,
    derived: Derived,
    serial: int,
) -> Node | None:
    """`rnn` reading `x` instead of linear(x), with folded first-layer input weights (added to
    `derived`); None when the pair does not fold (the linear output read elsewhere, weights
    not fp32 constants, a bias to fold into a layer without biases)."""
    (x, weight, *rest), hidden = linear.inputs, linear.outputs[0]
    bias = rest[0] if rest else None
    if readers[hidden] != 1 or hidden in outputs or not isinstance(x, str):
        return None
    if not all(isinstance(name, str) and name in meta for name in (weight, bias) if name):
        return None
    w = meta[str(weight)]
    b = meta[str(bias)] if bias else None
    if w[0] != "float32" or len(w[1]) != 2 or (b is not None and b[0] != "float32"):
        return None
    attrs = rnn.attrs
    directions = 2 if attrs["bidirectional"] else 1
    count = len(rnn.inputs) - 3
    per = count // (attrs["num_layers"] * directions)
    if b is not None and not attrs["has_biases"]:
        return None
    inputs = list(rnn.inputs)
    inputs[0] = x
    made: Derived = {}
    for direction in range(directions):
        at = 3 + direction * per
        w_ih_name = inputs[at]
        if not isinstance(w_ih_name, str) or w_ih_name not in meta:
            return None
        w_ih = meta[w_ih_name]
        if w_ih[0] != "float32" or len(w_ih[1]) != 2:
            return None
        if w_ih[1][1] != w[1][0] or w_ih[1][0] % _GATES[attrs["mode"]]:
            return None
        prefix = f"_folded{serial}.{direction}"
        made[f"{prefix}.w_ih"] = (
            ("float32", (w_ih[1][0], w[1][1])),
            partial(_folded_weight, w_ih_name, str(weight)),
        )
        inputs[at] = f"{prefix}.w_ih"
        if bias is not None:
            b_ih_name = str(inputs[at + 2])
            made[f"{prefix}.b_ih"] = (
                ("float32", (w_ih[1][0],)),
                partial(_folded_bias, w_ih_name, b_ih_name, str(bias)),
            )
            inputs[at + 2] = f"{prefix}.b_ih"
    derived.update(made)
    source = f"{linear.source} folded into {rnn.source}" if linear.source else rnn.source
    return Node(rnn.op, inputs, list(rnn.outputs), dict(rnn.attrs), source)


def _folded_weight(w_ih: str, weight: str, fetch: Fetch) -> np.ndarray:
    """W_ih W, formed in float64 and rounded once."""
    # Weights beyond float32's range (or NaN) give inf or NaN, as the two products unfolded
    # would; numpy's warnings about them say nothing the caller can act on.
    with np.errstate(all="ignore"):
        product = np.asarray(fetch(w_ih), np.float64) @ np.asarray(fetch(weight), np.float64)
        return np.ascontiguousarray(product, dtype=np.float32)


def _folded_bias(w_ih: str, b_ih: str, bias: str, fetch: Fetch) -> np.ndarray:
    """b_ih + W_ih b, formed in float64 and rounded once."""
    with np.errstate(all="ignore"):
        wide = np.asarray(fetch(b_ih), np.float64) + np.asarray(
            fetch(w_ih), np.float64
        ) @ np.asarray(fetch(bias), np.float64)
        return np.ascontiguousarray(wide, dtype=np.float32)
