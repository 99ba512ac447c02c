"""The double-precision C++ oracle (pyrnn._testing.reference_forward) run on a module's own
weights: x (T, N, I), h0 (L*D, N, P), c0 (L*D, N, H) -> (out, hn, cn)."""

from __future__ import annotations

import numpy as np

from pyrnn import _testing
from pyrnn._base import Module, _core_scales, _core_weights


def oracle_forward(
    module: Module, x: np.ndarray, h0: np.ndarray | None = None, c0: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = module._spec
    return _testing.reference_forward(
        *spec.core_network,
        _core_weights(spec, module._parameters),
        np.ascontiguousarray(x, dtype=np.float32),
        h0,
        c0,
        spec.weight_dtype,
        _core_scales(spec, module._parameters),
    )
