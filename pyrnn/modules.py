"""RNN, LSTM and GRU over whole sequences, with torch.nn's constructor, call and shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ._arrays import as_float32, as_state
from ._base import Module
from ._spec import Spec
from .packed import PackedSequence, is_packed, packed_parts, repacked

__all__ = ["GRU", "LSTM", "RNN"]


class _SequenceModule(Module):
    def _run(
        self, input: Any, h0: Any, c0: Any, names: tuple[str, str] = ("hx", "")
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`names` are what errors call h0 and c0: the caller's own argument (RNN/GRU ``hx``,
        LSTM ``hx[0]`` and ``hx[1]``), as cells and torch.nn name them."""
        spec = self._spec
        if is_packed(input):
            return self._run_packed(input, h0, c0, names)
        x = as_float32(input, "input")
        layout = "(N, T, I)" if spec.batch_first else "(T, N, I)"
        if x.ndim not in (2, 3):
            raise ValueError(
                f"input: expected a 2-D (T, I) unbatched or 3-D {layout} batched array, "
                f"got shape {x.shape}"
            )
        batched = x.ndim == 3
        if not batched:
            x = x[:, None, :]
        elif spec.batch_first:
            x = x.transpose(1, 0, 2)
        steps, rows, features = x.shape
        if features != spec.input_size:
            raise ValueError(
                f"input: expected input_size={spec.input_size} features in the last axis, "
                f"got {features}"
            )
        if steps == 0:
            raise ValueError("input: expected a sequence of at least 1 time step, got 0")
        spec.check_run(rows, steps, "input")

        h_shape, c_shape = self._state_shapes(rows)
        h0_array, c0_array = self._initial_state(h0, c0, names, rows, batched)

        features_out = spec.output_size * spec.directions
        if spec.batch_first and batched:  # unbatched (T, I) input ignores batch_first, as torch
            out = np.empty((rows, steps, features_out), np.float32)
            out_view = out.transpose(1, 0, 2)
        else:
            out = out_view = np.empty((steps, rows, features_out), np.float32)
        hn = np.empty(h_shape, np.float32)
        cn = np.empty(c_shape, np.float32) if c_shape is not None else None
        if rows > 0:
            self._network.forward(x, out_view, h0_array, c0_array, hn, cn)
        if not batched:
            out, hn = out[:, 0, :], hn[:, 0, :]
            cn = cn[:, 0, :] if cn is not None else None
        return out, hn, cn

    def _run_packed(
        self, input: Any, h0: Any, c0: Any, names: tuple[str, str]
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """A PackedSequence in, one of the same type out (as torch.nn). hx and h_n are in the
        caller's row order; the core runs the sorted order, longest sequence first."""
        spec = self._spec
        data, batch_sizes, sorted_indices, unsorted_indices = packed_parts(input, "input")
        if data.ndim != 2 or data.shape[1] != spec.input_size:
            raise ValueError(
                f"input.data: expected (S, input_size={spec.input_size}) rows, got shape "
                f"{data.shape}"
            )
        rows, steps = int(batch_sizes[0]), batch_sizes.shape[0]
        spec.check_run(rows, steps, "input")
        h_shape, c_shape = self._state_shapes(rows)
        h0_array, c0_array = self._initial_state(h0, c0, names, rows, True)
        if sorted_indices is not None:  # hx comes in the caller's order
            h0_array = h0_array[:, sorted_indices] if h0_array is not None else None
            c0_array = c0_array[:, sorted_indices] if c0_array is not None else None
        out = np.empty((data.shape[0], spec.output_size * spec.directions), np.float32)
        hn = np.empty(h_shape, np.float32)
        cn = np.empty(c_shape, np.float32) if c_shape is not None else None
        self._network.forward_packed(data, batch_sizes, out, h0_array, c0_array, hn, cn)
        if unsorted_indices is not None:
            hn = hn[:, unsorted_indices]
            cn = cn[:, unsorted_indices] if cn is not None else None
        return repacked(input, out), hn, cn

    def _state_shapes(self, rows: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        """h's (L*D, rows, P) and, for an LSTM, c's (L*D, rows, H)."""
        spec = self._spec
        layers = spec.num_layers * spec.directions
        c_shape = (layers, rows, spec.hidden_size) if spec.base_kind == "lstm" else None
        return (layers, rows, spec.output_size), c_shape

    def _initial_state(
        self, h0: Any, c0: Any, names: tuple[str, str], rows: int, batched: bool
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        h_shape, c_shape = self._state_shapes(rows)
        h0_array = self._state(h0, names[0], h_shape, batched)
        c0_array = self._state(c0, names[1], c_shape, batched) if c_shape is not None else None
        return h0_array, c0_array

    @staticmethod
    def _state(value: Any, name: str, shape: tuple[int, ...], batched: bool) -> np.ndarray | None:
        if value is None:
            return None
        if batched:
            return as_state(value, name, shape)
        # Unbatched input takes (L*D, H) states, as in PyTorch.
        return as_state(value, name, (shape[0], shape[2]))[:, None, :]


class _HiddenStateModule(_SequenceModule):
    """RNN and GRU: one state tensor, ``out, h_n = module(x, hx=None)``."""

    @overload
    def forward(
        self, input: PackedSequence, hx: Any = None
    ) -> tuple[PackedSequence, np.ndarray]: ...
    @overload
    def forward(self, input: Any, hx: Any = None) -> tuple[np.ndarray, np.ndarray]: ...
    def forward(self, input: Any, hx: Any = None) -> tuple[Any, np.ndarray]:
        """A PackedSequence (pyrnn's or torch's) in gives one of the same type out."""
        out, hn, _ = self._run(input, hx, None)
        return out, hn

    if TYPE_CHECKING:  # module(x, hx) is forward(x, hx), typed as such
        __call__ = forward


class RNN(_HiddenStateModule):
    """Elman RNN, h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu.

    ``out, h_n = rnn(x, hx=None)``; shapes and options as torch.nn.RNN. ``dropout`` is accepted
    and ignored (inference). ``seed`` seeds the PyTorch-style uniform initialisation.
    """

    _kind = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        seed: int | None = None,
    ) -> None:
        spec = Spec(
            "rnn",
            input_size,
            hidden_size,
            num_layers,
            nonlinearity,
            bias,
            batch_first,
            dropout,
            bidirectional,
        )
        self._setup(spec, seed)


class GRU(_HiddenStateModule):
    """Gated recurrent unit with torch.nn.GRU's gates (r, z, n) and semantics:
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    ``out, h_n = gru(x, hx=None)``.
    """

    _kind = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        seed: int | None = None,
    ) -> None:
        spec = Spec(
            "gru",
            input_size,
            hidden_size,
            num_layers,
            "tanh",
            bias,
            batch_first,
            dropout,
            bidirectional,
        )
        self._setup(spec, seed)


class LSTM(_SequenceModule):
    """Long short-term memory with torch.nn.LSTM's gates (i, f, g, o) and optional projection
    (``proj_size``: h has proj_size features, c keeps hidden_size).

    ``out, (h_n, c_n) = lstm(x, hx=None | (h0, c0))``.
    """

    _kind = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        seed: int | None = None,
    ) -> None:
        spec = Spec(
            "lstm",
            input_size,
            hidden_size,
            num_layers,
            "tanh",
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
        )
        self._setup(spec, seed)

    @overload
    def forward(
        self, input: PackedSequence, hx: Any = None
    ) -> tuple[PackedSequence, tuple[np.ndarray, np.ndarray]]: ...
    @overload
    def forward(
        self, input: Any, hx: Any = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]: ...
    def forward(self, input: Any, hx: Any = None) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
        """A PackedSequence (pyrnn's or torch's) in gives one of the same type out."""
        h0, c0 = _split_lstm_state(hx, "hx")
        out, hn, cn = self._run(input, h0, c0, ("hx[0]", "hx[1]"))
        assert cn is not None
        return out, (hn, cn)

    if TYPE_CHECKING:  # module(x, hx) is forward(x, hx), typed as such
        __call__ = forward


def _split_lstm_state(hx: Any, name: str) -> tuple[Any, Any]:
    """(h, c) of an LSTM's hx: None (zeros) or a pair of arrays, both given, as torch.nn takes it
    (torch fails on a None inside the pair too)."""
    if hx is None:
        return None, None
    if not isinstance(hx, tuple | list) or len(hx) != 2:
        raise TypeError(f"{name}: expected None or a pair (h, c), got {type(hx).__name__}")
    for index, part in enumerate(("h", "c")):
        if hx[index] is None:
            raise TypeError(
                f"{name}[{index}]: expected an array (the initial {part}), got None; pass both "
                f"h and c, or {name}=None for zero states"
            )
    return hx[0], hx[1]
