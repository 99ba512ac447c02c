# Type stubs of pyrnn's test hooks (cpp/bindings/testing_module.cpp): not part of the API.
# Shapes: T steps, N rows, I input, H hidden, P output (proj_size or H), L layers, D directions.

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from ._core import Stream, _LayerScales, _LayerWeights

_Float32Array: TypeAlias = npt.NDArray[np.float32]
_Float32Like: TypeAlias = npt.ArrayLike

def set_split_every_step(split: bool) -> None:
    """Split every step across threads, however small (results must not change)."""

def reference_forward(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    proj_size: int,
    weights: Sequence[_LayerWeights],
    x: _Float32Like,  # (T, N, I)
    h0: _Float32Like | None = None,
    c0: _Float32Like | None = None,
    weight_type: str = "fp32",
    scales: Sequence[_LayerScales] | None = None,
) -> tuple[_Float32Array, _Float32Array, _Float32Array]:
    """The double-precision oracle: (out (T, N, D*P), hn (L*D, N, P), cn (L*D, N, H)); cn is
    meaningless unless LSTM."""

def activation(isa: str, name: str, x: _Float32Like) -> _Float32Array:
    """The vectorised activation `name` ("sigmoid" or "tanh") of kernel table `isa`."""

def isa_choice(requested: str | None, features: dict[str, bool]) -> tuple[str, str, str]:
    """(ISA chosen, warning, why `requested` cannot run) on a CPU with `features`."""

def pretend_cpu_features(features: dict[str, bool] | None) -> None:
    """CPU detection reports `features` until called with None (the real CPU again)."""

def count_core_calls(on: bool) -> int:
    """On: count calls computing at once. Off: stop; the most that were at once meanwhile."""

def set_physical_memory(bytes: int | None) -> None:
    """Graph plans see a machine of `bytes` physical memory (None: the real one)."""

def time_steps(stream: Stream, x: np.ndarray, out: np.ndarray, count: int) -> float:
    """Seconds per step of `count` steps of `stream` run back to back in C++."""
