"""How many threads pyrnn may use.

One pool of worker threads serves every model. A call uses it only where the work pays for it:
a whole sequence or batch splits its blocks of hidden units (and the directions of a
bidirectional layer) across threads, with one barrier per step; a step of a small model stays
on the calling thread. Results are bit-identical for any thread count.

The default is the number of CPUs this process may run on; PYRNN_NUM_THREADS (read at import)
or set_num_threads change it. Calls from several Python threads at once do not wait for each
other: while one call uses the pool, the others run on their own threads alone."""

from __future__ import annotations

import os
import warnings

from . import _core


def set_num_threads(n: int) -> None:
    """Lets each call use up to `n` threads, the calling one included (1 = never leave it).
    Raises TypeError for a non-integer and ValueError outside [1, 1024]."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if not 1 <= n <= _core.max_threads:
        raise ValueError(f"n: expected an int in [1, {_core.max_threads}], got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads a call may use, the calling one included."""
    return int(_core.get_num_threads())


def _apply_environment() -> None:
    # Like PYRNN_ISA: a bad value does not stop pyrnn; the default stays, and the warning says why.
    value = os.environ.get("PYRNN_NUM_THREADS")
    if value is None or value.strip() == "":
        return
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if not 1 <= threads <= _core.max_threads:
        warnings.warn(
            f"PYRNN_NUM_THREADS: expected an integer in [1, {_core.max_threads}], got {value!r}; "
            f"using {get_num_threads()} threads (the CPUs this process may run on)",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.set_num_threads(threads)


_apply_environment()
