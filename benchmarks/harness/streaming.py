"""The streaming workloads of the comparison: the latency of one step called from Python
on a pyrnn stream (with and without out=), on torch's LSTMCell/GRUCell (1 thread, inference_mode)
and on an ONNX Runtime session run once per step (1 intra-op thread); one batch=64 stream against
64 separate ones; and the Python overhead of s.step(x, out=y). Every engine's output after a few
steps is checked against pyrnn's scalar path before it is timed. The step engines, their check
and their timing are pyrnn.bench's (pyrnn/bench/steps.py); the C++ loop and the imported ONNX
step graph are the suite's own.

Timing: each engine's call is a statement run by timeit in a loop (no wrapper function, so no
engine pays for an extra Python frame); loops of all engines alternate round-robin so that load
from other processes falls on every engine alike; the best loop's mean is kept, since noise on
a shared machine only ever adds time.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from pyrnn import Module, from_onnx
from pyrnn.bench import (
    CHECK_STEPS,
    StepEngine,
    StepRunner,
    cpp_step_seconds,
    onnx_step_model,
    pyrnn_threads,
    scalar_stream_reference,
    time_round_robin,
)
from pyrnn.bench import STEP_ATOL as ATOL
from pyrnn.bench import STEP_RTOL as RTOL
from pyrnn.bench import prepare_step_engine as _prepared
from pyrnn.bench import step_engines as peer_step_engines
from pyrnn.bench import step_summary as _summary
from pyrnn.bench import verify_output as _verify

from .workloads import StreamWorkload, flops_per_step

if TYPE_CHECKING:
    from .runner import BenchOptions, Progress

__all__ = ["ATOL", "CHECK_STEPS", "RTOL", "StepEngine", "StepRunner", "run_stream_workload"]


def _output_size(module: Module) -> int:
    config = module.config
    return int(config.get("proj_size") or config["hidden_size"])


# -- pyrnn --------------------------------------------------------------------------------------
def _pyrnn_check(module: Module, x: np.ndarray) -> Callable[[], np.ndarray]:
    def check() -> np.ndarray:
        stream = module.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(x)
        return y

    return check


def _prepare_pyrnn_cpp(module: Module, x: np.ndarray) -> StepRunner:
    stream = module.stream()
    y = np.empty(_output_size(module), np.float32)
    context, count = pyrnn_threads(None)
    return StepRunner(
        check=_pyrnn_check(module, x),
        loop=lambda number: cpp_step_seconds(stream, x, y, number) * number,
        context=context,
        threads=count,
        call="the same steps in a C++ loop (no Python)",
    )


def _prepare_pyrnn_feed(block: int) -> Callable[[Module, np.ndarray], StepRunner]:
    """Feeds of `block` samples (the same x repeated), timed per sample."""

    def prepare(module: Module, x: np.ndarray) -> StepRunner:
        stream = module.stream()
        xs = np.ascontiguousarray(np.broadcast_to(x, (block, x.shape[-1])))
        ys = np.empty((block, _output_size(module)), np.float32)
        feed = stream.feed

        def loop(number: int) -> float:
            feeds = max(1, number // block)
            start = timeit.default_timer()
            for _ in range(feeds):
                feed(xs, out=ys)
            return (timeit.default_timer() - start) * number / (feeds * block)

        return StepRunner(
            check=_pyrnn_check(module, x),
            loop=loop,
            call=f"s.feed(x, out=y) of {block} samples, per sample",
        )

    return prepare


def _prepare_pyrnn_onnx(module: Module, x: np.ndarray) -> StepRunner:
    """ORT's one-node step graph imported with pyrnn.from_onnx and streamed: the node and its
    weights as ORT runs them, with the sequence axis free and the initial-state inputs left out
    (the stream carries h and c itself; ORT's run is fed them back)."""
    proto = onnx_step_model(module)
    node = proto.graph.node[0]
    for i in range(5, len(node.input)):
        node.input[i] = ""
    keep = [value for value in proto.graph.input if value.name == "x"]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    model = from_onnx(proto)
    frame = x.reshape(1, -1)
    size = module.config["hidden_size"]

    def check() -> np.ndarray:
        stream = model.stream()
        for _ in range(CHECK_STEPS):
            y = stream.step(frame)[0]
        return np.asarray(y).reshape(size)

    stream = model.stream()
    outputs = [np.empty_like(y) for y in stream.step(frame)]
    stream.reset()
    return StepRunner(
        check=check,
        statement="step(x, out=ys)",
        namespace={"step": stream.step, "x": frame, "ys": outputs},
        call="s.step(x, out=ys) of the ONNX step graph imported by pyrnn.from_onnx",
    )


def step_engines() -> list[StepEngine]:
    """pyrnn's step without and with out= (the ratios are against the latter), the latter again
    on 1 thread, its C++ loop, the same LSTM imported from ORT's ONNX graph, then the peers with
    1 thread. pyrnn runs at its default thread count except where the name says 1t (a small
    model's step stays on the calling thread either way)."""
    peers = {engine.name: engine for engine in peer_step_engines()}  # pyrnn.bench's
    return [
        peers["pyrnn"],
        peers["pyrnn-out"],
        peers["pyrnn-out-1t"],
        StepEngine("pyrnn-c++", "pyrnn", _prepare_pyrnn_cpp),
        StepEngine("pyrnn-onnx", "onnxruntime", _prepare_pyrnn_onnx),
        peers["torch-1t"],
        peers["ort-1t"],
        StepEngine("pyrnn-feed64", "pyrnn", _prepare_pyrnn_feed(64)),
        StepEngine("pyrnn-feed256", "pyrnn", _prepare_pyrnn_feed(256)),
    ]


# The engines of each measure: a tiny workload times pyrnn's own ways of running an audio-rate
# model (its peer, RTNeural, is C++ only: benchmarks/rtneural/run.py).
_MEASURE_ENGINES = {
    "overhead": ("pyrnn-out", "pyrnn-c++"),
    "tiny": ("pyrnn-out", "pyrnn-c++", "pyrnn-feed64", "pyrnn-feed256"),
}
_FEEDS = ("pyrnn-feed64", "pyrnn-feed256")
SAMPLE_RATE = 48_000


def _many_streams(
    module: Module, rows: int, seed: int
) -> tuple[list[StepRunner], float, np.ndarray]:
    """A `rows`-row stream and `rows` separate streams over the same inputs: their runners, and
    the max |difference| of their first steps (they must agree: same rows, same weights)."""
    size = module.config["input_size"]
    xs = np.random.default_rng(seed + 1).standard_normal((rows, size), np.float32)
    ys = np.empty((rows, _output_size(module)), np.float32)
    together = module.stream(batch=rows)
    separate = [module.stream() for _ in range(rows)]
    pairs = [(stream.step, xs[i], ys[i]) for i, stream in enumerate(separate)]
    batched = together.step(xs)
    for step, x, y in pairs:
        step(x, out=y)
    difference = float(np.abs(batched - ys).max())
    together.reset()
    for stream in separate:
        stream.reset()
    runners = [
        StepRunner(
            check=lambda: batched,
            statement="step(xs, out=ys)",
            namespace={"step": together.step, "xs": xs, "ys": ys},
            call=f"one batch={rows} stream: s.step(xs, out=ys)",
        ),
        StepRunner(
            check=lambda: ys,
            statement="for step, x, y in pairs: step(x, out=y)",
            namespace={"pairs": pairs},
            call=f"{rows} streams, s.step(x, out=y) each",
        ),
    ]
    return runners, difference, scalar_stream_reference(module, xs, 1)


def stream_seconds(options: BenchOptions) -> float:
    """Seconds of timed loops per engine and workload (split over the repeats)."""
    return 0.1 if options.quick else 0.5


def run_stream_workload(
    workload: StreamWorkload, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """Every engine's per-step latency on `workload` (or the Python overhead), verified first."""
    module = workload.module(options.seed)
    x = np.random.default_rng(options.seed).standard_normal(workload.input_size, np.float32)
    reference = scalar_stream_reference(module, x)
    budget, repeats = stream_seconds(options), options.effective_repeats
    engines = step_engines()
    if workload.measure in _MEASURE_ENGINES:
        engines = [e for e in engines if e.name in _MEASURE_ENGINES[workload.measure]]
    else:
        engines = [e for e in engines if e.name not in _FEEDS]
    prepared = []
    for engine in engines:
        progress(f"{workload.name}: preparing and verifying {engine.name}")
        prepared.append(_prepared(engine, module, x, reference))
    timed = [(result, runner) for result, runner in prepared if runner is not None]
    runners = [runner for _, runner in timed]
    batch: dict[str, Any] | None = None
    if workload.measure == "latency" and workload.batch > 1:
        many, difference, batch_reference = _many_streams(module, workload.batch, options.seed)
        status, error, reason = _verify(many[0].check(), batch_reference)
        batch = {"rows": workload.batch, "max_abs_err": error, "max_abs_diff": difference}
        if status == "ok" and difference <= ATOL + RTOL * float(np.abs(batch_reference).max()):
            runners += many
        else:
            batch.update(status="mismatch", reason=reason or f"rows differ by {difference:.3g}")
    progress(f"{workload.name}: timing {len(runners)} runners, interleaved")
    outcomes = time_round_robin(runners, budget, repeats)
    for (result, _), outcome in zip(timed, outcomes, strict=False):
        if isinstance(outcome, str):
            result.update(status="error", reason=outcome)
        else:
            result.update(_summary(outcome))
    ok = {r["engine"]: r for r in (result for result, _ in prepared) if r["status"] == "ok"}
    base = ok.get("pyrnn-out")
    if base is not None:
        for result in ok.values():
            result["ratio_vs_pyrnn_out"] = result["us_per_step"] / base["us_per_step"]
    if batch is not None and "status" not in batch:
        together, separate = outcomes[len(timed)], outcomes[len(timed) + 1]
        if isinstance(together, str) or isinstance(separate, str):
            batch.update(status="error", reason=together if isinstance(together, str) else separate)
        else:
            rows = workload.batch
            batch_us, separate_us = 1e6 * min(together), 1e6 * min(separate)
            batch.update(
                status="ok",
                batch_us=batch_us,
                separate_us=separate_us,
                batch_stream_steps_per_s=rows / batch_us * 1e6,
                separate_stream_steps_per_s=rows / separate_us * 1e6,
                ratio=separate_us / batch_us,
                calls=[r.call for r in runners[len(timed) :]],
            )
    overhead: dict[str, float] | None = None
    if workload.measure == "overhead" and "pyrnn-out" in ok and "pyrnn-c++" in ok:
        step_us, cpp_us = ok["pyrnn-out"]["us_per_step"], ok["pyrnn-c++"]["us_per_step"]
        overhead = {"step_us": step_us, "cpp_us": cpp_us, "overhead_us": step_us - cpp_us}
    tiny: dict[str, float] | None = None
    if workload.measure == "tiny" and all(name in ok for name in _MEASURE_ENGINES["tiny"]):
        ns = {name: 1e3 * ok[name]["us_per_step"] for name in _MEASURE_ENGINES["tiny"]}
        tiny = {
            "step_ns": ns["pyrnn-out"],
            "cpp_step_ns": ns["pyrnn-c++"],
            "feed64_ns": ns["pyrnn-feed64"],
            "feed256_ns": ns["pyrnn-feed256"],
            "x_realtime_48k": 1e9 / SAMPLE_RATE / ns["pyrnn-feed256"],
            "x_realtime_48k_step": 1e9 / SAMPLE_RATE / ns["pyrnn-out"],
        }
    return {
        "name": workload.name,
        "category": workload.category,
        "label": workload.label,
        "description": workload.describe(),
        "workload": asdict(workload),
        "flops_per_step": flops_per_step(workload.config()),
        "timing": {"seconds_per_engine": budget, "loops": repeats, "statistic": "best loop"},
        "tolerance": {"atol": ATOL, "rtol": RTOL, "steps_checked": CHECK_STEPS},
        "results": [result for result, _ in prepared],
        "batch": batch,
        "overhead": overhead,
        "tiny": tiny,
    }
