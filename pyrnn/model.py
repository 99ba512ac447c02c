"""Whole models: a graph of ops (recurrent layers, linear layers, convolutions, activations,
reshapes ...) with its weights, run by the C++ core in one call per forward.

Made by ``pyrnn.from_torch(module, *example_inputs)`` for any torch module that is not one of
the six recurrent types, and loaded by ``pyrnn.load`` from files it saved.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np

from . import _core
from ._arrays import as_float32, refuse_masked
from ._base import IncompatibleKeys
from ._weights import SCALE_SUFFIX, check_scales, checked_matrix
from .graph import Graph, GraphError, Node, Structure, structure_leaves
from .graph_passes import fold_linear_into_recurrent

__all__ = ["Model"]

_INT64 = np.dtype(np.int64)


class Model:
    """A converted model: call it like the torch module it came from (positional tensor
    inputs, numpy float32 / int64 outputs in the module's output structure).

    Every input dimension the module did not fix stays free: a model converted from an
    example of batch 4 and 160 steps runs on batch 1 and 57 steps. Plans (shapes, memory) are
    made once per input shape and cached, so repeated calls of one shape allocate only their
    outputs. Weights are held read-only; any number of threads may call one model at once.
    """

    def __init__(self, graph: Graph, constants: Mapping[str, Any]) -> None:
        graph.validate()
        # int8 scales come with int8 weights (checked with them); floats get fresh ones.
        scales = _scale_names(graph)
        missing = [name for name in graph.constants if name not in constants]
        unexpected = [
            name for name in constants if name not in graph.constants and name not in scales
        ]
        if missing or unexpected:
            raise GraphError(
                f"constants: missing {missing[:8]}, unexpected {unexpected[:8]} for the graph"
            )
        prepared = _constants(graph, constants, None)
        self._build(graph, _meta(graph, prepared), prepared.__getitem__, _scales(prepared))

    @classmethod
    def _streamed(
        cls,
        graph: Graph,
        shapes: Mapping[str, tuple[str, tuple[int, ...]]],
        read: Callable[[str], np.ndarray],
        scales: Mapping[str, np.ndarray],
    ) -> Model:
        """A model whose constants `read` gives one at a time, when the core needs each (a
        file's tensors): each matrix is packed and let go before the next is read. `shapes`:
        name -> ('float32' or 'int64' for a constant not quantised, shape); `scales`: the
        int8 scales, by scale name."""
        graph.validate()
        quantized = set(graph.quantized)
        checked = {
            scale: check_scales(scales[scale], f"state_dict[{scale!r}]", shapes[name][1][0])
            for scale, name in _scale_names(graph).items()
        }
        meta = {
            name: (graph.weight_dtype if name in quantized else dtype, tuple(shape))
            for name, (dtype, shape) in shapes.items()
        }

        def fetch(name: str) -> np.ndarray:
            dtype, shape = meta[name]
            if name in quantized:
                given = {name: read(name), **checked}
                return checked_matrix(given, name, shape, dtype, copy=False)[name]
            return _constant(name, read(name), np.dtype(dtype))

        model = cls.__new__(cls)
        model._build(graph, meta, fetch, checked)
        return model

    def _build(
        self,
        graph: Graph,
        meta: dict[str, tuple[str, tuple[int, ...]]],
        fetch: Callable[[str], np.ndarray],
        scales: dict[str, np.ndarray],
        base: Model | None = None,
    ) -> None:
        """Builds the core graph, which packs each weight matrix as `fetch` gives it and holds
        it only in that packed form; everything the model shows is read back from the core.
        With `base` (a model whose constants of the same names are these), the core shares
        base's copies and packed weights of them instead of holding its own."""
        self._graph = graph
        self._meta = meta  # constant -> (storage dtype, shape)
        self._scales = scales  # int8 only: '<name>_scale' -> its read-only scales
        self._core = _build_core(graph, meta, fetch, scales, base)

    # -- running ---------------------------------------------------------------------------
    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def forward(self, *inputs: Any) -> Any:
        """Runs the whole model on positional inputs as the torch module took them."""
        specs = self._graph.inputs
        if len(inputs) != len(specs):
            names = ", ".join(spec.name for spec in specs)
            raise TypeError(f"expected {len(specs)} inputs ({names}), got {len(inputs)}")
        arrays = [
            _as_input(value, spec.name, spec.dtype)
            for value, spec in zip(inputs, specs, strict=True)
        ]
        for array, spec in zip(arrays, specs, strict=True):
            _check_shape(array, spec.name, spec.shape, spec.ranges)
        results = self._core.forward(arrays)
        return _rebuild(self._graph.outputs, iter(results))

    def stream(self, batch: int | None = None, time_axis: int | list[int] | None = None) -> Any:
        """A stream running this model frame by frame (see pyrnn.ModelStream). ``time_axis``
        names each input's time axis when more than one free dimension could carry it. Inputs
        that are only recurrent initial states (ONNX's h0/c0 fed as graph inputs, returned as
        outputs) become the stream's state: frames are given for the other inputs only."""
        from .model_stream import ModelStream

        return ModelStream(self, batch, time_axis)

    # -- description -----------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The model's graph (ops, values, output structure)."""
        return self._graph

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """Each input's name, dtype and shape (None where a dimension is free)."""
        return [
            {"name": spec.name, "dtype": spec.dtype, "shape": tuple(spec.shape)}
            for spec in self._graph.inputs
        ]

    @property
    def outputs(self) -> Structure:
        """The output structure: {'tensor': name} leaves in tuples, lists and dicts."""
        return self._graph.outputs

    def __repr__(self) -> str:
        """The ops in order, like a torch module's repr: the module each came from, what it
        computes, its settings (value names and int bookkeeping left out)."""
        lines = ["Model("]
        for spec in self._graph.inputs:
            dims = ", ".join("*" if d is None else str(d) for d in spec.shape)
            lines.append(f"  (input {spec.name}): {spec.dtype}[{dims}]")
        for node in self._graph.nodes:
            if node.op in _BOOKKEEPING:
                continue
            # source: "encoder.lstm (torch.nn.LSTM), model.py:7", or "model.py:9" for code of
            # the top module itself.
            module = node.source.split(" (", 1)[0] if " (" in node.source else ""
            where = f"({module}): " if module else ""
            lines.append(f"  {where}{_describe(node, self._meta)}")
        return "\n".join(lines) + "\n)"

    # -- weights ---------------------------------------------------------------------------
    @property
    def weight_dtype(self) -> str:
        """How the weight matrices of linear, conv1d and recurrent ops are stored: 'fp32', or
        'fp16', 'bf16', 'int8' for a model made by pyrnn.quantize."""
        return self._graph.weight_dtype

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weight and buffer name (as in the torch module's state_dict) -> a writable copy; a
        quantised model's matrices as stored (float16; uint16 holding bfloat16 bits; int8,
        each followed by '<name>_scale', its float32 scale per row). Matrices are read back
        from the packed copy the model runs on, bit-exactly."""
        return {
            key: self._scales[key].copy() if key in self._scales else self._core.constant(key)
            for key in self._constants
        }

    @property
    def _constants(self) -> _Constants:
        """Every constant by name (int8 scales after their matrix), each read when asked for."""
        return _Constants(self)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> IncompatibleKeys:
        """Replaces weights by name; shapes and dtypes must match. Nothing changes unless
        every check passes (and, with strict, the keys match exactly). A quantised model
        takes its matrices as state_dict() gives them or as floats, which it quantises."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict: expected a mapping of name -> array, got {type(state_dict).__name__}"
            )
        graph = self._graph
        scales = _scale_names(graph)
        missing = [name for name in graph.constants if name not in state_dict]
        unexpected = [
            name for name in state_dict if name not in graph.constants and name not in scales
        ]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state_dict: missing keys {missing[:8]}, unexpected keys {unexpected[:8]}"
            )
        given = _constants(graph, state_dict, self._meta)
        old = self._core

        def fetch(name: str) -> np.ndarray:
            # Weights not given are read back from the packed copy one at a time.
            return given[name] if name in given else old.constant(name)

        meta = {**self._meta, **_meta(graph, given)}
        kept = {**self._scales, **_scales(given)}
        # The weights not given are shared with the old core (and the streams still on it).
        core = _build_core(graph, meta, fetch, kept, base=self, changed=set(given))
        self._meta, self._scales, self._core = meta, kept, core
        return IncompatibleKeys(missing, unexpected)

    # -- pickling: graph + weights; the core graph is rebuilt --------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"graph": self._graph.to_json(), "constants": self.state_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Graph.from_json(state["graph"]), state["constants"])  # type: ignore[misc]


# Ops that only compute sizes or pass values through: not shown in a model's repr.
_BOOKKEEPING = frozenset({"size", "int_add", "int_sub", "int_mul", "int_floordiv", "identity"})


def _describe(node: Node, meta: Mapping[str, tuple[str, tuple[int, ...]]]) -> str:
    """One op as a torch-like line: layer sizes from its weights, then its settings."""
    attrs = dict(node.attrs)
    shape = [meta[x][1] if isinstance(x, str) and x in meta else None for x in node.inputs]
    if node.op == "rnn" and shape[3] is not None:
        mode = attrs.pop("mode")
        gates = {"lstm": 4, "gru": 3}.get(mode, 1)
        hidden = shape[3][0] // gates
        text = f"{mode}({shape[3][1]}, {hidden}"
        layers = attrs.pop("num_layers")
        text += f", num_layers={layers}" if layers != 1 else ""
        text += "".join(f", {key}=True" for key in ("bidirectional", "batch_first") if attrs[key])
        text += ", bias=False" if not attrs["has_biases"] else ""
        return text + ")"
    if node.op in ("linear", "embedding") and shape[1 if node.op == "linear" else 0]:
        rows, cols = shape[1 if node.op == "linear" else 0]  # type: ignore[misc]
        if node.op == "linear":
            bias = "" if len(node.inputs) > 2 and node.inputs[2] is not None else ", bias=False"
            return f"linear({cols}, {rows}{bias})"
        return f"embedding({rows}, {cols})"
    if node.op == "conv1d" and shape[1] is not None:
        out_channels, group_in, kernel = shape[1]
        settings = ", ".join(f"{key}={value}" for key, value in attrs.items())
        return f"conv1d({group_in * attrs['groups']}, {out_channels}, {kernel}, {settings})"
    settings = ", ".join(f"{key}={value!r}" for key, value in attrs.items())
    return f"{node.op}({settings})"


def _scale_names(graph: Graph) -> dict[str, str]:
    """int8 graphs: scale tensor name -> its weight's name."""
    if graph.weight_dtype != "int8":
        return {}
    return {name + SCALE_SUFFIX: name for name in graph.quantized}


class _Constants(Mapping[str, np.ndarray]):
    """A model's constants (and int8 scales) by name, each read from the core when asked for:
    a fresh read-only array."""

    def __init__(self, model: Model) -> None:
        self._model = model
        scales = _scale_names(model._graph)
        self._names = [
            key
            for name in model._graph.constants
            for key in (name, name + SCALE_SUFFIX)
            if key == name or key in scales
        ]

    def __getitem__(self, key: str) -> np.ndarray:
        if key in self._model._scales:
            return self._model._scales[key]
        if key not in self._model._meta:
            raise KeyError(key)
        array: np.ndarray = self._model._core.constant(key)
        array.flags.writeable = False
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, key: object) -> bool:
        return key in self._model._meta or key in self._model._scales


def _constants(
    graph: Graph,
    given: Mapping[str, Any],
    current: Mapping[str, tuple[str, tuple[int, ...]]] | None,
) -> dict[str, np.ndarray]:
    """The constants of `given` that `graph` has, checked: against the dtypes and shapes of
    `current` (name -> (storage dtype, shape)) when replacing, else as given. Quantised
    matrices are taken in their storage dtype (int8 with scales) or quantised from floats.
    Arrays already C-contiguous in the right dtype are taken as they are, not copied: the core
    packs or copies what it keeps while the model is built."""
    quantized = set(graph.quantized)
    scales = _scale_names(graph)
    result: dict[str, np.ndarray] = {}
    for name in graph.constants:
        if name not in given:
            continue
        if name in quantized:
            shape = None if current is None else current[name][1]
            result.update(checked_matrix(given, name, shape, graph.weight_dtype, copy=False))
            continue
        old = None if current is None else current[name]
        dtype = None if old is None else np.dtype(np.int64 if old[0] == "int64" else np.float32)
        array = _constant(name, given[name], dtype)
        if old is not None and array.shape != old[1]:
            raise ValueError(f"state_dict[{name!r}]: expected shape {old[1]}, got {array.shape}")
        result[name] = array
    for scale, name in scales.items():
        if scale in given and name not in given:
            raise ValueError(
                f"state_dict[{scale!r}]: a scale without its int8 weight {name!r}; give both"
            )
    return result


def _meta(
    graph: Graph, prepared: Mapping[str, np.ndarray]
) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (storage dtype as the core names it, shape) of the constants in `prepared`."""
    quantized = set(graph.quantized)
    return {
        name: (
            graph.weight_dtype
            if name in quantized
            else "int64"
            if array.dtype == _INT64
            else "float32",
            tuple(array.shape),
        )
        for name, array in prepared.items()
        if name in graph.constants
    }


def _scales(prepared: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: array for name, array in prepared.items() if name.endswith(SCALE_SUFFIX)}


def _constant(name: str, value: Any, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """One weight as a C-contiguous, aligned float32 or int64 array: `value` itself when it is
    one already, else a converted copy."""
    array = np.asarray(value)
    if dtype is None:
        dtype = _INT64 if array.dtype.kind in "iu" else np.dtype(np.float32)
    if dtype == _INT64:
        if array.dtype.kind not in "iu":
            raise TypeError(f"state_dict[{name!r}]: expected integers, got dtype {array.dtype}")
        result = array.astype(_INT64, copy=False)
    else:
        result = as_float32(value, f"state_dict[{name!r}]")
    if not (result.flags.c_contiguous and result.flags.aligned):
        result = result.copy(order="C")
    return result


def _build_core(
    graph: Graph,
    meta: Mapping[str, tuple[str, tuple[int, ...]]],
    fetch: Callable[[str], np.ndarray],
    scales: Mapping[str, np.ndarray],
    base: Model | None = None,
    changed: Collection[str] = (),
) -> Any:
    """The core graph of `graph`: constants described by `meta`, their bytes from `fetch` as
    each node needs them (a matrix only packed is fetched, packed and let go). With `base`,
    the constants that are base's too (same name and description, not in `changed`; a derived
    one made alike from such) are shared with base's core, not held twice."""
    graph, derived = fold_linear_into_recurrent(graph, meta)
    shared: list[str] = []
    if base is not None:
        _, theirs = fold_linear_into_recurrent(base._graph, base._meta)
        shared = [
            name
            for name in graph.constants
            if (
                name not in derived
                and name not in changed
                and base._meta.get(name) == meta.get(name)
            )
            or (
                name in theirs
                and name in derived
                and _same_derivation(derived[name], theirs[name], changed)
            )
        ]

    failures: list[BaseException] = []

    def source(name: str) -> np.ndarray:
        try:
            made = derived.get(name)
            return fetch(name) if made is None else made[1](fetch)
        except BaseException as error:
            failures.append(error)  # the core raises it again, unchanged
            raise

    described = {**meta, **{name: made[0] for name, made in derived.items()}}
    try:
        return _core.Graph(
            [(s.name, s.dtype, [-1 if d is None else d for d in s.shape]) for s in graph.inputs],
            [
                (
                    name,
                    described[name][0],
                    list(described[name][1]),
                    scales.get(name + SCALE_SUFFIX) if described[name][0] == "int8" else None,
                )
                for name in graph.constants
            ],
            [
                (node.op, list(node.inputs), list(node.outputs), dict(node.attrs), node.source)
                for node in graph.nodes
            ],
            structure_leaves(graph.outputs),
            source,
            None if base is None else base._core,
            shared,
        )
    except ValueError as error:
        if failures and error is failures[-1]:
            raise
        raise GraphError(str(error)) from None


def _same_derivation(ours: Any, theirs: Any, changed: Collection[str]) -> bool:
    """Whether two derived constants are made alike, from originals none of which `changed`:
    the same description, function and arguments (so the same bytes)."""
    (described, made), (their_described, their_made) = ours, theirs
    return (
        described == their_described
        and isinstance(made, partial)
        and isinstance(their_made, partial)
        and (made.func, made.args, made.keywords)
        == (their_made.func, their_made.args, their_made.keywords)
        and not any(isinstance(arg, str) and arg in changed for arg in made.args)
        and not made.keywords
    )


def _as_input(value: Any, name: str, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return np.ascontiguousarray(as_float32(value, name))
    refuse_masked(value, name)
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array (indices), got dtype {array.dtype}")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: index {int(array.max())} does not fit in int64")
    return np.ascontiguousarray(array, dtype=_INT64)


def _check_shape(
    array: np.ndarray,
    name: str,
    shape: list[int | None],
    ranges: list[tuple[int, int, int | None]],
) -> None:
    fits = array.ndim == len(shape) and all(
        d is None or d == n for d, n in zip(shape, array.shape, strict=True)
    )
    if not fits:
        expected = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected} (* = any), got {array.shape}")
    # The captured program holds only for these sizes (a kernel's extent, a branch taken).
    for dim, low, high in ranges:
        size = array.shape[dim]
        if size < low or (high is not None and size > high):
            bound = f"at least {low}" if high is None else f"{low} to {high}"
            raise ValueError(
                f"{name}: dim {dim} is {size}; the converted model holds for {bound} only "
                "(the sizes its captured program was valid for)"
            )


def _rebuild(structure: Structure, results: Iterator[np.ndarray]) -> Any:
    ((kind, value),) = structure.items()
    if kind == "tensor":
        return next(results)
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(_rebuild(part, results) for part in value)
    if kind == "list":
        return [_rebuild(part, results) for part in value]
    return {key: _rebuild(part, results) for key, part in value}


def _rebuild_list(structure: Structure, results: list[np.ndarray]) -> Any:
    """The core's flat outputs in the model's structure (called by the stream bindings)."""
    return _rebuild(structure, iter(results))
