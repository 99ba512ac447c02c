"""Streams: a module's recurrent state carried across calls, advanced one step or one chunk of
steps at a time, for inputs that arrive over time (audio frames, sensor readings, ticks).

``step`` and ``feed`` are the C++ methods themselves (no Python frame in between), so
``s.step(x, out=y)`` costs well under a microsecond on top of the arithmetic and allocates
nothing. Everything else here is convenience around the state.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._arrays import as_state

if TYPE_CHECKING:
    from ._base import Module

__all__ = ["Stream"]

State = np.ndarray | tuple[np.ndarray, np.ndarray]

_ROW_LIMIT = 2**31 - 1  # the core counts rows with int


class Stream(_core.Stream):
    """The state of every layer of ``module`` for one conversation (``batch=None``) or for
    ``batch`` independent ones advanced together, plus preallocated scratch.

    Made by ``module.stream(batch=None)``. Shapes (I input_size, P output size, L layers):

    * ``step(x, out=None)``: x ``(I,)`` or ``(batch, I)`` -> the top layer's output ``(P,)`` or
      ``(batch, P)``, written into ``out`` when given (then nothing is allocated).
    * ``feed(x, out=None)``: T steps at once, ``(T, I)``, ``(T, batch, I)`` or with
      ``batch_first`` ``(batch, T, I)`` -> outputs of every step in the same layout. Results
      equal T single steps and one forward() over the sequence.
    * ``out`` shares no memory with ``x`` (ValueError), or is ``x`` itself: a feed reads its
      input a chunk at a time, so a shifted ``out`` would overwrite inputs not yet read.
    * ``state``: h in torch's ``h_n`` layout ``(L, [batch,] P)`` (cells: ``([batch,] H)``);
      LSTMs give and take ``(h, c)``.

    The module's weights are shared read-only: any number of streams may run on any number of
    threads. One stream is one sequence, so it must not be used by two threads at once: doing
    so raises RuntimeError rather than corrupting its state (``clone()`` gives each thread its
    own). A stream keeps the weights it was made with even if the module is reloaded later.

    After ``os.fork()`` the child's copy of a stream is usable even if another thread of the
    parent was running a step or feed on it at that moment (that thread does not exist in the
    child). Its state is then whatever the parent's was at the fork: a feed interrupted half-way
    leaves some steps applied and others not, so call ``reset()`` or set ``state`` in the child
    unless no other thread could have been using the stream.
    """

    def __init__(self, module: Module, batch: int | None = None) -> None:
        # getattr, not self.__dict__: reading __dict__ would make every later attribute lookup on
        # the stream slower (CPython then keeps the attributes in a real dict), s.step included.
        if getattr(self, "_module", None) is not None:
            # The C++ half cannot be rebuilt in place (pybind11 ignores a second __init__), so
            # re-running __init__ would leave the old stream under new Python attributes.
            raise TypeError(
                "a Stream cannot be re-initialised; make a new one with module.stream()"
            )
        spec = module._spec
        if spec.bidirectional:
            raise ValueError(
                f"{module!r}: a bidirectional module cannot stream: its backward direction "
                "reads the sequence from the end, so no output exists before the whole "
                "sequence has arrived. Run whole sequences through forward() instead."
            )
        if batch is not None:
            if isinstance(batch, bool):
                raise TypeError(f"batch: expected None or an int >= 1, got bool {batch!r}")
            try:
                batch = operator.index(batch)
            except TypeError:
                raise TypeError(
                    f"batch: expected None or an int >= 1, got {type(batch).__name__} {batch!r}"
                ) from None
            if batch < 1:
                raise ValueError(f"batch: expected None or an int >= 1, got {batch}")
            if batch > _ROW_LIMIT:
                raise ValueError(
                    f"batch: expected at most 2**31-1 rows (the core's limit), got {batch}"
                )
        spec.check_run(1 if batch is None else batch, None, "batch")
        super().__init__(
            module._network, 1 if batch is None else batch, batch is not None, spec.batch_first
        )
        self._adopt(module, module._parameters, batch)

    def _adopt(
        self, module: Module, parameters: Mapping[str, np.ndarray], batch: int | None
    ) -> None:
        self._module = module
        # The weights in use (read back from their packed network), even if the module is
        # reloaded later.
        self._parameters = parameters
        self._spec = module._spec
        self._batch = batch

    # -- facts ----------------------------------------------------------------------------------
    @property
    def batch(self) -> int | None:
        """None for an unbatched stream, else the number of rows advanced together."""
        return self._batch

    @property
    def module(self) -> Module:
        """The module this stream was made from."""
        return self._module

    def __repr__(self) -> str:
        batch = "" if self._batch is None else f"batch={self._batch}"
        return f"{self._module!r}.stream({batch})"

    # -- state ----------------------------------------------------------------------------------
    def reset(self, rows: int | Iterable[int] | None = None) -> None:
        """Zeroes the state of every layer: of all rows, or only of the given batch rows (a slot
        re-used for a new conversation). Rows are checked before anything changes."""
        if rows is None:
            self._reset()
            return
        if self._batch is None:
            raise ValueError("rows: an unbatched stream has no batch rows; call reset()")
        if isinstance(rows, bool):
            raise TypeError(f"rows: expected an int or a sequence of ints, got bool {rows!r}")
        try:
            indices = [operator.index(rows)]  # type: ignore[arg-type]  # iterables fall through
        except TypeError:
            try:
                indices = [operator.index(row) for row in rows]  # type: ignore[union-attr]
            except TypeError:
                raise TypeError(
                    f"rows: expected an int or a sequence of ints, got {rows!r}"
                ) from None
        for index in indices:
            if not -self._batch <= index < self._batch:
                raise IndexError(
                    f"rows: index {index} is out of range for a stream of batch={self._batch}"
                )
        for index in indices:
            self._reset_row(index % self._batch)

    @property
    def state(self) -> State:
        """A copy of the state: h, or (h, c) for LSTMs, laid out as the module's forward takes
        its initial state (``(L, [batch,] P)`` for sequences, ``([batch,] H)`` for cells)."""
        h, c = self._get_state()
        h, c = self._to_user(h), None if c is None else self._to_user(c)
        return h if c is None else (h, c)

    @state.setter
    def state(self, value: Any) -> None:
        is_lstm = self._spec.base_kind == "lstm"
        if is_lstm:
            if not isinstance(value, tuple | list) or len(value) != 2:
                raise TypeError(
                    f"state: expected a pair (h, c) for an LSTM stream, got {type(value).__name__}"
                )
            h, c = value
            for index, part in enumerate((h, c)):
                if part is None:
                    raise TypeError(
                        f"state[{index}]: expected an array, got None; an LSTM stream's state "
                        "is the pair (h, c), both given (reset() zeroes it)"
                    )
            hidden = self._spec.hidden_size
            self._set_state(
                self._from_user(h, "state[0]", self._spec.output_size),
                self._from_user(c, "state[1]", hidden),
            )
        else:
            if value is None:
                raise TypeError("state: expected an array, got None (reset() zeroes the state)")
            self._set_state(self._from_user(value, "state", self._spec.output_size), None)

    def _user_shape(self, features: int) -> tuple[int, ...]:
        rows = () if self._batch is None else (self._batch,)
        layers = () if self._spec.is_cell else (self._spec.num_layers,)
        return (*layers, *rows, features)

    def _to_user(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(self._user_shape(array.shape[-1]))

    def _from_user(self, value: Any, name: str, features: int) -> np.ndarray:
        array = as_state(value, name, self._user_shape(features))
        return array.reshape(self._spec.num_layers, self.rows, features)

    # -- forks, copies, pickles -----------------------------------------------------------------
    def clone(self) -> Stream:
        """A fork: the same weights, an independent copy of the current state."""
        twin = Stream.__new__(Stream)
        _core.Stream.__init__(twin, self)
        twin._adopt(self._module, self._parameters, self._batch)
        return twin

    def __copy__(self) -> Stream:
        return self.clone()

    def __deepcopy__(self, memo: dict[int, Any]) -> Stream:
        # The weights are immutable and shared; only the state is copied.
        return self.clone()

    def __reduce__(self) -> tuple[Any, ...]:
        module = self._module
        if module._parameters is not self._parameters:  # the module was reloaded since
            module = type(module)._from_state_dict(self._spec, self._parameters)
        return (_restore, (module, self._batch, self.state))


def _restore(module: Module, batch: int | None, state: State) -> Stream:
    stream = Stream(module, batch)
    stream.state = state
    return stream
