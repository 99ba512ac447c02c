"""pyrnn's model graph: the form every converted model takes (from PyTorch today), the JSON stored
in a model file's header, and what the C++ core plans and runs.

A graph is a list of nodes in execution order over named values. A value is a tensor (float32 or
int64) or an int (a size computed from input shapes, so that dimensions the model does not fix
stay free). Graph inputs are tensors whose dims are ints or ``None`` (free); constants are the
model's weights and buffers under their torch ``state_dict`` names (plus ``_constN`` for anonymous
tensor constants); every other value is produced by exactly one node before it is used.

JSON form (``Graph.to_json``)::

    {"inputs":  [{"name": "x", "dtype": "float32", "shape": [null, null, 40],
                  "ranges": [[1, 5, null]]}],
     "outputs": {"tuple": [{"tensor": "v7"}, {"tensor": "h_n"}]},
     "constants": ["lstm.weight_ih_l0", ...],
     "nodes": [{"op": "linear", "inputs": ["x", "fc.weight", "fc.bias"], "outputs": ["v1"],
                "attrs": {}, "source": "fc (model.py:12)"}, ...]}

A quantised model (``pyrnn.quantize``) adds ``"weight_dtype"`` ('fp16', 'bf16' or 'int8') and
``"quantized"``: the constants stored in that type, each a weight matrix of a ``linear``,
``conv1d``, ``rnn`` or ``rnn_cell`` op and used by nothing else (the core refuses a narrow
constant anywhere else). An int8 constant ``name`` has its float32 scales, one per row (dim 0),
in the tensor ``name + "_scale"``. Both keys are absent in an fp32 graph.

An input's optional ``ranges`` bound its free dims, ``[dim, min, max]`` with ``max`` null for
unbounded: the captured program is valid only for those sizes (a convolution needs at least its
kernel's extent; code that branches on a size was traced down one branch). A free dim without a
range takes any size.

A node input is a value name, ``null`` for an absent optional input, or an int literal where the
op takes an int. The output structure mirrors what the torch module returned: ``{"tensor": name}``,
``{"tuple": [...]}``, ``{"list": [...]}``, ``{"dict": [[key, ...], ...]}`` (str keys) or
``{"none": null}``.

Ops and their operands (``?`` optional, ``*`` any number; attrs after the colon):

========================  ====================================================================
``rnn``                   x, h0?, c0?, *weights: mode ('rnn_tanh', 'rnn_relu', 'lstm', 'gru'),
                          num_layers, bidirectional, batch_first, has_biases -> out, h_n[, c_n].
                          Weights in torch's order per (layer, direction): w_ih, w_hh,
                          [b_ih, b_hh], [w_hr] (or [peephole]); x is (T, N, I), or (N, T, I)
                          with batch_first. Optional attrs, ONNX's cell variants (any of them
                          makes the cell ONNX's, which equals torch's at the defaults):
                          activations ('f,g,h' lowercase ONNX names; one for RNN, two for GRU,
                          three for LSTM), activation_alpha, activation_beta (one per
                          function), clip (> 0: gate pre-activations clamped), input_forget,
                          linear_before_reset (GRU; false resets before the recurrent product),
                          peepholes (LSTM; a (3H) weight i, f, o per layer and direction).
``rnn_cell``              x, h?, c?, w_ih, w_hh, b_ih?, b_hh?: mode -> h'[, c'] (x is (N, I)).
``linear``                x, weight, bias? -> (..., out_features).
``conv1d``                x, weight, bias?: stride, padding ([left, right]), dilation, groups;
                          x is (N, C, L) or (C, L).
``max_pool1d``            x: kernel_size, stride, padding, dilation, ceil_mode.
``avg_pool1d``            x: kernel_size, stride, padding, ceil_mode, count_include_pad.
``embedding``             weight, indices (int64) -> indices.shape + (embedding_dim,).
``layer_norm``            x, weight?, bias?: normalized_rank (trailing dims), eps.
``batch_norm``            x, weight?, bias?, running_mean, running_var: eps (channels = axis 1).
unary activations         x: ``relu``, ``sigmoid``, ``tanh``, ``silu``, ``gelu`` (approximate:
                          'none' | 'tanh'), ``leaky_relu`` (negative_slope), ``elu`` (alpha,
                          scale, input_scale), ``hardtanh`` (min_val, max_val), ``softplus``
                          (beta, threshold), ``neg``, ``exp``, ``log``, ``sqrt``, ``rsqrt``,
                          ``abs``.
``softmax``, ``log_softmax``  x: dim.
``add`` ``sub`` ``mul`` ``div``  a, b: numpy broadcasting; scalars are 0-d constants.
``sum`` ``mean`` ``amax``  x: dims (empty: all), keepdim.
``norm``                  x: ord (a float; inf allowed as 'inf'), dims, keepdim.
``reshape``               x, *dims (ints or int values; one may be -1).
``flatten``               x: start_dim, end_dim.
``permute``               x: dims.
``squeeze``               x: dims (empty: every dim of extent 1).
``unsqueeze``             x: dim.
``select``                x: dim, index.
``slice``                 x, start, end: dim, step (start/end are ints or int values, clamped).
``flip``                  x: dim (reverses that axis).
``cat`` ``stack``         *xs: dim.
``expand``                x, *dims (ints or int values; -1 keeps that dim): torch's expand, x's
                          dims aligned to the right, new leading dims allowed.
``identity``              x (contiguous, clone, detach, dropout at inference, alias).
``full``                  *dims: value, dtype.
``size``                  x: dim -> int.
``int_add`` ``int_sub`` ``int_mul`` ``int_floordiv``  a, b (ints) -> int.
========================  ====================================================================

Semantics are torch's, operand for operand; the details a core must get right:

- Operands are positional: an absent optional operand is ``null``, never dropped. ``rnn`` always
  has three leading operands (x, h0, c0; c0 null unless lstm); ``rnn_cell`` always seven; linear
  and conv1d always carry the bias slot. A null h0, c0, h or c means zeros.
- ``rnn``: per (layer, direction) 2 weights, +2 biases with has_biases, +1 ``w_hr`` for an LSTM
  with projections (then h0/h_n are (L*D, N, P) and c0/c_n (L*D, N, H)). h0 is (L*D, N, H_out).
- Axes (dim, dims, start_dim, end_dim) count from the end when negative (for unsqueeze and
  stack, from the end of the output); capture writes them non-negative.
- ``select`` index and ``slice`` start/end count from the end when negative, at run time (the
  extent may be free); slice bounds are then clamped to [0, extent], ``2**63 - 1`` (or more)
  means the end; step >= 1. A select index outside the extent is an error.
- ``squeeze`` removes the listed dims whose extent is 1 at run time and keeps the others, as
  torch does; with no dims it removes every dim of extent 1.
- Binary ops take operands of one dtype (float32, or int64 for add, sub and mul); a scalar
  operand is a 0-d constant of that dtype.
- ``hardtanh`` min_val/max_val may be -inf/inf: clamp, clamp_min and clamp_max are hardtanh.
  ``elu`` is scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1)) (selu and celu are
  elus); ``softplus`` is x where beta * x > threshold, else log1p(exp(beta * x)) / beta.
- ``layer_norm``/``batch_norm``: a null weight is ones, a null bias zeros; batch_norm uses the
  running statistics (inference), channels on axis 1 of (N, C) or (N, C, L).
- ``norm``: ord p is (sum |x|^p)^(1/p); inf is max |x|, -inf min |x|, 0 the count of nonzeros.
- ``max_pool1d`` pads with -inf; pools and conv1d follow torch's output-length formulas,
  ceil_mode included. ``embedding`` refuses an index outside [0, num_embeddings).
- Int values are int64; ``int_floordiv`` rounds toward -inf. ``full`` dtype is float32 or int64.

Everything here is plain data: loading a graph imports neither torch nor onnx, and
``Graph.from_json`` refuses malformed input (more than ``MAX_NODES`` nodes, inputs or constants
included) with ``GraphError`` naming the problem; the C++ core re-checks every node, edge and
shape when it builds and plans, and refuses to plan what would exceed physical memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ._weights import NARROW_DTYPES, SCALE_SUFFIX

__all__ = ["OPS", "ConversionError", "Graph", "GraphError", "InputSpec", "Node", "Structure"]


class GraphError(ValueError):
    """A graph description that is malformed: unknown op, bad operand, dangling or repeated
    value names, bad attributes."""


class ConversionError(ValueError):
    """A model that cannot be converted as it stands: an operation, a control flow, a mode or a
    dtype the graph cannot express. The message names the operation, the module path and the
    source line where they are known, and what to change."""


# op -> (minimum, maximum) operand count (None: unbounded), attribute names and their types.
# The C++ core holds the authoritative rules; this table lets Python refuse a bad file early
# and keeps the op list in one place on the Python side.
_INT, _FLOAT, _BOOL, _STR, _INTS, _FLOATS = "int", "float", "bool", "str", "ints", "floats"
_UNARY = {
    "relu": {},
    "sigmoid": {},
    "tanh": {},
    "silu": {},
    "neg": {},
    "exp": {},
    "log": {},
    "sqrt": {},
    "rsqrt": {},
    "abs": {},
    "gelu": {"approximate": _STR},
    "leaky_relu": {"negative_slope": _FLOAT},
    "elu": {"alpha": _FLOAT, "scale": _FLOAT, "input_scale": _FLOAT},
    "hardtanh": {"min_val": _FLOAT, "max_val": _FLOAT},
    "softplus": {"beta": _FLOAT, "threshold": _FLOAT},
}
OPS: dict[str, tuple[int, int | None, dict[str, str]]] = {
    "rnn": (
        2,
        None,
        {
            "mode": _STR,
            "num_layers": _INT,
            "bidirectional": _BOOL,
            "batch_first": _BOOL,
            "has_biases": _BOOL,
        },
    ),
    "rnn_cell": (5, 7, {"mode": _STR}),
    "linear": (2, 3, {}),
    "conv1d": (2, 3, {"stride": _INT, "padding": _INTS, "dilation": _INT, "groups": _INT}),
    "max_pool1d": (
        1,
        1,
        {
            "kernel_size": _INT,
            "stride": _INT,
            "padding": _INT,
            "dilation": _INT,
            "ceil_mode": _BOOL,
        },
    ),
    "avg_pool1d": (
        1,
        1,
        {
            "kernel_size": _INT,
            "stride": _INT,
            "padding": _INT,
            "ceil_mode": _BOOL,
            "count_include_pad": _BOOL,
        },
    ),
    "embedding": (2, 2, {}),
    "layer_norm": (1, 3, {"normalized_rank": _INT, "eps": _FLOAT}),
    "batch_norm": (5, 5, {"eps": _FLOAT}),
    **{name: (1, 1, attrs) for name, attrs in _UNARY.items()},
    "softmax": (1, 1, {"dim": _INT}),
    "log_softmax": (1, 1, {"dim": _INT}),
    **{name: (2, 2, {}) for name in ("add", "sub", "mul", "div")},
    **{name: (1, 1, {"dims": _INTS, "keepdim": _BOOL}) for name in ("sum", "mean", "amax")},
    "norm": (1, 1, {"ord": _FLOAT, "dims": _INTS, "keepdim": _BOOL}),
    "reshape": (1, None, {}),
    "flatten": (1, 1, {"start_dim": _INT, "end_dim": _INT}),
    "permute": (1, 1, {"dims": _INTS}),
    "squeeze": (1, 1, {"dims": _INTS}),
    "unsqueeze": (1, 1, {"dim": _INT}),
    "select": (1, 1, {"dim": _INT, "index": _INT}),
    "slice": (3, 3, {"dim": _INT, "step": _INT}),
    "flip": (1, 1, {"dim": _INT}),
    "cat": (1, None, {"dim": _INT}),
    "stack": (1, None, {"dim": _INT}),
    "expand": (1, None, {}),
    "identity": (1, 1, {}),
    "full": (0, None, {"value": _FLOAT, "dtype": _STR}),
    "size": (1, 1, {"dim": _INT}),
    **{name: (2, 2, {}) for name in ("int_add", "int_sub", "int_mul", "int_floordiv")},
}
# Attributes an op may leave out (the others are required): the rnn op's ONNX cell variants
# and variable lengths.
OPTIONAL_ATTRS: dict[str, dict[str, str]] = {
    "rnn": {
        "activations": _STR,
        "activation_alpha": _FLOATS,
        "activation_beta": _FLOATS,
        "clip": _FLOAT,
        "input_forget": _BOOL,
        "linear_before_reset": _BOOL,
        "peepholes": _BOOL,
        # ONNX's sequence_lens: each row's own number of steps (outputs past it are zero)
        "lengths": _INTS,
        # each row read from its own last step (ONNX's direction="reverse" with lengths)
        "reverse": _BOOL,
    }
}
DTYPES = ("float32", "int64")
# Values that a JSON file may carry for a float attribute: finite numbers, or these words.
_FLOAT_WORDS = {"inf": math.inf, "-inf": -math.inf}
_MAX_RANK = 8
_MAX_NAME = 1024
# Far above any converted model (hundreds of nodes); bounds what a file can make the core build.
MAX_NODES = 100_000

Operand = str | int | None
Structure = Any  # nested {"tensor": name} / {"tuple": [...]} / ... (see the module docstring)


@dataclass
class InputSpec:
    """One graph input: its name, dtype and dims (None where the model leaves a dim free), and
    the sizes a free dim is bounded to, (dim, min, max or None), where the model bounds it."""

    name: str
    dtype: str
    shape: list[int | None]
    ranges: list[tuple[int, int, int | None]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.ranges:
            data["ranges"] = [list(item) for item in self.ranges]
        return data


@dataclass
class Node:
    op: str
    inputs: list[Operand]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        attrs = {
            key: ("inf" if value == math.inf else "-inf" if value == -math.inf else value)
            if isinstance(value, float)
            else value
            for key, value in self.attrs.items()
        }
        return {
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": attrs,
            "source": self.source,
        }


@dataclass
class Graph:
    inputs: list[InputSpec]
    outputs: Structure
    constants: list[str]
    nodes: list[Node]
    # A quantised model (pyrnn.quantize): the constants stored as weight_dtype ('fp16', 'bf16'
    # or 'int8'); every other constant is float32 or int64.
    weight_dtype: str = "fp32"
    quantized: list[str] = field(default_factory=list)

    # -- JSON ----------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = {
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": self.outputs,
            "constants": list(self.constants),
            "nodes": [node.to_json() for node in self.nodes],
        }
        if self.weight_dtype != "fp32":  # absent means fp32: fp32 graphs are as they were
            data["weight_dtype"] = self.weight_dtype
            data["quantized"] = list(self.quantized)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Graph:
        """A graph from its JSON form, every field checked (GraphError otherwise)."""
        if not isinstance(data, dict):
            raise GraphError(f"graph: expected a JSON object, got {type(data).__name__}")
        fields = {"inputs", "outputs", "constants", "nodes"}
        if "weight_dtype" in data or "quantized" in data:
            fields |= {"weight_dtype", "quantized"}  # both or neither
        _only_fields(data, fields, "graph")
        for key in ("inputs", "constants", "nodes"):
            count = len(_list(data, key))
            if count > MAX_NODES:
                raise GraphError(f"graph: {count} {key} exceed the limit of {MAX_NODES}")
        inputs = [_input_from_json(item, i) for i, item in enumerate(_list(data, "inputs"))]
        constants = [
            _name(item, f"constants[{i}]") for i, item in enumerate(_list(data, "constants"))
        ]
        nodes = [_node_from_json(item, i) for i, item in enumerate(_list(data, "nodes"))]
        weight_dtype, quantized = "fp32", []
        if "weight_dtype" in data:
            weight_dtype = data["weight_dtype"]
            if weight_dtype not in NARROW_DTYPES:
                raise GraphError(
                    f"graph: 'weight_dtype' must be one of {NARROW_DTYPES} (absent for fp32), "
                    f"got {weight_dtype!r:.40}"
                )
            quantized = [
                _name(item, f"quantized[{i}]") for i, item in enumerate(_list(data, "quantized"))
            ]
        graph = cls(inputs, data["outputs"], constants, nodes, weight_dtype, quantized)
        graph.validate()
        return graph

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Names are unique, every operand is defined before use, outputs exist. Shapes are the
        core's to check (they depend on the input shapes)."""
        defined: dict[str, str] = {}

        def define(name: str, what: str) -> None:
            if name in defined:
                raise GraphError(f"value {name!r} is defined twice ({defined[name]} and {what})")
            defined[name] = what

        for spec in self.inputs:
            define(spec.name, "an input")
        for name in self.constants:
            define(name, "a constant")
        self._validate_quantized(set(self.constants))
        for index, node in enumerate(self.nodes):
            for position, operand in enumerate(node.inputs):
                if isinstance(operand, str) and operand not in defined:
                    raise GraphError(
                        f"node {index} ({node.op}): input {position} {operand!r} is not defined "
                        "before this node (dangling or cyclic edge)"
                    )
            for name in node.outputs:
                define(name, f"node {index} ({node.op})")
        for name in structure_leaves(self.outputs):
            if name not in defined:
                raise GraphError(f"outputs: {name!r} is not a value of the graph")

    def _validate_quantized(self, constants: set[str]) -> None:
        if self.weight_dtype == "fp32":
            if self.quantized:
                raise GraphError("quantized: lists constants, but weight_dtype is fp32")
            return
        if self.weight_dtype not in NARROW_DTYPES:
            raise GraphError(
                f"weight_dtype: expected one of {NARROW_DTYPES}, got {self.weight_dtype!r:.40}"
            )
        seen: set[str] = set()
        for name in self.quantized:
            if name not in constants:
                raise GraphError(f"quantized: {name!r:.80} is not a constant of the graph")
            if name in seen:
                raise GraphError(f"quantized: {name!r:.80} is listed twice")
            seen.add(name)
            if self.weight_dtype == "int8" and name + SCALE_SUFFIX in constants:
                raise GraphError(
                    f"quantized: the scales of int8 {name!r:.80} would be named "
                    f"{name + SCALE_SUFFIX!r:.80}, which is a constant of the graph"
                )


def structure_leaves(structure: Structure) -> list[str]:
    """The tensor names of an output structure, depth first; GraphError if malformed."""
    leaves: list[str] = []

    def walk(item: Any, depth: int) -> None:
        if depth > 32:
            raise GraphError("outputs: nested more than 32 levels deep")
        if not isinstance(item, dict) or len(item) != 1:
            raise GraphError(f"outputs: expected a one-key object, got {item!r:.80}")
        ((kind, value),) = item.items()
        if kind == "tensor":
            leaves.append(_name(value, "outputs"))
        elif kind == "none":
            if value is not None:
                raise GraphError("outputs: 'none' takes null")
        elif kind in ("tuple", "list"):
            if not isinstance(value, list):
                raise GraphError(f"outputs: {kind!r} takes a list")
            for part in value:
                walk(part, depth + 1)
        elif kind == "dict":
            if not isinstance(value, list):
                raise GraphError("outputs: 'dict' takes a list of [key, value] pairs")
            keys = set()
            for pair in value:
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise GraphError(f"outputs: dict entry {pair!r:.80} is not [str, value]")
                if pair[0] in keys:
                    raise GraphError(f"outputs: dict key {pair[0]!r} is repeated")
                keys.add(pair[0])
                walk(pair[1], depth + 1)
        else:
            raise GraphError(f"outputs: unknown structure kind {kind!r:.40}")

    walk(structure, 0)
    return leaves


# -- JSON field checks ---------------------------------------------------------------------------
def _only_fields(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    missing = sorted(allowed - set(data))
    if unknown or missing:
        raise GraphError(f"{where}: missing fields {missing}, unknown fields {unknown}")


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data[key]
    if not isinstance(value, list):
        raise GraphError(f"graph: {key!r} must be a list, got {type(value).__name__}")
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise GraphError(
            f"{where}: expected a value name (1..{_MAX_NAME} chars), got {value!r:.80}"
        )
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _input_from_json(item: Any, index: int) -> InputSpec:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise GraphError(f"{where}: expected an object")
    _only_fields(item, {"name", "dtype", "shape"} | ({"ranges"} & set(item)), where)
    if item["dtype"] not in DTYPES:
        raise GraphError(f"{where}: dtype must be one of {DTYPES}, got {item['dtype']!r:.40}")
    shape = item["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_RANK
        or not all(d is None or (_is_int(d) and 0 <= d < 2**31) for d in shape)
    ):
        raise GraphError(
            f"{where}: shape must be a list of at most {_MAX_RANK} dims, each null or an int "
            f"in [0, 2**31), got {shape!r:.80}"
        )
    return InputSpec(
        _name(item["name"], where), item["dtype"], list(shape), _ranges(item, shape, where)
    )


def _ranges(
    item: dict[str, Any], shape: list[Any], where: str
) -> list[tuple[int, int, int | None]]:
    value = item.get("ranges", [])
    if not isinstance(value, list) or len(value) > len(shape):
        raise GraphError(f"{where}: ranges must be a list of at most one [dim, min, max] per dim")
    ranges: list[tuple[int, int, int | None]] = []
    for entry in value:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and all(_is_int(v) and 0 <= v < 2**31 for v in entry[:2])
            and (entry[2] is None or (_is_int(entry[2]) and entry[1] <= entry[2] < 2**31))
        ):
            raise GraphError(
                f"{where}: a range is [dim, min, max] with 0 <= min <= max < 2**31 (max null for "
                f"unbounded), got {entry!r:.80}"
            )
        dim, low, high = entry
        if dim >= len(shape) or shape[dim] is not None or any(r[0] == dim for r in ranges):
            raise GraphError(f"{where}: range for dim {dim}: not a free dim, or given twice")
        ranges.append((dim, low, high))
    return ranges


def _node_from_json(item: Any, index: int) -> Node:
    where = f"nodes[{index}]"
    if not isinstance(item, dict):
        raise GraphError(f"{where}: expected an object")
    _only_fields(item, {"op", "inputs", "outputs", "attrs", "source"}, where)
    op = item["op"]
    if not isinstance(op, str) or op not in OPS:
        raise GraphError(f"{where}: unknown op {op!r:.40}")
    where = f"{where} ({op})"
    low, high, attr_types = OPS[op]
    inputs = item["inputs"]
    if not isinstance(inputs, list) or not all(
        x is None or _is_int(x) or isinstance(x, str) for x in inputs
    ):
        raise GraphError(f"{where}: inputs must be a list of names, ints or null")
    if len(inputs) < low or (high is not None and len(inputs) > high):
        expected = f"{low}..{high}" if high is not None else f"at least {low}"
        raise GraphError(f"{where}: expected {expected} inputs, got {len(inputs)}")
    for x in inputs:
        if isinstance(x, str):
            _name(x, where)
        elif _is_int(x) and not -(2**63) <= x < 2**63:
            raise GraphError(f"{where}: int input {x} does not fit in 64 bits")
    outputs = item["outputs"]
    if not isinstance(outputs, list) or not 1 <= len(outputs) <= 3:
        raise GraphError(f"{where}: outputs must be a list of 1 to 3 names")
    outputs = [_name(x, where) for x in outputs]
    attrs = item["attrs"]
    if not isinstance(attrs, dict):
        raise GraphError(f"{where}: attrs must be an object")
    optional = OPTIONAL_ATTRS.get(op, {})
    _only_fields(attrs, set(attr_types) | (set(optional) & set(attrs)), f"{where} attrs")
    kinds = {**attr_types, **optional}
    checked = {
        key: _attr(value, kinds[key], f"{where}: attr {key!r}") for key, value in attrs.items()
    }
    source = item["source"]
    if not isinstance(source, str) or len(source) > 4096:
        raise GraphError(f"{where}: source must be a string of at most 4096 chars")
    return Node(op, list(inputs), outputs, checked, source)


def _attr(value: Any, kind: str, where: str) -> Any:
    if kind == _INT:
        if not _is_int(value) or not -(2**62) <= value <= 2**62:
            raise GraphError(f"{where}: expected an int, got {value!r:.40}")
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise GraphError(f"{where}: expected true or false, got {value!r:.40}")
        return value
    if kind == _STR:
        if not isinstance(value, str) or len(value) > 64:
            raise GraphError(f"{where}: expected a short string, got {value!r:.40}")
        return value
    if kind == _FLOAT:
        if isinstance(value, str) and value in _FLOAT_WORDS:
            return _FLOAT_WORDS[value]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise GraphError(f"{where}: expected a finite number or 'inf', got {value!r:.40}")
        return float(value)
    if kind == _FLOATS:
        if not isinstance(value, list) or len(value) > _MAX_RANK:
            raise GraphError(f"{where}: expected a list of at most {_MAX_RANK} numbers")
        return [_attr(v, _FLOAT, where) for v in value]
    if kind == _INTS:
        if (
            not isinstance(value, list)
            or len(value) > _MAX_RANK
            or not all(_is_int(v) and -(2**31) < v < 2**31 for v in value)
        ):
            raise GraphError(
                f"{where}: expected a list of at most {_MAX_RANK} ints, got {value!r:.80}"
            )
        return list(value)
    raise AssertionError(kind)
