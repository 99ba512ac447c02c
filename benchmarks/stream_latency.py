"""Per-step streaming latency from Python: pyrnn streams against torch's LSTMCell/GRUCell and
ONNX Runtime's per-step session.run, all measured in the same process and run.

    python benchmarks/stream_latency.py            # the table of issue 4 (~30 s)
    python benchmarks/stream_latency.py --quick    # shorter timings, same rows
    python benchmarks/stream_latency.py --json out.json

Rows (microseconds per step, best of several repeats of a timed loop):
  * LSTM and GRU with I=H=64 and an audio-sized LSTM (I=1, H=32), batch 1: pyrnn ``step(x)``,
    ``step(x, out=y)`` and the same steps run back to back in C++ (no Python), against torch
    1 thread under inference_mode and onnxruntime with 1 intra-op thread. Every engine's first
    step is checked against pyrnn's before timing, so all of them do the same work.
  * Python overhead: ``step(x, out=y)`` on a 1-unit LSTM minus the C++-only time of that step.
  * Many streams in one call: a ``batch=64`` stream step against 64 unbatched streams stepped
    one after the other, as throughput (steps x streams per second).

``run()`` returns the numbers as a dict and ``format_table()`` renders them, for ``pyrnn bench``.
torch and onnxruntime are optional: an engine that is not installed is reported as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import pyrnn

# Workloads of the speed table: (name, kind, input_size, hidden_size).
WORKLOADS = [
    ("LSTM 64", "lstm", 64, 64),
    ("GRU 64", "gru", 64, 64),
    ("LSTM I=1 H=32", "lstm", 1, 32),
]
BATCH = 64
# Engines agree with pyrnn's first step to within this (float32 kernels, different summation
# orders and activation approximations): atol + rtol * |pyrnn|.
ATOL, RTOL = 1e-5, 1e-4


@dataclass
class Timing:
    seconds: float  # per call

    @property
    def us(self) -> float:
        return self.seconds * 1e6


def time_statement(
    stmt: str, namespace: dict[str, Any], budget: float, setup: str = "pass"
) -> Timing:
    """Best mean time of `stmt` over 5 repeats of a loop lasting about budget/5 seconds each.
    A statement string (no wrapper function) so no engine pays for an extra Python frame."""
    timer = timeit.Timer(stmt, setup=setup, globals=namespace)
    number, elapsed = 1, 0.0
    while elapsed < 0.02:  # calibrate: loops of at least 20 ms
        elapsed = timer.timeit(number)
        number *= 2
    number = max(1, int(number / 2 * (budget / 5) / max(elapsed, 1e-9)))
    return Timing(min(timer.repeat(repeat=5, number=number)) / number)


def _module(kind: str, input_size: int, hidden_size: int) -> pyrnn.Module:
    return {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind](input_size, hidden_size, seed=0)


# -- engines: each returns (namespace, statement, first step's output) ---------------------------
def pyrnn_engine(module: pyrnn.Module, x: np.ndarray, out: bool) -> tuple[dict, str, np.ndarray]:
    stream = module.stream()
    y = np.empty(module.config["hidden_size"], np.float32)
    first = stream.step(x).copy()
    stream.reset()
    namespace = {"step": stream.step, "x": x, "y": y}
    return namespace, "step(x, out=y)" if out else "step(x)", first


def torch_engine(module: pyrnn.Module, x: np.ndarray) -> tuple[dict, str, np.ndarray]:
    import torch

    torch.set_num_threads(1)
    kind, size = module.config["kind"], module.config["hidden_size"]
    cell = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](x.shape[-1], size)
    weights = module.state_dict()
    cell.load_state_dict(
        {key.removesuffix("_l0"): torch.from_numpy(weights[key]) for key in weights}
    )
    cell.eval()
    xt = torch.from_numpy(x[None].copy())
    zeros = torch.zeros(1, size)
    state: Any = (zeros, zeros.clone()) if kind == "lstm" else zeros
    with torch.inference_mode():
        first = cell(xt, state)
    first_h = (first[0] if kind == "lstm" else first)[0].numpy().copy()
    namespace = {"cell": cell, "x": xt, "initial": state, "torch": torch}
    # inference_mode is entered once around the timed loop (see run()), not per step.
    return namespace, "state = cell(x, state)", first_h


def onnx_step_model(module: pyrnn.Module) -> Any:
    """A one-layer ONNX LSTM/GRU node over (T=1, N=1, I) with explicit initial state, weights
    regrouped from PyTorch's gate order into ONNX's."""
    from onnx import TensorProto, helper, numpy_helper

    kind, size = module.config["kind"], module.config["hidden_size"]
    order = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}[kind]  # ONNX (i,o,f,c) / (z,r,h)
    weights = module.state_dict()

    def regroup(array: np.ndarray) -> np.ndarray:
        gates = array.reshape(len(order), size, *array.shape[1:])
        return gates[order].reshape(array.shape)

    w = regroup(weights["weight_ih_l0"])[None]
    r = regroup(weights["weight_hh_l0"])[None]
    b = np.concatenate([regroup(weights["bias_ih_l0"]), regroup(weights["bias_hh_l0"])])[None]
    inputs = ["x", "W", "R", "B", "", "h0"] + (["c0"] if kind == "lstm" else [])
    outputs = ["y", "h1"] + (["c1"] if kind == "lstm" else [])
    attributes = {"hidden_size": size}
    if kind == "gru":
        attributes["linear_before_reset"] = 1  # PyTorch's GRU
    node = helper.make_node(kind.upper(), inputs, outputs, **attributes)
    state = [1, 1, size]
    graph = helper.make_graph(
        [node],
        f"{kind}_step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, module.config["input_size"]])]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, state) for n in inputs[5:]],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [
            numpy_helper.from_array(np.ascontiguousarray(a, np.float32), n)
            for a, n in ((w, "W"), (r, "R"), (b, "B"))
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def onnxruntime_engine(module: pyrnn.Module, x: np.ndarray) -> tuple[dict, str, np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(
        onnx_step_model(module).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    size = module.config["hidden_size"]
    feeds = {"x": x.reshape(1, 1, -1), "h0": np.zeros((1, 1, size), np.float32)}
    if module.config["kind"] == "lstm":
        feeds["c0"] = np.zeros((1, 1, size), np.float32)
    first = session.run(None, feeds)[1].reshape(size).copy()
    if "c0" in feeds:
        stmt = "_, feeds['h0'], feeds['c0'] = run(None, feeds)"
    else:
        stmt = "_, feeds['h0'] = run(None, feeds)"
    return {"run": session.run, "feeds": feeds}, stmt, first


def _engine_timing(
    make: Callable[..., tuple[dict, str, np.ndarray]],
    arguments: tuple[Any, ...],
    reference: np.ndarray,
    budget: float,
) -> dict[str, Any]:
    try:
        namespace, stmt, first = make(*arguments)
    except ImportError as error:
        return {"missing": str(error)}
    np.testing.assert_allclose(first, reference, atol=ATOL, rtol=RTOL)
    if "torch" in namespace:
        with namespace["torch"].inference_mode():
            timing = time_statement(stmt, namespace, budget, setup="state = initial")
    else:
        timing = time_statement(stmt, namespace, budget)
    return {"us": timing.us}


def run(quick: bool = False) -> dict[str, Any]:
    """Every number of the table, as plain data."""
    budget = 0.25 if quick else 1.0
    results: dict[str, Any] = {
        "isa": pyrnn.active_isa(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "latency": {},
    }
    rng = np.random.default_rng(0)
    for name, kind, input_size, hidden in WORKLOADS:
        module = _module(kind, input_size, hidden)
        x = rng.standard_normal(input_size).astype(np.float32)
        reference = module.stream().step(x)
        row: dict[str, Any] = {}
        row["pyrnn"] = _engine_timing(pyrnn_engine, (module, x, False), reference, budget)
        row["pyrnn_out"] = _engine_timing(pyrnn_engine, (module, x, True), reference, budget)
        stream, y = module.stream(), np.empty(hidden, np.float32)
        count = 20_000 if quick else 100_000
        row["cpp"] = {"us": min(stream._time_steps(x, y, count) for _ in range(5)) * 1e6}
        row["torch"] = _engine_timing(torch_engine, (module, x), reference, budget)
        row["onnxruntime"] = _engine_timing(onnxruntime_engine, (module, x), reference, budget)
        results["latency"][name] = row

    # Python overhead of step(x, out=y): a 1-unit model, where the arithmetic is a few ns.
    tiny = pyrnn.LSTM(1, 1, seed=0)
    x1, y1 = np.zeros(1, np.float32), np.empty(1, np.float32)
    stream = tiny.stream()
    python = time_statement("step(x, out=y)", {"step": stream.step, "x": x1, "y": y1}, budget)
    cpp = min(stream._time_steps(x1, y1, 200_000) for _ in range(5))
    results["overhead"] = {
        "step_us": python.us,
        "cpp_us": cpp * 1e6,
        "overhead_us": python.us - cpp * 1e6,
    }

    # Many streams, one call.
    results["batch"] = {}
    for name, kind, input_size, hidden in WORKLOADS:
        module = _module(kind, input_size, hidden)
        xs = rng.standard_normal((BATCH, input_size)).astype(np.float32)
        ys = np.empty((BATCH, hidden), np.float32)
        together = module.stream(batch=BATCH)
        batched = time_statement(
            "step(xs, out=ys)", {"step": together.step, "xs": xs, "ys": ys}, budget
        )
        separate = [module.stream() for _ in range(BATCH)]
        pairs = [(s.step, xs[i], ys[i]) for i, s in enumerate(separate)]
        one_by_one = time_statement(
            "for step, x, y in pairs: step(x, out=y)", {"pairs": pairs}, budget
        )
        results["batch"][name] = {
            "batch_us": batched.us,
            "separate_us": one_by_one.us,
            "batch_streams_per_s": BATCH / batched.seconds,
            "separate_streams_per_s": BATCH / one_by_one.seconds,
            "ratio": one_by_one.seconds / batched.seconds,
        }
    return results


def format_table(results: dict[str, Any]) -> str:
    def cell(entry: dict[str, Any]) -> str:
        return "missing" if "missing" in entry else f"{entry['us']:8.2f}"

    def ratio(entry: dict[str, Any], base: dict[str, Any]) -> str:
        return "-" if "missing" in entry else f"{entry['us'] / base['us']:6.1f}x"

    lines = [
        f"pyrnn stream step latency, us per step, batch 1 (ISA {results['isa']}, "
        f"{results['cpus']} CPUs; torch and onnxruntime with 1 thread)",
        f"{'workload':<15} {'step(x)':>9} {'out=y':>9} {'C++ only':>9} {'torch':>9} "
        f"{'ORT':>9} {'torch/out':>10} {'ORT/out':>9}",
    ]
    for name, row in results["latency"].items():
        lines.append(
            f"{name:<15} {cell(row['pyrnn']):>9} {cell(row['pyrnn_out']):>9} {cell(row['cpp']):>9} "
            f"{cell(row['torch']):>9} {cell(row['onnxruntime']):>9} "
            f"{ratio(row['torch'], row['pyrnn_out']):>10} "
            f"{ratio(row['onnxruntime'], row['pyrnn_out']):>9}"
        )
    o = results["overhead"]
    lines.append(
        f"Python overhead of step(x, out=y), 1-unit LSTM: {o['overhead_us']:.3f} us "
        f"({o['step_us']:.3f} us from Python - {o['cpp_us']:.3f} us in C++)"
    )
    for name, b in results["batch"].items():
        lines.append(
            f"{name}: batch=64 step {b['batch_us']:.2f} us vs 64 separate streams "
            f"{b['separate_us']:.2f} us -> {b['batch_streams_per_s'] / 1e6:.2f} vs "
            f"{b['separate_streams_per_s'] / 1e6:.2f} M stream-steps/s, {b['ratio']:.1f}x"
        )
    lstm, goals = results["latency"]["LSTM 64"], []
    if "missing" not in lstm["torch"]:
        goals.append(
            (
                "LSTM 64 step(x, out=y) >= 20x faster than torch LSTMCell",
                lstm["torch"]["us"] / lstm["pyrnn_out"]["us"] >= 20,
            )
        )
    if "missing" not in lstm["onnxruntime"]:
        goals.append(
            (
                "LSTM 64 step(x, out=y) >= 10x faster than ORT per step",
                lstm["onnxruntime"]["us"] / lstm["pyrnn_out"]["us"] >= 10,
            )
        )
    goals.append(("Python overhead of step(x, out=y) <= 1 us", o["overhead_us"] <= 1.0))
    goals.append(
        (
            "LSTM 64 batch=64 >= 10x the throughput of 64 streams",
            results["batch"]["LSTM 64"]["ratio"] >= 10,
        )
    )
    lines += [f"goal {'met' if met else 'MISSED'}: {text}" for text, met in goals]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
