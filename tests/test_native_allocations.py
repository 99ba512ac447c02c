"""The hot path allocates nothing natively either: Stream.step/feed and ModelStream.step/feed with
out= make no malloc, calloc, realloc, aligned_alloc (AlignedBuffer), memalign, posix_memalign or
operator new call, in C++ or anywhere else, on every ISA and weight type.

tracemalloc (tests/test_stream.py) sees only Python's allocators: a std::vector added to the
bindings' step would pass it. Here a python subprocess runs with tests/native/count_allocations.c
preloaded (LD_PRELOAD), a shim that counts every call of glibc's allocation functions while the
test has counting on. Compiled at test time with the system C compiler; Linux/glibc only.

Catches: a std::vector (or any heap object) added to stream_step's or the feed's fast path in
cpp/bindings/bind_stream.cpp, or to the model stream's step; an AlignedBuffer resized per call
in the core (aligned_alloc); and a counter that stopped seeing one of the functions (the first
test calls each one and needs a count of exactly one)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHIM_SOURCE = Path(__file__).parent / "native" / "count_allocations.c"


def _why_not_countable() -> str:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "the allocation counter replaces glibc's malloc: Linux with glibc only"
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return "AddressSanitizer owns malloc in this run: allocations cannot be counted here"
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build the allocation counter"
    return ""


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    why = _why_not_countable()
    if why:
        pytest.skip(why)
    library = tmp_path_factory.mktemp("counter") / "count_allocations.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SHIM_SOURCE)],
        check=True,
        capture_output=True,
        text=True,
    )
    return library


# The child's measuring code: counting is on only around the repeated calls, whose loop iterator
# exists before (itertools.repeat allocates nothing per item).
PRELUDE = """
import ctypes, itertools, json, sys
import numpy as np
import pyrnn
counter = ctypes.CDLL(sys.argv[1])
counter.count_allocations_stop.restype = ctypes.c_long

def allocations(call, repeats=200):
    call()  # first call outside the count: lazy caches of the interpreter and numpy
    loop = itertools.repeat(None, repeats)
    counter.count_allocations_start()
    for _ in loop:
        call()
    return counter.count_allocations_stop()
"""


def _counted(counter: Path, code: str) -> dict[str, int]:
    """Runs PRELUDE + code (which prints a JSON object) with the counter preloaded."""
    env = {**os.environ, "LD_PRELOAD": str(counter)}
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + code, str(counter)],
        env=env,
        cwd=Path(__file__).parent,  # never the source tree's pyrnn/ (no compiled extension)
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout.strip().splitlines()[-1])
    return counts


def test_the_counter_sees_every_allocation_function(counter: Path) -> None:
    """Each replaced function, called once with counting on, counts exactly once; the
    measurement itself counts nothing; creating a stream (AlignedBuffer: aligned_alloc) is
    seen. Without this a zero below could mean a blind counter."""
    counts = _counted(
        counter,
        """
libc = ctypes.CDLL(None)
for name in ("malloc", "calloc", "realloc", "reallocarray", "aligned_alloc", "memalign",
             "valloc", "pvalloc"):
    getattr(libc, name).restype = ctypes.c_void_p
pointer = ctypes.c_void_p()
calls = {
    "malloc": lambda: libc.malloc(ctypes.c_size_t(16)),
    "calloc": lambda: libc.calloc(ctypes.c_size_t(2), ctypes.c_size_t(8)),
    "realloc": lambda: libc.realloc(None, ctypes.c_size_t(16)),
    "reallocarray": lambda: libc.reallocarray(None, ctypes.c_size_t(2), ctypes.c_size_t(8)),
    "aligned_alloc": lambda: libc.aligned_alloc(ctypes.c_size_t(64), ctypes.c_size_t(64)),
    "memalign": lambda: libc.memalign(ctypes.c_size_t(64), ctypes.c_size_t(64)),
    "posix_memalign": lambda: libc.posix_memalign(
        ctypes.byref(pointer), ctypes.c_size_t(64), ctypes.c_size_t(64)),
    "valloc": lambda: libc.valloc(ctypes.c_size_t(64)),
    "pvalloc": lambda: libc.pvalloc(ctypes.c_size_t(64)),
}
for call in calls.values():
    call()  # ctypes resolves and caches each function outside the count
counts = {}
for name, call in calls.items():
    counter.count_allocations_start()
    call()
    counts[name] = counter.count_allocations_stop()
counts["nothing"] = allocations(lambda: None)
module = pyrnn.LSTM(4, 8, seed=0)
counts["a new stream"] = allocations(lambda: module.stream(batch=2), repeats=1)
print(json.dumps(counts))
""",
    )
    assert counts.pop("nothing") == 0
    assert counts.pop("a new stream") > 0
    assert counts == dict.fromkeys(counts, 1)
    assert len(counts) == 9


def test_step_and_feed_with_out_allocate_nothing_natively(counter: Path) -> None:
    counts = _counted(
        counter,
        """
from pyrnn.graph import Graph, InputSpec, Node
counts = {}
rng = np.random.default_rng(0)
modules = {
    "lstm-fp32": pyrnn.LSTM(4, 8, num_layers=2, batch_first=True, seed=0),
    "lstm-proj": pyrnn.LSTM(4, 8, num_layers=2, proj_size=3, seed=0),
    "gru-fp32": pyrnn.GRU(4, 8, num_layers=2, seed=0),
    "rnn-relu": pyrnn.RNN(4, 8, nonlinearity="relu", seed=0),
    "lstm_cell": pyrnn.LSTMCell(4, 8, seed=0),
}
for weights in ("fp16", "bf16", "int8"):
    modules[f"lstm-{weights}"] = pyrnn.quantize(modules["lstm-fp32"], weights)
    modules[f"gru-{weights}"] = pyrnn.quantize(modules["gru-fp32"], weights)

w = {name: rng.standard_normal(shape).astype(np.float32) * 0.3 for name, shape in {
    "fc.weight": (6, 4), "l.weight_ih_l0": (32, 6), "l.weight_hh_l0": (32, 8),
    "l.bias_ih_l0": (32,), "l.bias_hh_l0": (32,), "head.weight": (3, 8)}.items()}
rnn = {"mode": "lstm", "num_layers": 1, "bidirectional": False, "batch_first": True,
       "has_biases": True}
graph = Graph([InputSpec("x", "float32", [None, None, 4])], {"tensor": "y"}, list(w), [
    Node("linear", ["x", "fc.weight"], ["a"]),
    Node("rnn", ["a", None, None, "l.weight_ih_l0", "l.weight_hh_l0", "l.bias_ih_l0",
                 "l.bias_hh_l0"], ["o", "h", "c"], rnn),
    Node("linear", ["o", "head.weight"], ["y"])])
model = pyrnn.Model(graph, w)

for isa in pyrnn.available_isas():
    pyrnn.set_isa(isa)
    for name, module in modules.items():
        size = module.config.get("proj_size") or module.config["hidden_size"]
        batch_first = module.config.get("batch_first", False)
        for batch in (None, 3):
            stream = module.stream(batch=batch)
            rows = () if batch is None else (batch,)
            x, y = np.ones((*rows, 4), np.float32), np.empty((*rows, size), np.float32)
            where = f"{isa} {name} batch={batch}"
            counts[f"{where} step(x, out=y)"] = allocations(lambda: stream.step(x, out=y))
            counts[f"{where} step(x, y)"] = allocations(lambda: stream.step(x, y))
            if name == "lstm_cell":
                continue
            for steps in (5, 300):  # 300 crosses the feed's 128-step chunks
                shape = (batch, steps) if batch_first and batch else (steps, *rows)
                xs = np.ones((*shape, 4), np.float32)
                ys = np.empty((*shape, size), np.float32)
                counts[f"{where} feed({steps} steps, out=ys)"] = allocations(
                    lambda: stream.feed(xs, out=ys))
    for batch in (None, 2):
        stream = model.stream(batch=batch)
        rows = () if batch is None else (batch,)
        frame, out = np.ones((*rows, 4), np.float32), np.empty((*rows, 3), np.float32)
        where = f"{isa} model stream batch={batch}"
        counts[f"{where} step(x, out=y)"] = allocations(lambda: stream.step(frame, out=out))
        if batch:
            xs, ys = np.ones((batch, 9, 4), np.float32), np.empty((batch, 9, 3), np.float32)
            counts[f"{where} feed(9 frames, out=ys)"] = allocations(
                lambda: stream.feed(xs, out=ys))
print(json.dumps(counts))
""",
    )
    assert len(counts) > 100
    allocating = {call: count for call, count in counts.items() if count}
    assert not allocating, f"allocations per 200 calls: {allocating}"
