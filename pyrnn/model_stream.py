"""Streaming whole models: a model's graph run frame by frame, every stateful op (recurrent
layers, causal convolutions) carrying its state from one call to the next.

``model.stream(batch=None)`` finds the time axis of each input (the free dimension that reaches
the recurrent layers as their sequence axis) and follows it through the graph. A frame is an
input without its time axis; ``step`` takes one frame and returns the model's output for it,
``feed`` takes T frames along the time axis. Ops that would need frames not yet arrived (a
bidirectional layer, a reduction or softmax over time, selecting the last step, a convolution
padded on the right of the current frame) make ``stream()`` raise ValueError naming the op.

Graph inputs that only feed recurrent initial states (h0, c0 of a graph exported for streaming)
are the stream's state instead of inputs, when a graph output returns the final state in the
same layout: where each element goes is found by running the graph's element moves on numbered
probes, and anything ambiguous is refused naming the input.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from .graph import Graph, InputSpec, Node, structure_leaves

if TYPE_CHECKING:
    from .model import Model

__all__ = ["ModelStream"]

# Frames per planned chunk of feed(): enough rows for the GEMMs to amortise weight reads,
# few enough to keep the chunk's buffers small. Frames beyond whole chunks run one by one.
_CHUNK_ROWS = 128
_MAX_CHUNK = 64


class ModelStream(_core.ModelStream):
    """The state of a whole model for one sequence (``batch=None``: frames without the batch
    axis) or for ``batch`` sequences advanced together.

    * ``step(*frames, out=None)``: one frame per input -> the model's outputs for that frame,
      in the model's output structure (outputs carrying time lose that axis; outputs without
      it, such as a final state, hold their value after this frame). With ``out`` (an array,
      or a list of arrays in output order) nothing is allocated. ``step`` and ``feed`` are the
      C++ methods themselves: no Python runs between the call and the kernels.
    * ``feed(*chunks, out=None)``: T frames per input along its time axis; equals T steps.
    * ``reset(rows=None)``, ``state`` (dict of each stateful op's arrays), ``clone()``.
    * A state input (see the module docstring) takes no frames: ``state`` holds it under its
      name, shaped as the input; it starts at zeros; the outputs returning it give the state
      after each frame.

    One stream is one sequence: it must not be used by two threads at once (RuntimeError).
    """

    def __init__(
        self, model: Model, batch: int | None = None, time_axis: int | list[int] | None = None
    ) -> None:
        rows = 1 if batch is None else _batch(batch)
        try:
            plan = _cached_plan(model)
        except ValueError as error:
            raise ValueError(f"this model cannot stream: {error}") from None
        runs = model if plan is None else plan.model
        axes: list[int] | None = None
        if time_axis is not None:
            axes = [time_axis] if isinstance(time_axis, int) else list(time_axis)
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
                raise TypeError(f"time_axis: expected an int or a list of ints, got {time_axis!r}")
            axes = [
                a % max(len(spec.shape), 1)
                for a, spec in zip(axes, runs.graph.inputs, strict=False)
            ]
        for index, node in enumerate(model.graph.nodes):
            if node.op == "rnn" and ("lengths" in node.attrs or "reverse" in node.attrs):
                # Said before the stream's shape analysis, whose probe batch the lengths' count
                # would not match.
                raise ValueError(
                    f"this model cannot stream: node {index} (rnn; {node.source}): rows of their "
                    "own lengths (ONNX's sequence_lens) need the whole sequence at once"
                )
        chunk = max(1, min(_MAX_CHUNK, _CHUNK_ROWS // rows))
        try:
            super().__init__(runs._core, runs.graph.outputs, rows, batch is not None, axes, chunk)
            self._states = (
                [] if plan is None else _state_inputs(model, plan, rows, self._state_parts())
            )
        except ValueError as error:
            raise ValueError(f"this model cannot stream: {error}") from None
        self._model = model
        self._batch = batch
        self._time_axis = time_axis

    @property
    def batch(self) -> int | None:
        return self._batch

    @property
    def model(self) -> Model:
        return self._model

    def __repr__(self) -> str:
        return f"<pyrnn.ModelStream batch={self._batch} time_axes={self.time_axes}>"

    # -- state ---------------------------------------------------------------------------------
    def reset(self, rows: int | Iterable[int] | None = None) -> None:
        """Zeroes every op's state (recurrent layers return to their initial state): of all
        rows, or only of the given batch rows."""
        if rows is None:
            self._reset()
            return
        if self._batch is None:
            raise ValueError("rows: an unbatched stream has no batch rows; call reset()")
        indices = [rows] if isinstance(rows, int) else list(rows)
        for index in indices:
            index = operator.index(index)
            if not -self._batch <= index < self._batch:
                raise IndexError(
                    f"rows: index {index} is out of range for a stream of batch={self._batch}"
                )
        for index in indices:
            self._reset_row(operator.index(index) % self._batch)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """A copy of every stateful op's state, by name ('<op output>.h', '.c', '.frames'); a
        recurrent state the model takes as an input (h0, c0) under that input's name, in its
        shape (its batch dim the stream's rows)."""
        carried = {i for entry in self._states for i in entry.parts}
        result = {
            name: self._get_state(i)
            for i, (name, _) in enumerate(self._state_parts())
            if i not in carried
        }
        for entry in self._states:
            array = np.zeros(entry.shape, np.float32)
            for i, (mask, positions) in entry.parts.items():
                array.reshape(-1)[positions] = self._get_state(i)[mask]
            result[entry.name] = array
        return result

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        parts = self._state_parts()
        carried = {i for entry in self._states for i in entry.parts}
        names = [name for i, (name, _) in enumerate(parts) if i not in carried]
        names += [entry.name for entry in self._states]
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            raise ValueError(f"state: expected a dict with exactly the keys {names}")
        arrays = {}
        for entry in self._states:
            array = np.asarray(value[entry.name], dtype=np.float32)
            if array.shape != entry.shape:
                raise ValueError(
                    f"state[{entry.name!r}]: expected shape {entry.shape}, got {array.shape}"
                )
            arrays[entry.name] = array.reshape(-1)
        for i, (name, shape) in enumerate(parts):
            if i not in carried:
                self._set_state(i, np.asarray(value[name], dtype=np.float32))
                continue
            part = np.zeros(tuple(shape), np.float32)
            for entry in self._states:
                if i in entry.parts:
                    mask, positions = entry.parts[i]
                    part[mask] = arrays[entry.name][positions]
            self._set_state(i, part)

    def clone(self) -> ModelStream:
        """A fork: the same model, an independent copy of the current state."""
        twin = ModelStream.__new__(ModelStream)
        _core.ModelStream.__init__(twin, self)
        twin._model, twin._batch, twin._time_axis = self._model, self._batch, self._time_axis
        twin._states = self._states
        return twin

    def __copy__(self) -> ModelStream:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelStream:
        return self.clone()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self._model, self._batch, self._time_axis, self.state))


def _restore(
    model: Model, batch: int | None, time_axis: Any, state: dict[str, np.ndarray]
) -> ModelStream:
    stream = ModelStream(model, batch, time_axis)
    stream.state = state
    return stream


def _batch(batch: Any) -> int:
    if isinstance(batch, bool):
        raise TypeError(f"batch: expected None or an int >= 1, got bool {batch!r}")
    try:
        value = operator.index(batch)
    except TypeError:
        raise TypeError(
            f"batch: expected None or an int >= 1, got {type(batch).__name__} {batch!r}"
        ) from None
    if not 1 <= value <= 2**31 - 1:
        raise ValueError(f"batch: expected an int in [1, 2**31-1], got {value}")
    return value


def _outs(out: Any) -> Any:
    if out is None or isinstance(out, list | tuple):
        return out
    return [out]


# -- graph inputs that are a recurrent node's initial state ------------------------------------
# Ops that only move elements (no arithmetic): a state input reaches its recurrent node, and the
# node's final state reaches a graph output, through these alone.
_MOVES = frozenset(
    {"identity", "reshape", "squeeze", "unsqueeze", "flatten", "permute", "slice", "select", "cat"}
)
_INT_OPS = frozenset({"size", "int_add", "int_sub", "int_mul", "int_floordiv"})


@dataclass
class _StateInput:
    """A graph input the stream carries as state: its name, shape at the stream's rows, and for
    each recurrent state part it fills, the flat positions of the input it takes them from."""

    name: str
    shape: tuple[int, ...]
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class _StatePlan:
    model: Model  # the graph without its state inputs
    inputs: list[str]  # names of the state inputs, in the graph's order
    uses: dict[tuple[int, int], str]  # (node index, operand 1 or 2) -> the value it took


def _state_plan(model: Model) -> _StatePlan | None:
    """The model without the graph inputs that only feed recurrent nodes' initial states (h0,
    c0), which the stream carries instead; None when there are none. Raises ValueError for an
    input that feeds an initial state and anything else."""
    graph = model.graph
    constants = set(graph.constants)
    found: list[str] = []
    uses: dict[tuple[int, int], str] = {}
    removed: set[int] = set()
    for spec in graph.inputs:
        derived = {spec.name}
        chain: list[int] = []
        rnn_uses: list[tuple[int, int]] = []
        other: list[str] = []
        for index, node in enumerate(graph.nodes):
            names = [x for x in node.inputs if isinstance(x, str)]
            if not any(x in derived for x in names):
                continue
            if node.op in _MOVES | _INT_OPS and all(x in derived or x in constants for x in names):
                chain.append(index)
                derived.update(node.outputs)
                continue
            for position, operand in enumerate(node.inputs):
                if operand not in derived:
                    continue
                if node.op == "rnn" and position in (1, 2):
                    rnn_uses.append((index, position))
                else:
                    other.append(f"node {index} ({node.op}; {node.source})")
        if not rnn_uses:
            continue
        if any(name in derived for name in structure_leaves(graph.outputs)):
            other.append("a graph output")
        if other:
            first = rnn_uses[0][0]
            raise ValueError(
                f"input {spec.name!r}: it is the initial state of node {first} (rnn; "
                f"{graph.nodes[first].source}) and is also used by {other[0]}, so the stream "
                "cannot carry it as that node's state; run the model whole"
            )
        found.append(spec.name)
        removed.update(chain)
        for index, position in rnn_uses:
            uses[(index, position)] = str(graph.nodes[index].inputs[position])
    if not found:
        return None
    nodes = []
    for index, node in enumerate(graph.nodes):
        if index in removed:
            continue
        operands = [
            None if (index, position) in uses else operand
            for position, operand in enumerate(node.inputs)
        ]
        nodes.append(Node(node.op, operands, list(node.outputs), dict(node.attrs), node.source))
    inputs = [spec for spec in graph.inputs if spec.name not in found]
    if not inputs:
        raise ValueError("every input is a recurrent node's initial state; nothing to stream")
    stateless = Graph(
        inputs,
        graph.outputs,
        list(graph.constants),
        nodes,
        graph.weight_dtype,
        list(graph.quantized),
    )
    return _StatePlan(_sharing(model, stateless), found, uses)


def _sharing(model: Model, graph: Graph) -> Model:
    """A model of `graph` on `model`'s weights: its core shares the copies and packed weights of
    `model`'s core."""
    from .model import Model

    result = Model.__new__(Model)
    graph.validate()
    result._build(graph, model._meta, model._core.constant, model._scales, base=model)
    return result


def _moves_from(model: Model, inputs: list[InputSpec], wanted: list[str] | None) -> Model:
    """The part of `model`'s graph computed from `inputs` through element moves alone, as a
    model of those inputs returning `wanted` (None: the graph outputs it computes)."""
    from .model import Model

    graph = model.graph
    known = {spec.name for spec in inputs}
    constants = set(graph.constants)
    nodes = []
    for node in graph.nodes:
        names = [x for x in node.inputs if isinstance(x, str)]
        if (
            node.op in _MOVES | _INT_OPS
            and any(x in known for x in names)
            and all(x in known or x in constants for x in names)
        ):
            nodes.append(node)
            known.update(node.outputs)
    if wanted is None:
        wanted = [name for name in structure_leaves(graph.outputs) if name in known]
    used = sorted({x for node in nodes for x in node.inputs if isinstance(x, str)} & constants)
    sub = Graph(inputs, {"tuple": [{"tensor": name} for name in wanted]}, used, nodes)
    sub.validate()
    result = Model.__new__(Model)
    result._build(sub, {name: model._meta[name] for name in used}, model._core.constant, {})
    return result


_PLANS: weakref.WeakKeyDictionary[Model, tuple[Any, _StatePlan | None]] = (
    weakref.WeakKeyDictionary()
)


def _cached_plan(model: Model) -> _StatePlan | None:
    """_state_plan, made once per model and weights (load_state_dict makes a new core)."""
    cached = _PLANS.get(model)
    if cached is not None and cached[0] is model._core:
        return cached[1]
    plan = _state_plan(model)
    _PLANS[model] = (model._core, plan)
    return plan


def _state_inputs(
    model: Model, plan: _StatePlan, rows: int, parts: list[tuple[str, Any]]
) -> list[_StateInput]:
    """Where each element of each state input goes in the stream's recurrent states, found by
    running the graph's element moves on numbered probes; refuses (ValueError naming the
    input) unless every element lands in exactly one place, every state element comes from one,
    and a graph output returns the final state in the input's own layout."""
    graph = model.graph
    specs = {spec.name: spec for spec in graph.inputs}
    probes: list[np.ndarray] = []
    bounds: list[tuple[int, int]] = []
    total = 0
    for name in plan.inputs:
        spec = specs[name]
        free = [d for d, n in enumerate(spec.shape) if n is None]
        if len(free) > 1:
            raise ValueError(
                f"input {name!r}: a recurrent initial state with {len(free)} free dims "
                f"{spec.shape}; a state input may leave only its batch dim free"
            )
        shape = tuple(rows if n is None else n for n in spec.shape)
        size = math.prod(shape)
        probes.append(np.arange(total + 1, total + size + 1, dtype=np.float64).reshape(shape))
        bounds.append((total, total + size))
        total += size
    if total >= 2**24:  # the probes' numbers must be exact in float32
        raise ValueError(f"inputs {plan.inputs}: state inputs of {total} elements are too large")

    def owner(code: float) -> str:
        for name, (low, high) in zip(plan.inputs, bounds, strict=True):
            if low < code <= high:
                return name
        return plan.inputs[0]

    # Forward: where each input element lands in the initial states.
    targets = sorted(set(plan.uses.values()))
    inputs = [
        InputSpec(name, "float32", list(p.shape))
        for name, p in zip(plan.inputs, probes, strict=True)
    ]
    sub = _moves_from(model, inputs, targets)
    value_of = dict(zip(targets, _run(sub, probes), strict=True))
    part_index = {name: i for i, (name, _) in enumerate(parts)}
    codes: dict[int, np.ndarray] = {}
    origin: dict[int, tuple[int, int]] = {}
    for (index, position), value in sorted(plan.uses.items()):
        node = graph.nodes[index]
        letter = "h" if position == 1 else "c"
        key = f"{node.outputs[0]}.{letter}"
        if key not in part_index:
            raise ValueError(f"node {index} (rnn; {node.source}): no stream state {key!r}")
        i = part_index[key]
        shape = tuple(parts[i][1])
        array = value_of[value]
        name = owner(float(array.reshape(-1)[0])) if array.size else plan.inputs[0]
        if array.shape != shape:
            raise ValueError(
                f"input {name!r}: the initial {letter} it gives node {index} (rnn; {node.source}) "
                f"has shape {array.shape} for {rows} rows; the stream's state has shape {shape}"
            )
        if np.any(array == 0):
            raise ValueError(
                f"input {name!r}: it gives only part of the initial {letter} of node {index} "
                f"(rnn; {node.source})"
            )
        codes[i] = array
        origin[i] = (index, position)
    flat = np.concatenate([c.reshape(-1) for c in codes.values()])
    seen, counts = np.unique(flat, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            f"input {owner(float(seen[counts > 1][0]))!r}: it is the initial state of more than "
            "one recurrent node (or twice of one); the stream would not know which final state "
            "to carry"
        )
    missing = np.setdiff1d(np.arange(1, total + 1), seen)
    if missing.size:
        raise ValueError(
            f"input {owner(float(missing[0]))!r}: some of its elements reach no recurrent "
            "initial state"
        )

    # Backward: the graph outputs made from the final states, numbered as their initial ones.
    finals = []
    for i, (index, position) in origin.items():
        finals.append((graph.nodes[index].outputs[position], codes[i]))
    back = _moves_from(model, [InputSpec(n, "float32", list(c.shape)) for n, c in finals], None)
    returned = _run(back, [c for _, c in finals])
    result = []
    for name, probe, (low, high) in zip(plan.inputs, probes, bounds, strict=True):
        if not any(r.shape == probe.shape and np.array_equal(r, probe) for r in returned):
            raise ValueError(
                f"input {name!r}: it is a recurrent node's initial state, but no graph output "
                "returns that node's final state (Y_h / Y_c) in the input's layout, so a stream "
                "could not carry it; run the model whole"
            )
        entry = _StateInput(name, probe.shape)
        for i, array in codes.items():
            mask = (array > low) & (array <= high)
            if mask.any():
                entry.parts[i] = (mask, (array[mask] - low - 1).astype(np.intp))
        result.append(entry)
    return result


def _run(model: Model, probes: list[np.ndarray]) -> list[np.ndarray]:
    """The moves on the probes, checked to only move them (negated probes come out negated)."""
    plain = model(*[p.astype(np.float32) for p in probes])
    negated = model(*[(-p).astype(np.float32) for p in probes])
    results = [np.asarray(r, np.float64) for r in plain]
    for r, n in zip(results, negated, strict=True):
        if not np.array_equal(-r, np.asarray(n, np.float64)) or np.any(r != np.round(r)):
            raise ValueError(
                "a recurrent initial state is computed, not only rearranged, from inputs"
            )
    return results
