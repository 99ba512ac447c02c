"""Which kernels run: detected CPU features, the ISAs compiled in, and a way to force one.
The choice is made once at import (PYRNN_ISA overrides it) and can be changed with set_isa."""

from __future__ import annotations

from typing import Any

from . import _core

# Choose the kernels now, so that a bad PYRNN_ISA fails at import with a message naming the
# choices rather than at the first forward call.
_core.active_isa()


def available_isas() -> list[str]:
    """ISAs compiled into this build and runnable on this CPU, worst to best ('scalar' first)."""
    return list(_core.available_isas())


def set_isa(name: str) -> None:
    """Forces the kernels of one ISA ('scalar', 'avx2', 'avx512', 'neon') for every module.
    Raises ValueError naming the choices if `name` is unknown or this CPU cannot run it."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str such as 'scalar', got {type(name).__name__}")
    _core.set_isa(name)


def active_isa() -> str:
    """The ISA whose kernels run now."""
    return str(_core.active_isa())


def cpu_info() -> dict[str, Any]:
    """Detected CPU features, compiled and available ISAs, and the active one."""
    return {
        "features": dict(_core.cpu_features()),
        "compiled": list(_core.compiled_isas()),
        "available": available_isas(),
        "active": active_isa(),
    }
