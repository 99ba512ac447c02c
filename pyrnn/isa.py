"""Which kernels run: detected CPU features, the ISAs compiled in, and a way to force one.
The choice is made once at import (PYRNN_ISA overrides it, when this build and CPU can run the
ISA it names) and can be changed with set_isa."""

from __future__ import annotations

import warnings
from typing import Any

from . import _core

# Choose the kernels now. A PYRNN_ISA this build or CPU cannot run does not stop pyrnn (nor
# `pyrnn --help` / `pyrnn info`): the best available ISA runs instead, and the warning says why.
_core.active_isa()
if _core.isa_environment_warning():
    warnings.warn(_core.isa_environment_warning(), RuntimeWarning, stacklevel=1)


def available_isas() -> list[str]:
    """ISAs compiled into this build and runnable on this CPU, worst to best ('scalar' first)."""
    return list(_core.available_isas())


def set_isa(name: str) -> None:
    """Forces the kernels of one ISA ('scalar', 'avx2', 'avx512', 'neon') for every module.
    Raises ValueError saying why one cannot run: an unknown name (the choices are listed), an
    ISA not built for this architecture or not compiled in, or one this CPU does not support
    (the missing features are named)."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str such as 'scalar', got {type(name).__name__}")
    _core.set_isa(name)


def active_isa() -> str:
    """The ISA whose kernels run now."""
    return str(_core.active_isa())


def cpu_info() -> dict[str, Any]:
    """Detected CPU features, compiled and available ISAs, the active one, the CPUs this process
    may run on and the threads a call may use."""
    return {
        "features": dict(_core.cpu_features()),
        "compiled": list(_core.compiled_isas()),
        "available": available_isas(),
        "active": active_isa(),
        "cpus": int(_core.available_cpus()),
        "threads": int(_core.get_num_threads()),
    }
