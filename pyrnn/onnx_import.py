"""Importing ONNX models: ``from_onnx`` translates an ONNX graph into a pyrnn model graph
(pyrnn/graph.py), which the C++ core then runs without onnx.

Each ONNX node becomes graph ops (a Gemm a ``linear``, an LSTM an ``rnn``, a Transpose a
``permute``), or is folded away: a node whose inputs are all known at import time (initializers,
constants, shapes the graph fixes) is evaluated once by onnx's reference evaluator, so exporters'
weight-reshaping subgraphs cost nothing at run time. Sizes computed from input shapes
(``Shape`` -> ``Gather`` -> ``Concat`` -> ``Reshape``) become the graph's int values, so
dimensions the ONNX graph leaves free stay free. Anything else raises ConversionError naming the
node, its op type and the reason. onnx is imported only inside ``from_onnx``.

ONNX recurrent nodes map onto the ``rnn`` op with PyTorch's weight layout (the gate orders are
converted in pyrnn/onnx_export.py, the one place that knows ONNX's layout); a node running
``reverse`` reads its sequence through ``flip``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .graph import ConversionError, Graph, InputSpec, Node
from .io import FormatError, _path_argument
from .model import Model
from .onnx_export import from_onnx_gates

if TYPE_CHECKING:
    import onnx

__all__ = ["from_onnx"]

# The oldest opset whose recurrent operators have today's inputs and attributes.
_MIN_OPSET = 7
# Largest tensor (elements) that folding may create: far above any weight reshaping, far below
# what a hostile ConstantOfShape or Expand could ask for.
_MAX_FOLD_ELEMENTS = 1 << 27
_OPEN_END = 2**63 - 1

_RECURRENT = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}
# ONNX's activation functions for recurrent nodes, lowercase: the alpha and beta each takes
# when the node gives none (None: the function takes none). The spec names defaults for some;
# for the others these are ONNX Runtime's (0).
_ACTIVATIONS: dict[str, tuple[float | None, float | None]] = {
    "sigmoid": (None, None),
    "tanh": (None, None),
    "relu": (None, None),
    "affine": (0.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (0.0, None),
    "scaledtanh": (0.0, 0.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
    "softsign": (None, None),
    "softplus": (None, None),
}


@dataclass
class _Tensor:
    """A float32 tensor computed at run time: its graph value name and its dims (None: free)."""

    name: str
    shape: list[int | None]


@dataclass
class _Dims:
    """An int64 tensor of sizes known once input shapes are (a Shape and what is computed from
    it): each element an int or the name of a graph int value. ``scalar``: 0-d."""

    items: list[int | str]
    scalar: bool = False


_Value = np.ndarray | _Tensor | _Dims


def from_onnx(model: Any) -> Model:
    """Converts an ONNX model (a file name or an ``onnx.ModelProto``) into a pyrnn.Model.

    The model takes the ONNX graph's inputs positionally, in the graph's order, as float32
    arrays; it returns the single output, or a tuple of the outputs in the graph's order.
    Dimensions the ONNX graph leaves free (named or unknown) stay free. Weights in external
    data files are read from beside the model file. Raises ConversionError naming the node and
    its op type for what pyrnn cannot compute, FormatError for a file that is not a valid ONNX
    model, and neither imports nor needs onnx once converted (``pyrnn.save`` then
    ``pyrnn.load`` runs it anywhere)."""
    import onnx  # deferred: only importing needs onnx

    proto = _load(onnx, model)
    graph, constants = _Importer(onnx, proto).run()
    return Model(graph, constants)


def _load(onnx: Any, model: Any) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model  # type: ignore[no-any-return]
    path = _path_argument(model)
    if not os.path.isfile(path):
        if os.path.isdir(path):
            raise IsADirectoryError(f"model: {path!r} is a directory, not an ONNX file")
        raise FileNotFoundError(f"model: no file {path!r}")
    try:
        return onnx.load(path, load_external_data=True)  # type: ignore[no-any-return]
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as error:
        raise FormatError(f"{path}: not a readable ONNX model ({error})") from None
    except Exception as error:  # protobuf's DecodeError and onnx's checker errors
        raise FormatError(f"{path}: not a readable ONNX model ({error})") from None


def _where(node: Any) -> str:
    name = node.name or (node.output[0] if node.output else "")
    return f"node {name!r:.80} ({node.op_type})"


class _NodeError(Exception):
    """A problem with one node, raised as ConversionError with the node's name and type."""


@dataclass
class _Importer:
    onnx: Any
    proto: Any
    env: dict[str, _Value] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)
    used_names: set[str] = field(default_factory=set)  # every name the ONNX graph uses
    names: set[str] = field(default_factory=set)  # names given to graph values so far
    counter: int = 0
    sizes: dict[tuple[str, int], str] = field(default_factory=dict)
    opset: int = 0
    source: str = ""

    # -- driver --------------------------------------------------------------------------------
    def run(self) -> tuple[Graph, dict[str, np.ndarray]]:
        graph = self.proto.graph
        self.opset = self._opset()
        for value in [*graph.input, *graph.output, *graph.initializer]:
            self.used_names.add(value.name)
        for node in graph.node:
            self.used_names.update(node.output)
        for tensor in graph.initializer:
            self.env[tensor.name] = self._initializer(tensor)
        if len(graph.sparse_initializer):
            raise ConversionError("graph: sparse initializers are not supported")
        for value in graph.input:
            if value.name in self.env:
                continue  # old IR versions list initializers among the inputs
            self._graph_input(value)
        for node in graph.node:
            self.source = f"{node.name or node.output[0] if node.output else ''} ({node.op_type})"
            try:
                self._node(node)
            except _NodeError as error:
                raise ConversionError(f"{_where(node)}: {error}") from None
        outputs = [self._graph_output(value.name) for value in graph.output]
        if not outputs:
            raise ConversionError("graph: it has no outputs")
        self._name_outputs(outputs, [value.name for value in graph.output])
        structure = outputs[0] if len(outputs) == 1 else {"tuple": outputs}
        result = Graph(self.inputs, structure, list(self.constants), self.nodes)
        return result, self.constants

    def _opset(self) -> int:
        versions = {entry.domain: entry.version for entry in self.proto.opset_import}
        version = versions.get("", versions.get("ai.onnx"))
        newest = self.onnx.defs.onnx_opset_version()
        if version is None:
            raise ConversionError("model: it imports no version of the standard ONNX opset")
        if not _MIN_OPSET <= version <= newest:
            raise ConversionError(
                f"model: opset {version} is outside the supported {_MIN_OPSET}..{newest} "
                "(convert it with onnx.version_converter first)"
            )
        return int(version)

    def _initializer(self, tensor: Any) -> np.ndarray:
        try:
            array = self.onnx.numpy_helper.to_array(tensor)
        except Exception as error:  # truncated raw data, unknown types, missing external files
            raise FormatError(
                f"initializer {tensor.name!r:.80}: its data cannot be read ({error})"
            ) from None
        return np.asarray(array)

    def _graph_input(self, value: Any) -> None:
        where = f"graph input {value.name!r:.80}"
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise ConversionError(f"{where}: expected a tensor, got {kind}")
        tensor = value.type.tensor_type
        if tensor.elem_type != self.onnx.TensorProto.FLOAT:
            dtype = self.onnx.TensorProto.DataType.Name(tensor.elem_type)
            raise ConversionError(
                f"{where}: expected float32 (pyrnn models compute in float32), got {dtype}"
            )
        if not tensor.HasField("shape"):
            raise ConversionError(f"{where}: its rank is not given; pyrnn needs each input's rank")
        shape: list[int | None] = [
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor.shape.dim
        ]
        if any(d is not None and d >= 2**31 for d in shape):
            raise ConversionError(f"{where}: dims {shape} exceed 2**31 - 1")
        name = self._claim(value.name)
        self.inputs.append(InputSpec(name, "float32", shape))
        self.env[value.name] = _Tensor(name, shape)

    def _graph_output(self, name: str) -> dict[str, str]:
        value = self._get(name, f"graph output {name!r:.80}")
        if isinstance(value, _Dims):
            value = np.asarray([_int_of(item) for item in value.items], np.int64)
        if isinstance(value, np.ndarray):
            value = self._const_tensor(value, "output")
        # Outputs keep their ONNX names; an input passed straight through gets a copy.
        graph_name = value.name
        if graph_name in {spec.name for spec in self.inputs} or graph_name in self.constants:
            graph_name = self._fresh(name)
            self._emit("identity", [value.name], {}, [graph_name])
        return {"tensor": graph_name}

    def _name_outputs(self, outputs: list[dict[str, str]], wanted: list[str]) -> None:
        """Gives each output the ONNX graph's name for it, where no other value has it."""
        produced = {name for node in self.nodes for name in node.outputs}
        renames: dict[str, str] = {}
        for output, name in zip(outputs, wanted, strict=True):
            current = output["tensor"]
            if (
                current in produced
                and current not in renames
                and name
                and len(name) <= 200
                and name not in self.names
            ):
                renames[current] = name
                self.names.add(name)
        for node in self.nodes:
            node.inputs = [renames.get(x, x) if isinstance(x, str) else x for x in node.inputs]
            node.outputs = [renames.get(x, x) for x in node.outputs]
        for output in outputs:
            output["tensor"] = renames.get(output["tensor"], output["tensor"])

    # -- names and emission --------------------------------------------------------------------
    def _claim(self, name: str) -> str:
        """An ONNX value name as a graph name (made valid and unique where it is not)."""
        if name and len(name) <= 200 and name not in self.names:
            self.names.add(name)
            return name
        return self._fresh(name or "v")

    def _fresh(self, hint: str) -> str:
        hint = (hint or "v")[:100]
        name = hint
        while name in self.names or name in self.used_names:
            self.counter += 1
            name = f"{hint}_{self.counter}"
        self.names.add(name)
        return name

    def _emit(
        self, op: str, inputs: list[Any], attrs: dict[str, Any], outputs: list[str]
    ) -> list[str]:
        self.nodes.append(Node(op, list(inputs), list(outputs), dict(attrs), self.source[:4096]))
        return outputs

    def _op(
        self, op: str, inputs: list[Any], attrs: dict[str, Any] | None = None, hint: str = "v"
    ) -> str:
        return self._emit(op, inputs, attrs or {}, [self._fresh(hint)])[0]

    def _const_tensor(self, array: np.ndarray, hint: str) -> _Tensor:
        """A float constant as a graph value."""
        if array.dtype.kind not in "fiub":
            raise _NodeError(f"a constant of dtype {array.dtype} cannot be computed with")
        name = self._fresh(hint)
        value = np.ascontiguousarray(array, dtype=np.float32)
        self.constants[name] = value
        return _Tensor(name, list(value.shape))

    def _tensor(self, value: _Value, what: str) -> _Tensor:
        if isinstance(value, _Tensor):
            return value
        if isinstance(value, _Dims):
            raise _NodeError(f"{what}: a tensor of sizes (int64) used as data; expected float32")
        if value.dtype.kind != "f":
            raise _NodeError(f"{what}: a {value.dtype} constant used as data; expected float32")
        return self._const_tensor(value, "const")

    def _size(self, tensor: _Tensor, dim: int) -> int | str:
        """Extent of one dim: an int when the graph fixes it, else a graph int value."""
        known = tensor.shape[dim]
        if known is not None:
            return known
        key = (tensor.name, dim)
        if key not in self.sizes:
            self.sizes[key] = self._op("size", [tensor.name], {"dim": dim}, "size")
        return self.sizes[key]

    def _get(self, name: str, where: str) -> _Value:
        if name not in self.env:
            raise ConversionError(f"{where}: {name!r:.80} is not defined before it is used")
        return self.env[name]

    # -- nodes ---------------------------------------------------------------------------------
    def _node(self, node: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise _NodeError(f"operators of domain {node.domain!r:.40} are not supported")
        values: list[_Value | None] = []
        for name in node.input:
            if name == "":
                values.append(None)
            elif name not in self.env:
                raise _NodeError(f"input {name!r:.80} is not defined before this node")
            else:
                values.append(self.env[name])
        attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
        present = [v for v in values if v is not None]
        if node.op_type in ("Constant",) or (
            present
            and all(isinstance(v, np.ndarray) for v in present)
            and node.op_type not in _RECURRENT
        ):
            results = self._fold(node, values)
        elif node.op_type in _RECURRENT:
            results = self._recurrent(node, values, attrs)
        else:
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None:
                raise _NodeError(
                    "this operator is not supported on values computed at run time (pyrnn "
                    "imports recurrent models: see 'Run an ONNX model' in the README)"
                )
            results = handler(values, attrs, node)
        if len(results) < len([o for o in node.output if o]):
            raise _NodeError("an output it declares is not computed")
        for name, value in zip(node.output, results, strict=False):
            if name:
                self.env[name] = value

    def _fold(self, node: Any, values: list[_Value | None]) -> list[_Value]:
        """Evaluates a node whose inputs are all known, with onnx's reference evaluator."""
        self._check_fold_size(node, values)
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        names = [f"in{i}" if v is not None else "" for i, v in enumerate(values)]
        graph_inputs = [
            helper.make_tensor_value_info(
                names[i], helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype), None
            )
            for i, v in enumerate(values)
            if v is not None
        ]
        outputs = [f"out{i}" for i in range(len(node.output))]
        copy = helper.make_node(node.op_type, names, outputs, domain=node.domain)
        copy.attribute.extend(node.attribute)
        graph = helper.make_graph(
            [copy],
            "fold",
            graph_inputs,
            [helper.make_tensor_value_info(o, 0, None) for o in outputs],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", self.opset)])
        model.ir_version = self.proto.ir_version or model.ir_version
        feeds = {names[i]: np.asarray(v) for i, v in enumerate(values) if v is not None}
        try:
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as error:
            raise _NodeError(f"evaluating it on its constant inputs failed: {error}") from None
        folded: list[_Value] = []
        for result in results:
            array = np.asarray(result)
            if array.dtype == object or array.size > _MAX_FOLD_ELEMENTS:
                raise _NodeError("its result is not a numeric tensor pyrnn can hold")
            folded.append(array)
        return folded

    def _check_fold_size(self, node: Any, values: list[_Value | None]) -> None:
        """Refuses folds whose result would be absurdly large, before evaluating them."""
        op = node.op_type
        shape: list[int] | None = None
        arrays = [np.asarray(v) if v is not None else None for v in values]
        if op == "ConstantOfShape" and arrays and arrays[0] is not None:
            shape = [int(d) for d in arrays[0].reshape(-1)]
        elif op == "Expand" and len(arrays) > 1 and arrays[1] is not None and arrays[0] is not None:
            target = [int(d) for d in arrays[1].reshape(-1)]
            shape = [*target, *arrays[0].shape]
        elif op == "Tile" and len(arrays) > 1 and arrays[0] is not None and arrays[1] is not None:
            shape = [
                int(a) * int(b)
                for a, b in zip(arrays[0].shape, arrays[1].reshape(-1), strict=False)
            ]
        elif op == "Range" and len(arrays) == 3 and all(a is not None for a in arrays):
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in arrays)
            shape = [0 if delta == 0 else int(max(0, math.ceil((limit - start) / delta)))]
        if shape is not None:
            total = 1
            for d in shape:
                total *= max(d, 0)
            if total > _MAX_FOLD_ELEMENTS:
                raise _NodeError(f"its result of shape {shape} is too large to hold")

    # -- element-wise --------------------------------------------------------------------------
    def _unary(self, op: str, attrs: dict[str, Any], values: list[Any]) -> list[_Value]:
        x = self._tensor(values[0], "input")
        return [_Tensor(self._op(op, [x.name], attrs), list(x.shape))]

    def _binary(self, op: str, values: list[Any]) -> list[_Value]:
        a, b = values[0], values[1]
        if isinstance(a, _Dims) or isinstance(b, _Dims):
            return [self._dims_arith(op, a, b)]
        a = self._scalar_or_tensor(a, "A")
        b = self._scalar_or_tensor(b, "B")
        shape = _broadcast(a.shape, b.shape)
        return [_Tensor(self._op(op, [a.name, b.name]), shape)]

    def _scalar_or_tensor(self, value: _Value, what: str) -> _Tensor:
        if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
            return self._const_tensor(value.astype(np.float32), "const")
        return self._tensor(value, what)

    def _dims_arith(self, op: str, a: Any, b: Any) -> _Dims:
        left, right = _dims_of(a), _dims_of(b)
        if left is None or right is None:
            raise _NodeError("arithmetic mixing sizes (int64) with float data")
        count = max(len(left.items), len(right.items))
        if len(left.items) not in (1, count) or len(right.items) not in (1, count):
            raise _NodeError("sizes of different lengths")
        int_op = {"add": "int_add", "sub": "int_sub", "mul": "int_mul", "div": "int_floordiv"}[op]
        items: list[int | str] = []
        for i in range(count):
            x = left.items[0 if len(left.items) == 1 else i]
            y = right.items[0 if len(right.items) == 1 else i]
            if isinstance(x, int) and isinstance(y, int):
                if op == "div":
                    if y == 0:
                        raise _NodeError("division of sizes by zero")
                    items.append(int(x / y))  # ONNX integer division truncates
                else:
                    items.append({"add": x + y, "sub": x - y, "mul": x * y}[op])
            else:
                # Sizes are never negative, so floor division is ONNX's truncation here.
                items.append(self._op(int_op, [x, y], {}, "size"))
        return _Dims(items, left.scalar and right.scalar)

    def _op_Add(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._binary("add", values)

    def _op_Sub(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._binary("sub", values)

    def _op_Mul(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._binary("mul", values)

    def _op_Div(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._binary("div", values)

    def _op_Relu(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("relu", {}, values)

    def _op_Sigmoid(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("sigmoid", {}, values)

    def _op_Tanh(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("tanh", {}, values)

    def _op_Exp(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("exp", {}, values)

    def _op_Log(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("log", {}, values)

    def _op_Sqrt(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("sqrt", {}, values)

    def _op_Neg(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("neg", {}, values)

    def _op_Abs(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary("abs", {}, values)

    def _op_LeakyRelu(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._unary(
            "leaky_relu", {"negative_slope": float(attrs.get("alpha", 0.01))}, values
        )

    def _op_Elu(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        alpha = float(attrs.get("alpha", 1.0))
        return self._unary("elu", {"alpha": alpha, "scale": 1.0, "input_scale": 1.0}, values)

    def _op_Clip(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        low, high = float(attrs.get("min", -math.inf)), float(attrs.get("max", math.inf))
        for index, bound in ((1, "min"), (2, "max")):
            if len(values) > index and values[index] is not None:
                given = values[index]
                if not isinstance(given, np.ndarray) or given.size != 1:
                    raise _NodeError(f"{bound}: expected a constant scalar")
                value = float(given.reshape(-1)[0])
                low, high = (value, high) if bound == "min" else (low, value)
        return self._unary("hardtanh", {"min_val": low, "max_val": high}, values[:1])

    def _softmax(self, op: str, values: list[Any], attrs: dict[str, Any]) -> list[_Value]:
        x = self._tensor(values[0], "input")
        rank = len(x.shape)
        axis = _axis(int(attrs.get("axis", -1 if self.opset >= 13 else 1)), rank, "axis")
        if self.opset >= 13 or axis == rank - 1:
            return [_Tensor(self._op(op, [x.name], {"dim": axis if rank else 0}), list(x.shape))]
        # Before opset 13 the input is seen as 2-D, (dims before axis, dims from axis on).
        dims = [self._size(x, d) for d in range(rank)]
        flat = self._op("flatten", [x.name], {"start_dim": axis, "end_dim": rank - 1})
        result = self._op(op, [flat], {"dim": axis})
        return [_Tensor(self._op("reshape", [result, *dims]), list(x.shape))]

    def _op_Softmax(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._softmax("softmax", values, attrs)

    def _op_LogSoftmax(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return self._softmax("log_softmax", values, attrs)

    def _op_Identity(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        return [values[0]]

    def _op_Dropout(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        if len(values) > 2 and values[2] is not None:
            training = values[2]
            if not isinstance(training, np.ndarray) or bool(training.reshape(-1)[0]):
                raise _NodeError("training_mode: expected a constant false (inference)")
        if len(node.output) > 1 and node.output[1]:
            raise _NodeError("its mask output is used; at inference dropout has no mask")
        return [values[0]]

    def _op_Cast(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        to = int(attrs.get("to", 0))
        tp = self.onnx.TensorProto
        if isinstance(values[0], _Dims):
            if to in (tp.INT64, tp.INT32):
                return [values[0]]
            raise _NodeError("casting sizes (int64) to a non-integer type")
        if to != tp.FLOAT:
            name = tp.DataType.Name(to) if to in tp.DataType.values() else str(to)
            raise _NodeError(
                f"cast to {name} of a tensor computed at run time: pyrnn computes in float32"
            )
        return [values[0]]

    # -- dense ---------------------------------------------------------------------------------
    def _linear(self, x: _Tensor, weight: np.ndarray, bias: np.ndarray | None) -> _Tensor:
        """x @ weight.T + bias for a weight (out, in)."""
        if x.shape and x.shape[-1] is not None and x.shape[-1] != weight.shape[1]:
            raise _NodeError(
                f"input has {x.shape[-1]} features, the weight expects {weight.shape[1]}"
            )
        w = self._const_tensor(weight, "weight")
        b = None if bias is None else self._const_tensor(bias, "bias").name
        name = self._op("linear", [x.name, w.name, b])
        return _Tensor(name, [*x.shape[:-1], int(weight.shape[0])])

    def _op_Gemm(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        a = self._tensor(values[0], "A")
        b = values[1]
        c = values[2] if len(values) > 2 else None
        if not isinstance(b, np.ndarray) or b.ndim != 2:
            raise _NodeError("B: expected a constant matrix (a weight)")
        if c is not None and not isinstance(c, np.ndarray):
            raise _NodeError("C: expected a constant (a bias)")
        if len(a.shape) != 2:
            raise _NodeError(f"A: expected a matrix, got rank {len(a.shape)}")
        if int(attrs.get("transA", 0)):
            a = _Tensor(self._op("permute", [a.name], {"dims": [1, 0]}), a.shape[::-1])
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        weight = (b if int(attrs.get("transB", 0)) else b.T).astype(np.float64) * alpha
        outputs = weight.shape[0]
        bias = None
        after = None
        if c is not None:
            scaled = np.asarray(c, np.float64) * beta
            if scaled.ndim <= 1 or scaled.shape[0] == 1:
                try:
                    bias = np.broadcast_to(scaled.reshape(-1), (outputs,))
                except ValueError:
                    raise _NodeError(f"C of shape {c.shape} does not broadcast") from None
            else:
                after = scaled
        y = self._linear(a, weight.astype(np.float32), bias)
        if after is not None:
            return self._binary("add", [y, after.astype(np.float32)])
        return [y]

    def _op_MatMul(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        a, b = values
        if not isinstance(b, np.ndarray):
            raise _NodeError("B: a product of two tensors computed at run time is not supported")
        a = self._tensor(a, "A")
        if b.ndim == 1:
            y = self._linear(a, b.reshape(1, -1).astype(np.float32), None)
            return [
                _Tensor(self._op("squeeze", [y.name], {"dims": [len(y.shape) - 1]}), y.shape[:-1])
            ]
        if b.ndim != 2:
            raise _NodeError(f"B: expected a constant matrix, got rank {b.ndim}")
        return [self._linear(a, np.ascontiguousarray(b.T, np.float32), None)]

    def _op_Conv(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        x = self._tensor(values[0], "X")
        w = values[1]
        bias = values[2] if len(values) > 2 else None
        if not isinstance(w, np.ndarray) or w.ndim != 3:
            raise _NodeError("W: expected a constant 1-D convolution kernel (rank 3)")
        if bias is not None and not isinstance(bias, np.ndarray):
            raise _NodeError("B: expected a constant")
        if len(x.shape) != 3:
            raise _NodeError(f"X: expected (N, C, L), got rank {len(x.shape)}")
        stride = _single(attrs.get("strides", [1]), "strides")
        dilation = _single(attrs.get("dilations", [1]), "dilations")
        kernel = int(w.shape[2])
        pads = list(attrs.get("pads", [0, 0]))
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto == "VALID":
            pads = [0, 0]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            if stride != 1:
                raise _NodeError(f"auto_pad {auto} with stride {stride} depends on the length")
            total = dilation * (kernel - 1)
            small, large = total // 2, total - total // 2
            pads = [small, large] if auto == "SAME_UPPER" else [large, small]
        elif auto != "NOTSET":
            raise _NodeError(f"auto_pad {auto!r}: unknown")
        if len(pads) != 2:
            raise _NodeError(f"pads: expected 2 values for a 1-D convolution, got {pads}")
        groups = int(attrs.get("group", 1))
        wt = self._const_tensor(w, "weight")
        b = None if bias is None else self._const_tensor(bias, "bias").name
        name = self._op(
            "conv1d",
            [x.name, wt.name, b],
            {
                "stride": stride,
                "padding": [int(p) for p in pads],
                "dilation": dilation,
                "groups": groups,
            },
        )
        length = x.shape[2]
        out_length = None
        if length is not None:
            out_length = (length + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1
        return [_Tensor(name, [x.shape[0], int(w.shape[0]), out_length])]

    # -- shapes --------------------------------------------------------------------------------
    def _op_Shape(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        x = values[0]
        if isinstance(x, _Dims):
            return [_Dims([] if x.scalar else [len(x.items)])]
        rank = len(x.shape)
        start = int(attrs.get("start", 0))
        end = int(attrs.get("end", rank))
        dims = list(range(rank))[slice(start, end)]
        return [_Dims([self._size(x, d) for d in dims])]

    def _op_Transpose(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        x = self._tensor(values[0], "data")
        rank = len(x.shape)
        perm = [int(p) for p in attrs.get("perm", range(rank - 1, -1, -1))]
        if sorted(_axis(p, rank, "perm") for p in perm) != list(range(rank)):
            raise _NodeError(f"perm {perm} is not a permutation of {rank} axes")
        name = self._op("permute", [x.name], {"dims": perm})
        return [_Tensor(name, [x.shape[p] for p in perm])]

    def _op_Reshape(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        if isinstance(values[0], _Dims):
            # Sizes regrouped (a one-element vector to a scalar or back).
            target = values[1] if len(values) > 1 else np.asarray(attrs.get("shape", []))
            if not isinstance(target, np.ndarray):
                raise _NodeError("reshaping sizes to a shape computed at run time")
            shape = [int(d) for d in target.reshape(-1)]
            count = len(values[0].items)
            if shape not in ([], [1], [-1], [count]) or (not shape and count != 1):
                raise _NodeError(f"reshaping {count} sizes to {shape}")
            return [_Dims(values[0].items, scalar=not shape)]
        x = self._tensor(values[0], "data")
        if len(values) > 1:
            target = _dims_of(values[1])
        else:
            target = _Dims([int(d) for d in attrs.get("shape", [])])
        if target is None:
            raise _NodeError("shape: expected sizes known when the input shapes are")
        dims: list[int | str] = []
        for i, item in enumerate(target.items):
            if item == 0 and not int(attrs.get("allowzero", 0)):
                if i >= len(x.shape):
                    raise _NodeError(f"shape: 0 copies dim {i}, which the input lacks")
                item = self._size(x, i)
            dims.append(item)
        return [_Tensor(self._op("reshape", [x.name, *dims]), _reshaped(x.shape, dims))]

    def _op_Flatten(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        x = self._tensor(values[0], "input")
        rank = len(x.shape)
        axis = int(attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if not 0 <= axis <= rank:
            raise _NodeError(f"axis {axis} is outside [-{rank}, {rank}]")
        outer = _product(x.shape[:axis])
        inner = _product(x.shape[axis:])
        if axis == 0:
            name = self._op("reshape", [x.name, 1, -1])
        elif axis == rank:
            name = self._op("reshape", [x.name, -1, 1])
        else:
            name = self._op("flatten", [x.name], {"start_dim": 0, "end_dim": axis - 1})
            name = self._op("flatten", [name], {"start_dim": 1, "end_dim": rank - axis})
        return [_Tensor(name, [outer, inner])]

    def _axes(self, values: list[Any], attrs: dict[str, Any], what: str) -> list[int] | None:
        if len(values) > 1 and values[1] is not None:
            given = values[1]
            if isinstance(given, _Dims) and all(isinstance(i, int) for i in given.items):
                return [int(i) for i in given.items]
            if not isinstance(given, np.ndarray):
                raise _NodeError(f"{what}: expected constant axes")
            return [int(a) for a in given.reshape(-1)]
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        return None

    def _op_Squeeze(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        axes = self._axes(values, attrs, "axes")
        data = values[0]
        if isinstance(data, _Dims):
            if len(data.items) != 1 or data.scalar:
                raise _NodeError("squeezing sizes that are not one element")
            return [_Dims(data.items, scalar=True)]
        x = self._tensor(data, "data")
        rank = len(x.shape)
        if axes is None:
            dims = [d for d, n in enumerate(x.shape) if n == 1]
        else:
            dims = sorted({_axis(a, rank, "axes") for a in axes})
            for d in dims:
                if x.shape[d] not in (1, None):
                    raise _NodeError(f"axes: dim {d} has extent {x.shape[d]}, not 1")
        name = self._op("squeeze", [x.name], {"dims": dims})
        return [_Tensor(name, [n for d, n in enumerate(x.shape) if d not in dims])]

    def _op_Unsqueeze(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        axes = self._axes(values, attrs, "axes")
        if axes is None:
            raise _NodeError("axes: missing")
        data = values[0]
        if isinstance(data, _Dims):
            if data.scalar and len(axes) == 1:
                return [_Dims(data.items)]
            raise _NodeError("unsqueezing sizes beyond one axis")
        x = self._tensor(data, "data")
        rank = len(x.shape) + len(axes)
        dims = sorted({_axis(a, rank, "axes") for a in axes})
        if len(dims) != len(axes):
            raise _NodeError(f"axes {axes} repeat an axis")
        name, shape = x.name, list(x.shape)
        for d in dims:
            name = self._op("unsqueeze", [name], {"dim": d})
            shape.insert(d, 1)
        return [_Tensor(name, shape)]

    def _op_Concat(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        present = [v for v in values if v is not None]
        if any(isinstance(v, _Dims) for v in present):
            items: list[int | str] = []
            for v in present:
                dims = _dims_of(v)
                if dims is None:
                    raise _NodeError("concatenating sizes (int64) with float data")
                items += dims.items
            return [_Dims(items)]
        tensors = [self._tensor(v, f"inputs[{i}]") for i, v in enumerate(present)]
        rank = len(tensors[0].shape)
        if any(len(t.shape) != rank for t in tensors):
            raise _NodeError("inputs of different ranks")
        axis = _axis(int(attrs.get("axis", 0)), rank, "axis")
        extents = [t.shape[axis] for t in tensors]
        shape = list(tensors[0].shape)
        shape[axis] = None if None in extents else sum(e for e in extents if e is not None)
        return [_Tensor(self._op("cat", [t.name for t in tensors], {"dim": axis}), shape)]

    def _slice_params(
        self, values: list[Any], attrs: dict[str, Any], rank: int
    ) -> list[tuple[int, int | str, int | str, int]]:
        if self.opset < 10:
            starts, ends = list(attrs.get("starts", [])), list(attrs.get("ends", []))
            axes = list(attrs.get("axes", range(len(starts))))
            steps = [1] * len(starts)
        else:
            parts = []
            for index, what in ((1, "starts"), (2, "ends")):
                dims = _dims_of(values[index]) if len(values) > index else None
                if dims is None:
                    raise _NodeError(f"{what}: expected sizes known when input shapes are")
                parts.append(dims.items)
            starts, ends = parts
            axes = (
                self._consts(values[3], "axes")
                if len(values) > 3 and values[3] is not None
                else list(range(len(starts)))
            )
            steps = (
                self._consts(values[4], "steps")
                if len(values) > 4 and values[4] is not None
                else [1] * len(starts)
            )
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise _NodeError("starts, ends, axes and steps differ in length")
        return [
            (_axis(int(a), rank, "axes"), s, e, int(st))
            for a, s, e, st in zip(axes, starts, ends, steps, strict=True)
        ]

    def _consts(self, value: Any, what: str) -> list[int]:
        if isinstance(value, _Dims) and all(isinstance(i, int) for i in value.items):
            return [int(i) for i in value.items]
        if not isinstance(value, np.ndarray):
            raise _NodeError(f"{what}: expected a constant")
        return [int(i) for i in value.reshape(-1)]

    def _op_Slice(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        data = values[0]
        if isinstance(data, _Dims):
            params = self._slice_params(values, attrs, 1)
            items = data.items
            for _, start, end, step in params:
                if not isinstance(start, int) or not isinstance(end, int):
                    raise _NodeError("slicing sizes at bounds computed at run time")
                items = items[slice(start, end, step)]
            return [_Dims(items)]
        x = self._tensor(data, "data")
        name, shape = x.name, list(x.shape)
        for axis, start, end, step in self._slice_params(values, attrs, len(shape)):
            if step < 1:
                raise _NodeError(f"steps: {step}; only positive steps are supported")
            start = _clamp_int(start)
            end = _clamp_int(end)
            name = self._op("slice", [name, start, end], {"dim": axis, "step": step})
            extent = shape[axis]
            if extent is not None and isinstance(start, int) and isinstance(end, int):
                shape[axis] = len(range(*slice(start, end, step).indices(extent)))
            else:
                shape[axis] = None
        return [_Tensor(name, shape)]

    def _op_Gather(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        data, indices = values[0], values[1]
        axis = int(attrs.get("axis", 0))
        if isinstance(indices, _Dims) and all(isinstance(i, int) for i in indices.items):
            indices = np.asarray(indices.items, np.int64).reshape(() if indices.scalar else -1)
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
            raise _NodeError("indices: expected constant integers")
        if isinstance(data, _Dims):
            if data.scalar or axis not in (0, -1):
                raise _NodeError("gathering from sizes other than a 1-D shape")
            count = len(data.items)
            picked = []
            for i in indices.reshape(-1):
                if not -count <= int(i) < count:
                    raise _NodeError(f"index {int(i)} is out of range for {count} sizes")
                picked.append(data.items[int(i)])
            return [_Dims(picked, scalar=indices.ndim == 0)]
        x = self._tensor(data, "data")
        rank = len(x.shape)
        axis = _axis(axis, rank, "axis")
        if indices.ndim == 0:
            index = int(indices)
            _check_index(index, x.shape[axis])
            name = self._op("select", [x.name], {"dim": axis, "index": index})
            return [_Tensor(name, x.shape[:axis] + x.shape[axis + 1 :])]
        if indices.ndim != 1:
            raise _NodeError(f"indices: expected a scalar or a list, got rank {indices.ndim}")
        picks = [int(i) for i in indices]
        for index in picks:
            _check_index(index, x.shape[axis])
        parts = [
            self._op(
                "unsqueeze",
                [self._op("select", [x.name], {"dim": axis, "index": index})],
                {"dim": axis},
            )
            for index in picks
        ]
        shape = list(x.shape)
        shape[axis] = len(picks)
        if len(parts) == 1:
            return [_Tensor(parts[0], shape)]
        return [_Tensor(self._op("cat", parts, {"dim": axis}), shape)]

    def _op_Expand(self, values: list[Any], attrs: dict[str, Any], node: Any) -> list[_Value]:
        x = self._tensor(values[0], "input")
        target = _dims_of(values[1])
        if target is None:
            raise _NodeError("shape: expected sizes known when the input shapes are")
        rank = max(len(target.items), len(x.shape))
        items = [1] * (rank - len(target.items)) + list(target.items)
        own = [None] * (rank - len(x.shape)) + list(x.shape)
        dims: list[int | str] = []
        shape: list[int | None] = []
        for i, (want, have) in enumerate(zip(items, own, strict=True)):
            if i < rank - len(x.shape):
                dims.append(want)
                shape.append(want if isinstance(want, int) else None)
            elif want == 1 or (isinstance(have, int) and have > 1):
                dims.append(-1)
                shape.append(have)
            else:
                dims.append(want)
                shape.append(want if isinstance(want, int) else None)
        return [_Tensor(self._op("expand", [x.name, *dims]), shape)]

    def _op_ConstantOfShape(
        self, values: list[Any], attrs: dict[str, Any], node: Any
    ) -> list[_Value]:
        target = _dims_of(values[0])
        if target is None:
            raise _NodeError("input: expected sizes")
        fill = attrs.get("value")
        value = 0.0
        if fill is not None:
            array = self.onnx.numpy_helper.to_array(fill).reshape(-1)
            if array.dtype.kind != "f":
                raise _NodeError(
                    f"a {array.dtype} tensor of run-time shape: pyrnn computes in float32"
                )
            value = float(array[0])
        if not math.isfinite(value):
            raise _NodeError(f"value {value} is not finite")
        name = self._op("full", list(target.items), {"value": value, "dtype": "float32"})
        return [_Tensor(name, [i if isinstance(i, int) else None for i in target.items])]

    # -- recurrent -----------------------------------------------------------------------------
    def _recurrent(self, node: Any, values: list[Any], attrs: dict[str, Any]) -> list[_Value]:
        """An ONNX LSTM, GRU or RNN node as one ``rnn`` op (see the module docstring)."""
        op = node.op_type
        kind = _RECURRENT[op]
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]

        def operand(index: int) -> Any:
            return values[index] if len(values) > index else None

        x = self._tensor(values[0], "X")
        w, r, b = operand(1), operand(2), operand(3)
        for array, what in ((w, "W"), (r, "R"), (b, "B")):
            if array is not None and (not isinstance(array, np.ndarray) or array.dtype.kind != "f"):
                raise _NodeError(f"{what}: expected constant float weights")
        direction = _text(attrs.get("direction", "forward"))
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _NodeError(
                f"direction: expected forward, reverse or bidirectional, got {direction!r}"
            )
        dirs = 2 if direction == "bidirectional" else 1
        if w is None or r is None or w.ndim != 3 or r.ndim != 3:
            raise _NodeError("W and R: expected constant tensors of rank 3")
        hidden = int(attrs.get("hidden_size", r.shape[-1]))
        size = gates * hidden
        features = int(w.shape[2])
        _expect(w, (dirs, size, features), "W")
        _expect(r, (dirs, size, hidden), "R")
        if b is not None:
            _expect(b, (dirs, 2 * size), "B")
        layout = int(attrs.get("layout", 0))
        if layout not in (0, 1):
            raise _NodeError(f"layout: expected 0 or 1, got {layout}")
        if len(x.shape) != 3 or x.shape[2] not in (None, features):
            raise _NodeError(
                f"X: expected ({'N, T' if layout else 'T, N'}, {features}), got {x.shape}"
            )
        time_axis = 1 if layout else 0
        steps, rows = x.shape[time_axis], x.shape[1 - time_axis]
        lengths = self._lengths(operand(4), steps, rows)
        mode, options, peepholes = self._cell(op, kind, attrs, dirs, hidden, operand(7))

        weights: list[str] = []
        for d in range(dirs):
            suffix = "_reverse" if d else ""
            parts = [("weight_ih", w[d]), ("weight_hh", r[d])]
            if b is not None:
                parts += [("bias_ih", b[d, :size]), ("bias_hh", b[d, size:])]
            for role, array in parts:
                converted = from_onnx_gates(np.asarray(array, np.float32), kind)
                weights.append(self._const_tensor(converted, f"{role}_l0{suffix}").name)
            if peepholes is not None:
                i, o, f = np.split(np.asarray(peepholes[d], np.float32), 3)
                weights.append(
                    self._const_tensor(np.concatenate([i, f, o]), f"peephole_l0{suffix}").name
                )

        states: list[str | None] = []
        for index, what, features_of in ((5, "initial_h", hidden), (6, "initial_c", hidden)):
            value = operand(index)
            if value is None or (index == 6 and kind != "lstm"):
                states.append(None)
                continue
            state = self._tensor(value, what)
            if len(state.shape) != 3 or state.shape[2] not in (None, features_of):
                raise _NodeError(
                    f"{what}: expected rank 3 with {features_of} features, got {state.shape}"
                )
            if layout:
                state = _Tensor(
                    self._op("permute", [state.name], {"dims": [1, 0, 2]}),
                    [state.shape[1], state.shape[0], state.shape[2]],
                )
            states.append(state.name)

        if lengths is not None:
            # Each row ends (and, reverse, starts) at its own length: no flip of the whole axis.
            options["lengths"] = lengths
            self._bound_by_lengths(x, lengths, time_axis)
            if direction == "reverse":
                options["reverse"] = True
        flipped = direction == "reverse" and lengths is None
        source = x.name
        if flipped:
            source = self._op("flip", [source], {"dim": time_axis})
        outputs = [self._fresh("rnn_out"), self._fresh("h_n")]
        if kind == "lstm":
            outputs.append(self._fresh("c_n"))
        self._emit(
            "rnn",
            [source, states[0], states[1], *weights],
            {
                "mode": mode,
                "num_layers": 1,
                "bidirectional": dirs == 2,
                "batch_first": bool(layout),
                "has_biases": b is not None,
                **options,
            },
            outputs,
        )
        y = outputs[0]
        if flipped:
            y = self._op("flip", [y], {"dim": time_axis})
        results: list[_Value] = []
        wanted = list(node.output)
        if wanted and wanted[0]:
            results.append(self._sequence_output(y, layout, dirs, hidden, steps, rows))
        else:
            results.append(_Tensor(y, []))
        for state_name in outputs[1:]:
            if layout:
                shape = [rows, dirs, hidden]
                state_name = self._op("permute", [state_name], {"dims": [1, 0, 2]})
            else:
                shape = [dirs, rows, hidden]
            results.append(_Tensor(state_name, shape))
        return results

    def _sequence_output(
        self, y: str, layout: int, dirs: int, hidden: int, steps: int | None, rows: int | None
    ) -> _Tensor:
        """The rnn op's (T, N, D*H) (or (N, T, D*H)) as ONNX's Y: (T, D, N, H) or (N, T, D, H)."""
        if layout:
            shape = [rows, steps, dirs, hidden]
            if dirs == 1:
                return _Tensor(self._op("unsqueeze", [y], {"dim": 2}), shape)
            t = self._op("size", [y], {"dim": 1}, "size")
            return _Tensor(self._op("reshape", [y, -1, t, 2, hidden]), shape)
        shape = [steps, dirs, rows, hidden]
        if dirs == 1:
            return _Tensor(self._op("unsqueeze", [y], {"dim": 1}), shape)
        n = self._op("size", [y], {"dim": 1}, "size")
        split = self._op("reshape", [y, -1, n, 2, hidden])
        return _Tensor(self._op("permute", [split], {"dims": [0, 2, 1, 3]}), shape)

    def _lengths(self, lengths: Any, steps: int | None, rows: int | None) -> list[int] | None:
        """sequence_lens as the rnn op's lengths: None when absent or every row runs all T
        steps. Only constants: lengths computed at run time are refused."""
        if lengths is None:
            return None
        if not isinstance(lengths, np.ndarray):
            raise _NodeError(
                "sequence_lens: lengths computed at run time are not supported, only a constant "
                "(an initializer or a Constant node); give the lengths as a constant, or drop "
                "sequence_lens to run every row all T steps"
            )
        if lengths.dtype.kind not in "iu" or lengths.ndim != 1:
            raise _NodeError(
                f"sequence_lens: expected a 1-D int tensor, got {lengths.dtype} of shape "
                f"{lengths.shape}"
            )
        if rows is not None and lengths.size != rows:
            raise _NodeError(
                f"sequence_lens: expected one length per row (batch_size = {rows}), got "
                f"{lengths.size}"
            )
        values = [int(v) for v in lengths]
        for row, value in enumerate(values):
            if value < 1 or (steps is not None and value > steps):
                raise _NodeError(
                    f"sequence_lens[{row}]: expected a length in [1, "
                    f"{'T' if steps is None else steps}], got {value}"
                )
        if steps is not None and all(value == steps for value in values):
            return None
        return values

    def _bound_by_lengths(self, x: _Tensor, lengths: list[int], time_axis: int) -> None:
        """X taken straight from a graph input: its batch dim becomes the lengths' count and its
        free time dim at least the longest length, so that the model's input checks (and the
        shape probes of pyrnn.load) use only sizes the lengths allow."""
        for spec in self.inputs:
            if spec.name != x.name or len(spec.shape) != 3:
                continue
            batch_axis = 1 - time_axis
            if spec.shape[batch_axis] is None:
                spec.shape[batch_axis] = len(lengths)
            if spec.shape[time_axis] is None and not any(r[0] == time_axis for r in spec.ranges):
                spec.ranges.append((time_axis, max(lengths), None))

    def _cell(
        self, op: str, kind: str, attrs: dict[str, Any], dirs: int, hidden: int, peepholes: Any
    ) -> tuple[str, dict[str, Any], np.ndarray | None]:
        """The rnn op's mode, its ONNX cell attributes (none where the node computes PyTorch's
        cell) and the peephole weights (None when absent or zero)."""
        count = {"lstm": 3, "gru": 2, "rnn": 1}[kind]
        defaults = {
            "lstm": ["sigmoid", "tanh", "tanh"],
            "gru": ["sigmoid", "tanh"],
            "rnn": ["tanh"],
        }
        given = [_text(a).lower() for a in attrs.get("activations", [])]
        if given and len(given) != count * dirs:
            raise _NodeError(
                f"activations: expected {count * dirs} ({count} per direction), got {len(given)}"
            )
        names = given or defaults[kind] * dirs
        alphas = [float(a) for a in attrs.get("activation_alpha", [])]
        betas = [float(b) for b in attrs.get("activation_beta", [])]
        functions = []
        for name in names:
            if name not in _ACTIVATIONS:
                raise _NodeError(
                    f"activations: unknown function {name!r:.40} (known: "
                    f"{', '.join(sorted(_ACTIVATIONS))})"
                )
            alpha, beta = _ACTIVATIONS[name]
            # alphas and betas are consumed in order by the functions that take them.
            if alpha is not None:
                alpha = alphas.pop(0) if alphas else alpha
            if beta is not None:
                beta = betas.pop(0) if betas else beta
            functions.append((name, alpha or 0.0, beta or 0.0))
        if functions[:count] != functions[count:] and dirs == 2:
            raise _NodeError(
                "activations: the two directions differ; pyrnn runs both directions of a node "
                "with the same functions"
            )
        functions = functions[:count]
        options: dict[str, Any] = {}
        mode = kind
        if kind == "rnn":
            mode = "rnn_relu" if functions[0][0] == "relu" else "rnn_tanh"
            general = functions[0][0] not in ("tanh", "relu")
        else:
            general = [f[0] for f in functions] != defaults[kind]
        if general:
            options["activations"] = ",".join(f[0] for f in functions)
            options["activation_alpha"] = [f[1] for f in functions]
            options["activation_beta"] = [f[2] for f in functions]
        clip = attrs.get("clip")
        if clip is not None:
            clip = float(clip)
            if not (math.isfinite(clip) and clip > 0):
                raise _NodeError(f"clip: expected a positive number, got {clip}")
            options["clip"] = clip
        if int(attrs.get("input_forget", 0)):
            if kind != "lstm":
                raise _NodeError("input_forget: only LSTM takes it")
            options["input_forget"] = True
        if kind == "gru" and int(attrs.get("linear_before_reset", 0)) == 0:
            # ONNX's default; PyTorch's GRU is linear_before_reset=1.
            options["linear_before_reset"] = False
        if peepholes is not None:
            if not isinstance(peepholes, np.ndarray) or peepholes.dtype.kind != "f":
                raise _NodeError("P: expected constant float peephole weights")
            _expect(peepholes, (dirs, 3 * hidden), "P")
            if not np.any(peepholes):
                peepholes = None
            else:
                options["peepholes"] = True
        return mode, options, peepholes


# -- helpers -------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _expect(array: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if tuple(array.shape) != shape:
        raise _NodeError(f"{what}: expected shape {shape}, got {tuple(array.shape)}")


def _axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < max(rank, 1):
        raise _NodeError(f"{what}: axis {axis} is outside [-{rank}, {rank})")
    return axis + rank if axis < 0 else axis


def _single(values: Any, what: str) -> int:
    items = [int(v) for v in values]
    if len(items) != 1:
        raise _NodeError(f"{what}: expected one value for a 1-D convolution, got {items}")
    return items[0]


def _check_index(index: int, extent: int | None) -> None:
    if extent is not None and not -extent <= index < extent:
        raise _NodeError(f"index {index} is out of range for extent {extent}")


def _clamp_int(value: int | str) -> int | str:
    if isinstance(value, int):
        return max(min(value, _OPEN_END), -_OPEN_END)
    return value


def _int_of(item: int | str) -> int:
    if not isinstance(item, int):
        raise _NodeError("a size computed at run time is a graph output")
    return item


def _dims_of(value: Any) -> _Dims | None:
    if isinstance(value, _Dims):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.ndim <= 1:
        return _Dims([int(v) for v in value.reshape(-1)], scalar=value.ndim == 0)
    return None


def _product(dims: list[int | None]) -> int | None:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


def _broadcast(left: list[int | None], right: list[int | None]) -> list[int | None]:
    rank = max(len(left), len(right))
    ones: list[int | None] = [1] * rank
    a = ones[: rank - len(left)] + list(left)
    b = ones[: rank - len(right)] + list(right)
    shape: list[int | None] = []
    for x, y in zip(a, b, strict=True):
        if x == 1:
            shape.append(y)
        elif y == 1 or x == y:
            shape.append(x)
        elif x is None or y is None:
            shape.append(x if y is None else y)
        else:
            raise _NodeError(f"shapes {a} and {b} do not broadcast")
    return shape


def _reshaped(shape: list[int | None], dims: list[int | str]) -> list[int | None]:
    out: list[int | None] = [d if isinstance(d, int) and d >= 0 else None for d in dims]
    if -1 in dims:
        free = dims.index(-1)
        others = [d for i, d in enumerate(dims) if i != free]
        total = _product(shape)
        if total is not None and all(isinstance(d, int) for d in others):
            known = _product([int(d) for d in others])
            if known:
                out[free] = total // known
    return out
