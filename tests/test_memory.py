"""The memory guard: modules, forwards and streams that would not fit in this machine's physical
memory are refused before anything is allocated, and the estimate behind it is an upper bound of
what really is allocated (peak resident memory measured by tests/peak_memory.py), yet close
enough not to refuse models that fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyrnn
from pyrnn import _spec
from pyrnn._spec import Spec

MiB = 2**20
PROBE = Path(__file__).parent / "peak_memory.py"

# Every kind, 1 to 10^4 layers, hidden sizes 1 to 512, with and without bias, bidirectional and
# projected, built by random init, loaded from a file and unpickled, then run and streamed.
_BUILD = [
    {"kind": kind, "input_size": 1, "hidden_size": hidden, "num_layers": layers}
    for kind in ("rnn", "lstm", "gru")
    for layers, hidden in ((1, 1), (10**4, 1), (100, 17), (30, 64), (2, 512))
]
_SHAPES: list[dict[str, Any]] = [
    *({**case, "action": "build"} for case in _BUILD),
    *(
        {"kind": "lstm", "input_size": 7, "hidden_size": 33, "num_layers": 300,
         "bidirectional": True, "proj_size": 5, "action": action}
        for action in ("build", "load", "unpickle")
    ),
    {"kind": "gru", "input_size": 1, "hidden_size": 1, "num_layers": 5000,
     "bidirectional": True, "action": "load"},
    {"kind": "rnn", "input_size": 3, "hidden_size": 3, "num_layers": 3000, "bias": False,
     "action": "unpickle"},
    {"kind": "rnn", "input_size": 10**5, "hidden_size": 1, "action": "build"},
    {"kind": "lstm", "input_size": 9, "hidden_size": 65, "num_layers": 2, "proj_size": 63,
     "action": "load"},
    {"kind": "rnn_cell", "input_size": 200, "hidden_size": 300, "action": "build"},
    {"kind": "lstm_cell", "input_size": 200, "hidden_size": 300, "action": "load"},
    {"kind": "gru_cell", "input_size": 1, "hidden_size": 512, "bias": False, "action": "build"},
    # Runs: the module exists; only the forward or the stream is measured.
    {"kind": "lstm", "input_size": 1, "hidden_size": 1, "num_layers": 10**4, "action": "forward",
     "rows": 1, "steps": 3},
    {"kind": "lstm", "input_size": 40, "hidden_size": 128, "num_layers": 3,
     "bidirectional": True, "action": "forward", "rows": 16, "steps": 500},
    {"kind": "gru", "input_size": 40, "hidden_size": 128, "num_layers": 3, "action": "forward",
     "rows": 64, "steps": 300},
    {"kind": "rnn", "input_size": 5, "hidden_size": 17, "num_layers": 2, "bidirectional": True,
     "action": "forward", "rows": 3, "steps": 50},
    {"kind": "lstm", "input_size": 8, "hidden_size": 64, "num_layers": 2, "proj_size": 16,
     "action": "forward", "rows": 200, "steps": 10},
    {"kind": "gru_cell", "input_size": 16, "hidden_size": 64, "action": "forward", "rows": 5000,
     "steps": 1},
    {"kind": "lstm", "input_size": 1, "hidden_size": 1, "num_layers": 10**4, "action": "stream",
     "rows": 1},
    {"kind": "lstm", "input_size": 40, "hidden_size": 128, "num_layers": 20, "action": "stream",
     "rows": 500},
    {"kind": "gru", "input_size": 3, "hidden_size": 64, "num_layers": 2, "action": "stream",
     "rows": 1},
]  # fmt: skip


def _estimate(case: dict[str, Any]) -> int:
    spec = Spec(
        case["kind"],
        case["input_size"],
        case["hidden_size"],
        num_layers=case.get("num_layers", 1),
        bias=case.get("bias", True),
        bidirectional=case.get("bidirectional", False),
        proj_size=case.get("proj_size", 0),
    )
    if case["action"] == "forward":
        return spec.run_bytes(case["rows"], case["steps"])
    if case["action"] == "stream":
        return spec.run_bytes(case["rows"], None)
    return spec.module_bytes


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux /proc"
)
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer's allocator (redzones, quarantine, shadow memory) is not the one "
    "the estimate describes",
)
def test_estimate_bounds_the_measured_peak_memory() -> None:
    result = subprocess.run(
        [sys.executable, str(PROBE)],
        input=json.dumps(_SHAPES),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    wrong = []
    for case, peak in zip(_SHAPES, measured, strict=True):
        estimate = _estimate(case)
        # Never less than the real peak; at most 4x it plus 1 MiB, so that models which fit
        # are not refused.
        if not peak <= estimate <= 4 * peak + MiB:
            wrong.append(f"{case}: measured {peak / MiB:.2f} MiB, estimated {estimate / MiB:.2f}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def physical_memory(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets the physical memory the guard compares against."""

    def set_memory(nbytes: int) -> None:
        monkeypatch.setattr(_spec, "physical_memory_bytes", lambda: nbytes)

    return set_memory


def test_module_whose_peak_exceeds_memory_is_refused(physical_memory: Any) -> None:
    # GRU(1, 1, num_layers=10**5) peaks at over 300 MiB: ~3 KiB per layer of array objects,
    # keys and padded panels for 12 weights.
    physical_memory(200 * MiB)
    with pytest.raises(ValueError, match=r"num_layers=100000.*more than this machine's physical"):
        pyrnn.GRU(1, 1, num_layers=10**5)


def test_ten_million_layers_are_refused_on_sixteen_gib(physical_memory: Any) -> None:
    # An LSTM(1, 1) layer takes ~3 KiB: 10**7 of them ~30 GiB. (Spec alone: nothing allocated
    # whatever the answer.)
    physical_memory(16 * 2**30)
    with pytest.raises(ValueError, match=r"need about \d+\.\d GiB to build and run"):
        Spec("lstm", 1, 1, num_layers=10**7)
    with pytest.raises(ValueError, match="num_layers=10000000"):
        Spec("lstm", 1, 1, num_layers=10**7, bidirectional=True)


def test_forward_beyond_memory_is_refused(physical_memory: Any) -> None:
    physical_memory(64 * MiB)
    lstm = pyrnn.LSTM(1, 1)
    x = np.broadcast_to(np.zeros((1, 1, 1), np.float32), (20000, 1000, 1))  # no memory of its own
    with pytest.raises(ValueError, match=r"input: a forward of \(T=20000, N=1000\) needs about"):
        lstm(x)
    cell = pyrnn.GRUCell(1, 1)
    rows = np.broadcast_to(np.zeros((1, 1), np.float32), (10**7, 1))
    with pytest.raises(ValueError, match=r"input: a forward of \(T=1, N=10000000\)"):
        cell(rows)


def test_stream_beyond_memory_is_refused(physical_memory: Any) -> None:
    physical_memory(64 * MiB)
    lstm = pyrnn.LSTM(1, 1, num_layers=2)
    with pytest.raises(ValueError, match=r"batch: a stream of batch=1000000 needs about"):
        lstm.stream(batch=10**6)
    lstm.stream(batch=1000)  # a modest one still fits
