"""Rewrites of a model's graph before the core builds it: the same function, fewer weights read
per step. The model keeps its original graph and constants (for state_dict, files and repr);
only what the core runs changes.

``fold_linear_into_recurrent``: a linear layer whose only reader is a recurrent layer's input
is a product of two linear maps, W_ih (W x + b) = (W_ih W) x + W_ih b, so it folds into the
first layer's input weights. A streamed frame then reads W_ih W instead of W and W_ih (for the
Linear(64, 64) in front of an LSTM-64, 16 KiB fewer bytes from L2 per step: about 0.15 us).
The products are formed in float64 and rounded once, at least as accurate as the two float32
products they replace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np

from .graph import Graph, Node, structure_leaves

__all__ = ["fold_linear_into_recurrent"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def fold_linear_into_recurrent(
    graph: Graph, constants: Mapping[str, np.ndarray]
) -> tuple[Graph, dict[str, np.ndarray]]:
    """The graph with every foldable linear -> rnn pair folded, and the constants it uses."""
    readers = Counter(x for node in graph.nodes for x in node.inputs if isinstance(x, str))
    outputs = set(structure_leaves(graph.outputs))
    producer = {name: node for node in graph.nodes for name in node.outputs}
    new_constants = dict(constants)
    folded: set[int] = set()
    nodes: list[Node] = []
    for node in graph.nodes:
        source = node.inputs[0] if node.op == "rnn" else None
        linear = producer.get(source) if isinstance(source, str) else None
        rewritten = None
        if linear is not None and linear.op == "linear":
            rewritten = _fold(linear, node, readers, outputs, new_constants, len(folded))
        if rewritten is None:
            nodes.append(node)
            continue
        folded.add(id(linear))
        nodes.append(rewritten)
    if not folded:
        return graph, dict(constants)
    nodes = [node for node in nodes if id(node) not in folded]
    used = {x for node in nodes for x in node.inputs if isinstance(x, str)} | outputs
    names = [name for name in new_constants if name in used]
    result = Graph(graph.inputs, graph.outputs, names, nodes)
    return result, {name: new_constants[name] for name in names}


def _fold(
    linear: Node,
    rnn: Node,
    readers: Counter[str],
    outputs: set[str],
    constants: dict[str, np.ndarray],
    serial: int,
) -> Node | None:
    """`rnn` reading `x` instead of linear(x), with folded first-layer input weights; None when
    the pair does not fold (the linear output read elsewhere, weights not fp32 constants, a
    bias to fold into a layer without biases)."""
    (x, weight, *rest), hidden = linear.inputs, linear.outputs[0]
    bias = rest[0] if rest else None
    if readers[hidden] != 1 or hidden in outputs or not isinstance(x, str):
        return None
    if not all(isinstance(name, str) and name in constants for name in (weight, bias) if name):
        return None
    w = constants[str(weight)]
    b = constants[str(bias)] if bias else None
    if w.dtype != np.float32 or w.ndim != 2 or (b is not None and b.dtype != np.float32):
        return None
    attrs = rnn.attrs
    directions = 2 if attrs["bidirectional"] else 1
    count = len(rnn.inputs) - 3
    per = count // (attrs["num_layers"] * directions)
    if b is not None and not attrs["has_biases"]:
        return None
    inputs = list(rnn.inputs)
    inputs[0] = x
    for direction in range(directions):
        at = 3 + direction * per
        w_ih_name = inputs[at]
        if not isinstance(w_ih_name, str) or constants.get(w_ih_name) is None:
            return None
        w_ih = constants[w_ih_name].astype(np.float64)
        if w_ih.shape[1] != w.shape[0] or w_ih.shape[0] % _GATES[attrs["mode"]]:
            return None
        prefix = f"_folded{serial}.{direction}"
        constants[f"{prefix}.w_ih"] = _float32(w_ih @ w.astype(np.float64))
        inputs[at] = f"{prefix}.w_ih"
        if b is not None:
            b_ih_name = inputs[at + 2]
            b_ih = constants[str(b_ih_name)].astype(np.float64)
            constants[f"{prefix}.b_ih"] = _float32(b_ih + w_ih @ b.astype(np.float64))
            inputs[at + 2] = f"{prefix}.b_ih"
    source = f"{linear.source} folded into {rnn.source}" if linear.source else rnn.source
    return Node(rnn.op, inputs, list(rnn.outputs), dict(rnn.attrs), source)


def _float32(array: np.ndarray) -> np.ndarray:
    result = np.ascontiguousarray(array, dtype=np.float32)
    result.flags.writeable = False
    return result
