"""A reference interpreter of pyrnn's model graph (pyrnn/graph.py), one torch call per op.

It states the semantics of every op executably: the oracle for the C++ graph executor's op tests
and for the capture tests, which run a captured graph on inputs of other sizes than the example it
was captured from and compare with the torch module. Plain and slow on purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pyrnn.graph import Graph, Structure

_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
_DTYPES = {"float32": torch.float32, "int64": torch.int64}
_OPEN_END = 2**63 - 1

Value = Any  # torch.Tensor or int
Kernel = Callable[[list[Value], dict[str, Any]], Value]


def run_graph(graph: Graph, constants: dict[str, np.ndarray], inputs: list[np.ndarray]) -> Any:
    """The graph's outputs for `inputs`, in its output structure, as numpy arrays."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"inputs: expected {len(graph.inputs)} arrays, got {len(inputs)}")
    env: dict[str, Value] = {}
    for spec, array in zip(graph.inputs, inputs, strict=True):
        _check_input(spec.name, spec.dtype, spec.shape, spec.ranges, array)
        env[spec.name] = torch.from_numpy(np.array(array, copy=True))
    for name in graph.constants:
        env[name] = torch.from_numpy(np.array(constants[name], copy=True))
    for node in graph.nodes:
        operands = [env[x] if isinstance(x, str) else x for x in node.inputs]
        result = KERNELS[node.op](operands, node.attrs)
        results = result if isinstance(result, tuple) else (result,)
        if len(results) != len(node.outputs):
            raise AssertionError(f"{node.op}: {len(results)} results for {len(node.outputs)} names")
        env.update(zip(node.outputs, results, strict=True))
    return _structure(graph.outputs, env)


def _check_input(
    name: str,
    dtype: str,
    shape: list[int | None],
    ranges: list[tuple[int, int, int | None]],
    array: np.ndarray,
) -> None:
    if array.dtype != np.dtype(dtype) or array.ndim != len(shape):
        raise ValueError(
            f"input {name}: expected {dtype} of rank {len(shape)}, got {array.dtype} {array.shape}"
        )
    for dim, (want, got) in enumerate(zip(shape, array.shape, strict=True)):
        if want is not None and want != got:
            raise ValueError(f"input {name}: dim {dim} must be {want}, got {got}")
    for dim, low, high in ranges:
        if array.shape[dim] < low or (high is not None and array.shape[dim] > high):
            raise ValueError(
                f"input {name}: dim {dim} must be in [{low}, {high}], got {array.shape}"
            )


def _structure(structure: Structure, env: dict[str, Value]) -> Any:
    ((kind, value),) = structure.items()
    if kind == "tensor":
        tensor = env[value]
        if tensor.dtype not in (torch.float32, torch.int64):
            raise AssertionError(f"output {value} has dtype {tensor.dtype}")
        return tensor.detach().contiguous().numpy().copy()
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(_structure(part, env) for part in value)
    if kind == "list":
        return [_structure(part, env) for part in value]
    return {key: _structure(part, env) for key, part in value}


# -- recurrent ----------------------------------------------------------------------------------
def _rnn(x: Any, h0: Any, c0: Any, *weights: Any, **a: Any) -> Any:
    mode, layers = a["mode"], a["num_layers"]
    directions = 2 if a["bidirectional"] else 1
    weights = list(weights)
    per = len(weights) // (layers * directions)
    expected = 2 + 2 * a["has_biases"] + (mode == "lstm" and per == 3 + 2 * a["has_biases"])
    if x.dim() != 3 or per * layers * directions != len(weights) or per != expected:
        raise ValueError(f"rnn: x {tuple(x.shape)} with {len(weights)} weights does not fit {a}")
    batch = x.shape[0] if a["batch_first"] else x.shape[1]
    w_hh = weights[1]
    hidden, hidden_out = w_hh.shape[0] // _GATES[mode], w_hh.shape[1]
    if h0 is None:
        h0 = x.new_zeros(layers * directions, batch, hidden_out)
    flags = (a["has_biases"], layers, 0.0, False, a["bidirectional"], a["batch_first"])
    if mode == "lstm":
        if c0 is None:
            c0 = x.new_zeros(layers * directions, batch, hidden)
        return tuple(torch.lstm(x, [h0, c0], weights, *flags))
    run = {"gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}[mode]
    return tuple(run(x, h0, weights, *flags))


def _rnn_cell(x: Any, h: Any, c: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, mode: str) -> Any:
    hidden = w_hh.shape[0] // _GATES[mode]
    h = x.new_zeros(x.shape[0], w_hh.shape[1]) if h is None else h
    if mode == "lstm":
        c = x.new_zeros(x.shape[0], hidden) if c is None else c
        return tuple(torch.lstm_cell(x, [h, c], w_ih, w_hh, b_ih, b_hh))
    run = {"gru": torch.gru_cell, "rnn_tanh": torch.rnn_tanh_cell, "rnn_relu": torch.rnn_relu_cell}
    return run[mode](x, h, w_ih, w_hh, b_ih, b_hh)


# -- shapes -------------------------------------------------------------------------------------
def _axis(dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise ValueError(f"axis {dim} out of range for rank {rank}")
    return dim % rank


def _squeeze(x: Any, dims: list[int]) -> Any:
    if not dims:
        return torch.squeeze(x)
    keep = [
        size
        for axis, size in enumerate(x.shape)
        if not (size == 1 and axis in {_axis(d, x.dim()) for d in dims})
    ]
    return x.reshape(keep)


def _slice(x: Any, start: int, end: int, dim: int, step: int) -> Any:
    if step < 1:
        raise ValueError(f"slice: step must be >= 1, got {step}")
    index = [slice(None)] * x.dim()
    index[_axis(dim, x.dim())] = slice(start, None if end >= _OPEN_END else end, step)
    return x[tuple(index)]


def _select(x: Any, dim: int, index: int) -> Any:
    axis = _axis(dim, x.dim())
    if not -x.shape[axis] <= index < x.shape[axis]:
        raise IndexError(f"select: index {index} out of range for extent {x.shape[axis]}")
    return x.select(axis, index)


def _reduce(x: Any, dims: list[int]) -> list[int]:
    return [_axis(d, x.dim()) for d in dims] if dims else list(range(x.dim()))


# -- arithmetic ---------------------------------------------------------------------------------
def _binary(fn: Callable[[Any, Any], Any], name: str) -> Kernel:
    def kernel(v: list[Value], a: dict[str, Any]) -> Value:
        x, y = v
        allowed = (torch.float32,) if name == "div" else (torch.float32, torch.int64)
        if x.dtype != y.dtype or x.dtype not in allowed:
            raise TypeError(
                f"{name}: operands must share a dtype in {allowed}, got {x.dtype}, {y.dtype}"
            )
        return fn(x, y)

    return kernel


def _norm(x: Any, ord: float, dims: list[int], keepdim: bool) -> Any:
    return torch.linalg.vector_norm(x, ord, dim=_reduce(x, dims), keepdim=keepdim)


def _float(x: Any) -> Any:
    if x.dtype != torch.float32:
        raise TypeError(f"expected a float32 operand, got {x.dtype}")
    return x


def _int64(x: Any) -> Any:
    if x.dtype != torch.int64:
        raise TypeError(f"expected an int64 operand, got {x.dtype}")
    return x


def _unary(fn: Callable[..., Any]) -> Kernel:
    return lambda v, a: fn(_float(v[0]), **a)


KERNELS: dict[str, Kernel] = {
    "rnn": lambda v, a: _rnn(*v, **a),
    "rnn_cell": lambda v, a: _rnn_cell(*v, **a),
    "linear": lambda v, a: F.linear(_float(v[0]), v[1], v[2]),
    "conv1d": lambda v, a: F.conv1d(
        F.pad(_float(v[0]), a["padding"]), v[1], v[2], a["stride"], 0, a["dilation"], a["groups"]
    ),
    "max_pool1d": _unary(
        lambda x, kernel_size, stride, padding, dilation, ceil_mode: F.max_pool1d(
            x, kernel_size, stride, padding, dilation, ceil_mode
        )
    ),
    "avg_pool1d": _unary(
        lambda x, kernel_size, stride, padding, ceil_mode, count_include_pad: F.avg_pool1d(
            x, kernel_size, stride, padding, ceil_mode, count_include_pad
        )
    ),
    "embedding": lambda v, a: F.embedding(_int64(v[1]), _float(v[0])),
    "layer_norm": lambda v, a: F.layer_norm(
        _float(v[0]), v[0].shape[v[0].dim() - a["normalized_rank"] :], v[1], v[2], a["eps"]
    ),
    "batch_norm": lambda v, a: F.batch_norm(
        _float(v[0]), v[3], v[4], v[1], v[2], training=False, eps=a["eps"]
    ),
    "relu": _unary(torch.relu),
    "sigmoid": _unary(torch.sigmoid),
    "tanh": _unary(torch.tanh),
    "silu": _unary(F.silu),
    "neg": lambda v, a: torch.neg(v[0]),
    "exp": _unary(torch.exp),
    "log": _unary(torch.log),
    "sqrt": _unary(torch.sqrt),
    "rsqrt": _unary(torch.rsqrt),
    "abs": lambda v, a: torch.abs(v[0]),
    "gelu": _unary(lambda x, approximate: F.gelu(x, approximate=approximate)),
    "leaky_relu": _unary(F.leaky_relu),
    # scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1)), computed as torch does
    "elu": _unary(torch.ops.aten.elu),
    "hardtanh": _unary(lambda x, min_val, max_val: torch.clamp(x, min_val, max_val)),
    "softplus": _unary(F.softplus),
    "softmax": _unary(lambda x, dim: torch.softmax(x, dim)),
    "log_softmax": _unary(lambda x, dim: torch.log_softmax(x, dim)),
    "add": _binary(torch.add, "add"),
    "sub": _binary(torch.sub, "sub"),
    "mul": _binary(torch.mul, "mul"),
    "div": _binary(torch.div, "div"),
    "sum": lambda v, a: torch.sum(v[0], _reduce(v[0], a["dims"]), a["keepdim"]),
    "mean": lambda v, a: torch.mean(_float(v[0]), _reduce(v[0], a["dims"]), a["keepdim"]),
    "amax": lambda v, a: torch.amax(v[0], _reduce(v[0], a["dims"]), a["keepdim"]),
    "norm": _unary(_norm),
    "reshape": lambda v, a: v[0].reshape([int(d) for d in v[1:]]),
    "flatten": lambda v, a: torch.flatten(v[0], a["start_dim"], a["end_dim"]),
    "permute": lambda v, a: v[0].permute(a["dims"]),
    "squeeze": lambda v, a: _squeeze(v[0], a["dims"]),
    "unsqueeze": lambda v, a: torch.unsqueeze(v[0], a["dim"]),
    "select": lambda v, a: _select(v[0], **a),
    "slice": lambda v, a: _slice(*v, **a),
    "flip": lambda v, a: torch.flip(v[0], [a["dim"]]),
    "cat": lambda v, a: torch.cat(v, a["dim"]),
    "stack": lambda v, a: torch.stack(v, a["dim"]),
    "expand": lambda v, a: v[0].expand([int(d) for d in v[1:]]),
    "identity": lambda v, a: v[0].clone(),
    "full": lambda v, a: torch.full([int(d) for d in v], a["value"], dtype=_DTYPES[a["dtype"]]),
    "size": lambda v, a: int(v[0].shape[_axis(a["dim"], v[0].dim())]),
    "int_add": lambda v, a: int(v[0]) + int(v[1]),
    "int_sub": lambda v, a: int(v[0]) - int(v[1]),
    "int_mul": lambda v, a: int(v[0]) * int(v[1]),
    "int_floordiv": lambda v, a: int(v[0]) // int(v[1]),
}
