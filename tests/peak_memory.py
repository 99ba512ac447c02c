"""Measures how much memory making or running a pyrnn module really takes: the growth of this
process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the operation.

Run as a script: reads a JSON list of cases on stdin, prints a JSON list of byte counts. Each
case runs in a child forked from a warmed-up parent (pyrnn, numpy and safetensors imported, every
code path run once, in the parent and again in the child), so nothing but the operation itself is
counted, and freed memory of one case cannot hide the next one's. Linux only (/proc).

A case: {"kind", "input_size", "hidden_size", "num_layers", "bidirectional", "proj_size",
"bias", "action"} where action is "build" (random init), "load" (from a pyrnn file),
"unpickle", "forward" (plus "rows", "steps": a float32 (T, N, I) input) or "stream" (plus
"rows": making a batched stream).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import pickle
import sys
import tempfile
from typing import Any

import numpy as np

import pyrnn

_CLASSES = {
    "rnn": pyrnn.RNN,
    "lstm": pyrnn.LSTM,
    "gru": pyrnn.GRU,
    "rnn_cell": pyrnn.RNNCell,
    "lstm_cell": pyrnn.LSTMCell,
    "gru_cell": pyrnn.GRUCell,
}


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def make(case: dict[str, Any]) -> pyrnn.Module:
    kind = case["kind"]
    arguments: dict[str, Any] = {"bias": case.get("bias", True), "seed": 0}
    if not kind.endswith("_cell"):
        arguments["num_layers"] = case.get("num_layers", 1)
        arguments["bidirectional"] = case.get("bidirectional", False)
    if case.get("proj_size"):
        arguments["proj_size"] = case["proj_size"]
    module: pyrnn.Module = _CLASSES[kind](case["input_size"], case["hidden_size"], **arguments)
    return module


def _measure(case: dict[str, Any], folder: str) -> int:
    """The peak growth of this process's resident memory while the case's action runs."""
    action = case["action"]
    module = None if action == "build" else make(case)
    payload: Any = None
    if action == "load":
        payload = os.path.join(folder, "model.safetensors")
        pyrnn.save(module, payload)
        module = None
    elif action == "unpickle":
        payload = pickle.dumps(module)
        module = None
    elif action == "forward":
        shape = (case["steps"], case["rows"], case["input_size"])
        if case["kind"].endswith("_cell"):
            shape = shape[1:]
        payload = np.zeros(shape, np.float32)
    gc.collect()
    # Freed heap memory goes back to the system, so reusing it is counted as growth too.
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident set
    before = _status("VmRSS")
    result: Any = None  # what the action made, kept until the peak is read
    if action == "build":
        module = make(case)
    elif action == "load":
        module = pyrnn.load(payload)
    elif action == "unpickle":
        module = pickle.loads(payload)
    elif action == "forward":
        result = module(payload)
    elif action == "stream":
        result = module.stream(batch=case["rows"])
    else:
        raise ValueError(f"action: expected build, load, unpickle, forward or stream, got {action}")
    peak = _status("VmHWM")
    del module, payload, result
    return peak - before


def _in_child(case: dict[str, Any], folder: str) -> int:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: measure, report, leave without running the parent's cleanup
        os.close(read)
        code = 0
        try:
            # A forked child shares the parent's file-backed pages (the code of numpy and
            # pyrnn) but maps them only when it touches them: touch them before measuring.
            _warm_up(folder)
            message = str(_measure(case, folder))
        except BaseException as error:  # reported to the parent, which raises it
            message, code = f"error: {error!r}", 1
        os.write(write, message.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    if message.startswith("error"):
        raise RuntimeError(f"{case}: {message}")
    return int(message)


def _warm_up(folder: str) -> None:
    """Runs every code path once, so imports and first-use caches are not counted."""
    for kind in _CLASSES:
        case = {"kind": kind, "input_size": 3, "hidden_size": 5, "num_layers": 2}
        module = make(case)
        path = os.path.join(folder, "warm.safetensors")
        pyrnn.save(module, path)
        pyrnn.load(path)
        pickle.loads(pickle.dumps(module))
        x = np.zeros((2, 3) if kind.endswith("_cell") else (4, 2, 3), np.float32)
        module(x)
        module.stream(batch=2).step(np.zeros((2, 3), np.float32))
    # A network that may split starts the process's thread pool (its workers' stacks and malloc
    # arenas): memory of the process, made once, not of any one run.
    both_ways = make({"kind": "lstm", "input_size": 3, "hidden_size": 5, "bidirectional": True})
    both_ways(np.zeros((4, 2, 3), np.float32))


def main() -> None:
    cases = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as folder:
        _warm_up(folder)
        gc.collect()
        print(json.dumps([_in_child(case, folder) for case in cases]))


if __name__ == "__main__":
    main()
