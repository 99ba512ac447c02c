"""The reference interpreter (tests/graph_reference.py) on hand-written one-node graphs: the
semantics pyrnn/graph.py states for each op, at the corners captured models rarely reach."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from graph_reference import run_graph

from pyrnn.graph import Graph, InputSpec, Node

OPEN_END = 2**63 - 1


def run_op(op: str, operands: list[Any], attrs: dict[str, Any], *arrays: np.ndarray) -> Any:
    """Runs `op` once; array operands are named a0, a1, ... (graph inputs), others are literal."""
    inputs = [
        InputSpec(f"a{i}", "int64" if a.dtype == np.int64 else "float32", list(a.shape))
        for i, a in enumerate(arrays)
    ]
    graph = Graph(inputs, {"tensor": "out"}, [], [Node(op, operands, ["out"], attrs)])
    graph = Graph.from_json(json.loads(json.dumps(graph.to_json())))
    return run_graph(graph, {}, list(arrays))


def arange(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)


def test_squeeze_keeps_listed_dims_whose_extent_is_not_one() -> None:
    x = arange(1, 3, 1)
    assert run_op("squeeze", ["a0"], {"dims": [0, 1]}, x).shape == (3, 1)
    assert run_op("squeeze", ["a0"], {"dims": []}, x).shape == (3,)


@pytest.mark.parametrize(
    ("start", "end", "step", "expected"),
    [
        (1, OPEN_END, 1, [1, 2, 3, 4]),
        (-2, OPEN_END, 1, [3, 4]),
        (0, -1, 2, [0, 2]),
        (-9, 9, 3, [0, 3]),
    ],
)
def test_slice_bounds_count_from_the_end_and_clamp(
    start: int, end: int, step: int, expected: list[int]
) -> None:
    out = run_op("slice", ["a0", start, end], {"dim": 0, "step": step}, arange(5))
    assert out.tolist() == expected


def test_select_counts_a_negative_index_from_the_end() -> None:
    assert run_op("select", ["a0"], {"dim": 1, "index": -1}, arange(2, 3)).tolist() == [2, 5]
    with pytest.raises(IndexError):
        run_op("select", ["a0"], {"dim": 1, "index": 3}, arange(2, 3))


def test_expand_keeps_minus_one_dims_and_adds_leading_ones() -> None:
    out = run_op("expand", ["a0", 2, -1, 3], {}, arange(4, 1))
    assert out.shape == (2, 4, 3) and np.array_equal(out[1, :, 2], np.arange(4))


def test_full_int_ops_and_size() -> None:
    out = run_op("full", [2, 3], {"value": 7.0, "dtype": "int64"})
    assert out.dtype == np.int64 and out.tolist() == [[7, 7, 7]] * 2
    graph = Graph(
        [InputSpec("x", "float32", [None, 4])],
        {"tensor": "y"},
        [],
        [
            Node("size", ["x"], ["n"], {"dim": 0}),
            Node("int_sub", [0, "n"], ["m"]),
            Node("int_floordiv", ["m", 2], ["k"]),  # floor: -5 // 2 == -3
            Node("int_mul", ["k", -1], ["j"]),
            Node("full", ["j"], ["y"], {"value": 1.0, "dtype": "float32"}),
        ],
    )
    assert run_graph(graph, {}, [arange(5, 4)]).shape == (3,)


@pytest.mark.parametrize(
    ("ord", "expected"), [(0.0, 2.0), (float("inf"), 3.0), (float("-inf"), 0.0), (1.0, 5.0)]
)
def test_norm_orders(ord: float, expected: float) -> None:
    x = np.array([0.0, -3.0, 2.0], np.float32)
    assert run_op("norm", ["a0"], {"ord": ord, "dims": [], "keepdim": False}, x) == expected


def test_hardtanh_with_an_open_side_is_a_clamp() -> None:
    x = np.array([-2.0, 0.5, 9.0], np.float32)
    out = run_op("hardtanh", ["a0"], {"min_val": 0.0, "max_val": float("inf")}, x)
    assert out.tolist() == [0.0, 0.5, 9.0]


def test_binary_ops_refuse_mixed_dtypes() -> None:
    with pytest.raises(TypeError, match="share a dtype"):
        run_op("add", ["a0", "a1"], {}, arange(2), np.arange(2))
    with pytest.raises(TypeError, match="share a dtype"):
        run_op("div", ["a0", "a1"], {}, np.arange(2), np.arange(2))


def test_a_null_state_is_zeros() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    weights = {f"w{i}": w.detach().numpy() for i, w in enumerate(lstm._flat_weights)}
    x = arange(5, 2, 3) / 30
    zeros = np.zeros((4, 2, 4), np.float32)
    attrs = {
        "mode": "lstm",
        "num_layers": 2,
        "bidirectional": True,
        "batch_first": False,
        "has_biases": True,
    }

    def run(states: list[Any], *extra: np.ndarray) -> Any:
        inputs = [InputSpec("x", "float32", [5, 2, 3])]
        inputs += [InputSpec(f"s{i}", "float32", [4, 2, 4]) for i in range(len(extra))]
        node = Node("rnn", ["x", *states, *weights], ["out", "h", "c"], attrs)
        graph = Graph(
            inputs, {"tuple": [{"tensor": n} for n in ("out", "h", "c")]}, list(weights), [node]
        )
        return run_graph(graph, weights, [x, *extra])

    implicit = run([None, None])
    explicit = run(["s0", "s1"], zeros, zeros)
    with torch.no_grad():
        expected = lstm(torch.from_numpy(x))
    for got, same, want in zip(implicit, explicit, [expected[0], *expected[1]], strict=True):
        assert np.array_equal(got, same)
        assert np.allclose(got, want.numpy(), atol=1e-6)


def test_input_specs_are_enforced() -> None:
    graph = Graph(
        [InputSpec("x", "float32", [None, 3], [(0, 2, 4)])],
        {"tensor": "y"},
        [],
        [Node("relu", ["x"], ["y"])],
    )
    assert run_graph(graph, {}, [arange(2, 3)]).shape == (2, 3)
    for bad in (arange(5, 3), arange(2, 4), np.zeros((2, 3), np.int64)):
        with pytest.raises(ValueError, match="input x"):
            run_graph(graph, {}, [bad])
