"""RNNCell, LSTMCell and GRUCell: one time step, with torch.nn's constructor, call and shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import as_float32, as_state
from ._base import Module
from ._spec import Spec
from .modules import _split_lstm_state

__all__ = ["GRUCell", "LSTMCell", "RNNCell"]


class _CellModule(Module):
    def _step(self, input: Any, h: Any, c: Any) -> tuple[np.ndarray, np.ndarray | None]:
        spec = self._spec
        x = as_float32(input, "input")
        if x.ndim not in (1, 2):
            raise ValueError(
                f"input: expected a 1-D (I,) unbatched or 2-D (N, I) batched array, "
                f"got shape {x.shape}"
            )
        batched = x.ndim == 2
        if not batched:
            x = x[None, :]
        rows, features = x.shape
        if features != spec.input_size:
            raise ValueError(
                f"input: expected input_size={spec.input_size} features in the last axis, "
                f"got {features}"
            )
        spec.check_run(rows, 1, "input")
        is_lstm = spec.base_kind == "lstm"
        h_shape = (rows, spec.hidden_size)
        h0 = self._state(h, "hx[0]" if is_lstm else "hx", h_shape, batched)
        c0 = self._state(c, "hx[1]", h_shape, batched) if is_lstm else None
        hn = np.empty((1, rows, spec.hidden_size), np.float32)
        cn = np.empty((1, rows, spec.hidden_size), np.float32) if is_lstm else None
        if rows > 0:
            out = np.empty((1, rows, spec.hidden_size), np.float32)
            self._network.forward(x[None], out, h0, c0, hn, cn)
        h1 = hn[0] if batched else hn[0, 0]
        c1 = None if cn is None else (cn[0] if batched else cn[0, 0])
        return h1, c1

    @staticmethod
    def _state(value: Any, name: str, shape: tuple[int, int], batched: bool) -> np.ndarray | None:
        if value is None:
            return None
        array = as_state(value, name, shape if batched else shape[1:])
        return array.reshape(1, *shape)


class RNNCell(_CellModule):
    """One Elman RNN step: h' = act(W_ih x + b_ih + W_hh h + b_hh). ``h1 = cell(x, hx=None)``."""

    _kind = "rnn_cell"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        seed: int | None = None,
    ) -> None:
        self._setup(
            Spec("rnn_cell", input_size, hidden_size, nonlinearity=nonlinearity, bias=bias), seed
        )

    def forward(self, input: Any, hx: Any = None) -> np.ndarray:
        return self._step(input, hx, None)[0]

    if TYPE_CHECKING:  # module(x, hx) is forward(x, hx), typed as such
        __call__ = forward


class GRUCell(_CellModule):
    """One GRU step, as torch.nn.GRUCell. ``h1 = cell(x, hx=None)``."""

    _kind = "gru_cell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *, seed: int | None = None
    ) -> None:
        self._setup(Spec("gru_cell", input_size, hidden_size, bias=bias), seed)

    def forward(self, input: Any, hx: Any = None) -> np.ndarray:
        return self._step(input, hx, None)[0]

    if TYPE_CHECKING:  # module(x, hx) is forward(x, hx), typed as such
        __call__ = forward


class LSTMCell(_CellModule):
    """One LSTM step, as torch.nn.LSTMCell. ``h1, c1 = cell(x, hx=None | (h, c))``."""

    _kind = "lstm_cell"

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, *, seed: int | None = None
    ) -> None:
        self._setup(Spec("lstm_cell", input_size, hidden_size, bias=bias), seed)

    def forward(self, input: Any, hx: Any = None) -> tuple[np.ndarray, np.ndarray]:
        h, c = _split_lstm_state(hx, "hx")
        h1, c1 = self._step(input, h, c)
        assert c1 is not None
        return h1, c1

    if TYPE_CHECKING:  # module(x, hx) is forward(x, hx), typed as such
        __call__ = forward
