# Type stubs of pyrnn's C++ extension (cpp/bindings/*.cpp): the packed network, the C++ half of
# pyrnn.Stream, model graphs and their streams, ISA dispatch, and the machine probe used by
# `pyrnn bench` (test hooks live in pyrnn._testing). Shapes: T steps, N rows, I input,
# H hidden, P output (proj_size or H), L layers, D directions. Arrays taken as float32 are
# converted by pybind11 when they are not already.

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, overload

import numpy as np
import numpy.typing as npt

_Float32Array: TypeAlias = npt.NDArray[np.float32]
_Float32Like: TypeAlias = npt.ArrayLike
# (w_ih, w_hh, b_ih, b_hh, w_hr) of one (layer, direction), in PyTorch's layouts.
_LayerWeights: TypeAlias = tuple[
    _Float32Like, _Float32Like, _Float32Like | None, _Float32Like | None, _Float32Like | None
]
# (s_ih, s_hh, s_hr) of one (layer, direction) of an int8 network: one float32 scale per row.
_LayerScales: TypeAlias = tuple[_Float32Like, _Float32Like, _Float32Like | None]

class Network:
    """A packed, immutable recurrent network."""

    def __init__(
        self,
        kind: str,  # "rnn_tanh", "rnn_relu", "lstm" or "gru"
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        proj_size: int,
        weights: Sequence[_LayerWeights],  # L*D entries, layer-major
        weight_type: str = "fp32",  # "fp32", "fp16", "bf16" or "int8"
        scales: Sequence[_LayerScales] | None = None,  # int8 only, L*D entries
    ) -> None:
        """Matrices of a narrow weight_type are arrays of its storage dtype (float16; uint16
        holding bfloat16 bits; int8), C-contiguous, never converted; biases are float32."""
    def unpack(self, entry: int, role: str) -> np.ndarray:
        """Matrix role ("w_ih", "w_hh", "w_hr") of (layer, direction) entry, read back from
        the packed panels bit-exactly: a fresh (rows, k) array of the storage dtype."""
    @property
    def weight_type(self) -> str: ...
    def forward(
        self,
        x: np.ndarray,  # (T, N, I) float32, unit stride on the last axis
        out: np.ndarray,  # (T, N, D*P) float32, written
        h0: _Float32Like | None,  # (L*D, N, P)
        c0: _Float32Like | None,  # (L*D, N, H), LSTM only
        hn: _Float32Array,  # (L*D, N, P), written
        cn: _Float32Array | None,  # (L*D, N, H), written, required for LSTM
    ) -> None: ...
    def forward_packed(
        self,
        data: np.ndarray,  # (S, I) float32 packed rows, unit stride on the last axis
        batch_sizes: Any,  # (T,) int64: rows of step t, N = batch_sizes[0] >= ... >= 1
        out: np.ndarray,  # (S, D*P) float32, written
        h0: _Float32Like | None,  # (L*D, N, P), rows sorted longest first
        c0: _Float32Like | None,  # (L*D, N, H), LSTM only
        hn: _Float32Array,  # (L*D, N, P), written
        cn: _Float32Array | None,  # (L*D, N, H), written, required for LSTM
    ) -> None: ...

class NetworkBuilder:
    """Packs a Network one weight matrix at a time."""

    def __init__(
        self,
        kind: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        proj_size: int,
        weight_type: str = "fp32",
    ) -> None: ...
    def pack(
        self,
        entry: int,  # (layer, direction), layer-major
        role: str,  # "w_ih", "w_hh" or "w_hr"
        matrix: np.ndarray,  # float32, or the storage dtype of a narrow weight_type
        scales: _Float32Like | None = None,  # int8 only: one per row
    ) -> None: ...
    def build(
        self, biases: Sequence[tuple[_Float32Like | None, _Float32Like | None]]
    ) -> Network: ...

class Stream:
    """The C++ half of pyrnn.Stream: state of every layer for N rows."""

    @overload
    def __init__(self, network: Network, rows: int, batched: bool, batch_first: bool) -> None: ...
    @overload
    def __init__(self, other: Stream) -> None: ...
    def step(self, x: Any, out: np.ndarray | None = None) -> _Float32Array:
        """One step: x (I,) or (N, I) -> the top layer's output (P,) or (N, P), written into
        out when given (out shares no memory with x, or is x itself)."""
    def feed(self, x: Any, out: np.ndarray | None = None) -> _Float32Array:
        """T steps: (T, I), (T, N, I) or, batch_first, (N, T, I) -> outputs in that layout,
        written into out when given (out shares no memory with x, or is x itself)."""
    @property
    def rows(self) -> int: ...
    @property
    def batched(self) -> bool: ...
    @property
    def batch_first(self) -> bool: ...
    @property
    def chunk_steps(self) -> int: ...
    @property
    def _tiny(self) -> bool:
        """Whether step and feed run the tiny kernels (one row of a small network)."""
    def _reset(self) -> None: ...
    def _reset_row(self, row: int, /) -> None: ...
    def _get_state(self) -> tuple[_Float32Array, _Float32Array | None]:
        """(h (L, N, P), c (L, N, H) or None)."""
    def _set_state(self, h: _Float32Like, c: _Float32Like | None) -> None: ...

# -- model graphs -----------------------------------------------------------------------------
# A node: (op, operands (value name, int literal or None), output names, attrs, source).
_Node: TypeAlias = tuple[str, list[str | int | None], list[str], dict[str, Any], str]

class Graph:
    """A model graph built and checked by the core; plans cached per input shape."""

    def __init__(
        self,
        inputs: list[Any],  # (name, dtype 'float32'|'int64', dims with -1 where free)
        # (name, dtype 'float32'|'int64'|'fp16'|'bf16'|'int8', shape, int8: float32 scales
        # per row, else None)
        constants: list[Any],
        nodes: list[Any],  # _Node each
        outputs: Sequence[str],
        # name -> the constant as a C-contiguous array of its storage dtype, called when a
        # node first needs it (a matrix only packed is let go once packed)
        fetch: Callable[[str], np.ndarray],
        # a Graph whose constants named in `shared` hold the same bytes: this one shares its
        # copies and packed panels of them
        base: Graph | None = None,
        shared: Sequence[str] = (),
    ) -> None: ...
    def constant(self, name: str) -> np.ndarray:
        """A fresh array of constant `name`: its copy, or read back from the packed panels."""
    def forward(self, inputs: list[Any]) -> list[np.ndarray]:
        """Every output, for C-contiguous arrays of the declared dtypes."""
    def infer(self, inputs: Sequence[tuple[str, Sequence[int]]]) -> dict[str, Any]:
        """Each named value's shape (or an int's value) for inputs (dtype, shape): shape
        inference only, nothing allocated; ValueError if a shape does not fit or any tensor
        would exceed physical memory."""
    @property
    def cached_plans(self) -> int: ...

class ModelStream:
    """The C++ half of pyrnn.ModelStream: a model's graph planned frame by frame."""

    @overload
    def __init__(
        self,
        graph: Graph,
        structure: Any,
        rows: int,
        batched: bool,
        time_axes: Sequence[int] | None,
        chunk: int,
    ) -> None: ...
    @overload
    def __init__(self, other: ModelStream) -> None: ...
    def step(self, *frames: Any, out: Any = None) -> Any:
        """One frame of every input -> the outputs for it, in the model's structure."""
    def feed(self, *chunks: Any, out: Any = None) -> Any:
        """T frames of every input along its time axis -> every frame's outputs."""
    @property
    def rows(self) -> int: ...
    @property
    def time_axes(self) -> list[int]: ...
    @property
    def output_time_axes(self) -> list[int]: ...
    def _reset(self) -> None: ...
    def _reset_row(self, row: int, /) -> None: ...
    def _state_parts(self) -> list[tuple[str, list[int]]]: ...
    def _get_state(self, index: int, /) -> _Float32Array: ...
    def _set_state(self, index: int, data: _Float32Like, /) -> None: ...
    def _shape(self, input: bool, index: int, frames: int, /) -> list[int]: ...

# -- ISA dispatch -----------------------------------------------------------------------------
def available_isas() -> list[str]: ...
def compiled_isas() -> list[str]: ...
def active_isa() -> str: ...
def isa_environment_warning() -> str:
    """Why PYRNN_ISA was not followed and what runs instead; '' if it was, or is unset."""

def set_isa(name: str) -> None: ...
def cpu_features() -> dict[str, bool]: ...
def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
def available_cpus() -> int: ...

max_threads: int

def _probe_isas() -> list[str]: ...
def _probe_fma_peak(seconds: float, isa: str = "") -> dict[str, Any]:
    """{"gflops": float, "isa": str}"""

def _probe_read_bandwidth(bytes: int, seconds: float, isa: str = "") -> dict[str, Any]:
    """{"gbytes_per_s": float, "bytes": int, "isa": str}"""
