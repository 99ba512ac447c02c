"""Streaming whole models: a model's graph run frame by frame, every stateful op (recurrent
layers, causal convolutions) carrying its state from one call to the next.

``model.stream(batch=None)`` finds the time axis of each input (the free dimension that reaches
the recurrent layers as their sequence axis) and follows it through the graph. A frame is an
input without its time axis; ``step`` takes one frame and returns the model's output for it,
``feed`` takes T frames along the time axis. Ops that would need frames not yet arrived (a
bidirectional layer, a reduction or softmax over time, selecting the last step, a convolution
padded on the right of the current frame) make ``stream()`` raise ValueError naming the op.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core

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

    One stream is one sequence: it must not be used by two threads at once (RuntimeError).
    """

    def __init__(
        self, model: Model, batch: int | None = None, time_axis: int | list[int] | None = None
    ) -> None:
        rows = 1 if batch is None else _batch(batch)
        axes: list[int] | None = None
        if time_axis is not None:
            axes = [time_axis] if isinstance(time_axis, int) else list(time_axis)
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
                raise TypeError(f"time_axis: expected an int or a list of ints, got {time_axis!r}")
            axes = [
                a % max(len(spec.shape), 1)
                for a, spec in zip(axes, model.graph.inputs, strict=False)
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
            super().__init__(model._core, model.graph.outputs, rows, batch is not None, axes, chunk)
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
        """A copy of every stateful op's state, by name ('<op output>.h', '.c', '.frames')."""
        return {name: self._get_state(i) for i, (name, _) in enumerate(self._state_parts())}

    @state.setter
    def state(self, value: dict[str, Any]) -> None:
        parts = self._state_parts()
        names = [name for name, _ in parts]
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            raise ValueError(f"state: expected a dict with exactly the keys {names}")
        for i, (name, _) in enumerate(parts):
            self._set_state(i, np.asarray(value[name], dtype=np.float32))

    def clone(self) -> ModelStream:
        """A fork: the same model, an independent copy of the current state."""
        twin = ModelStream.__new__(ModelStream)
        _core.ModelStream.__init__(twin, self)
        twin._model, twin._batch, twin._time_axis = self._model, self._batch, self._time_axis
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
