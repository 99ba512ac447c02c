"""The project's speed goals, judged on the measurements benchmarks/compare.py reports (its JSON
"workloads"): streaming (benchmarks/harness/streaming.py), whole models (models.py) and
reduced-precision weights (quantized.py). The package measures; only this folder holds the goals
and says met or missed.

Metrics of a workload's result:
  "x ENGINE"      ENGINE's time per step over pyrnn's: s.step(x, out=y)'s on a stream workload,
                  the pyrnn model's on a model workload (at least target)
  "x batch"       one batch stream's throughput over as many separate streams' (at least target)
  "overhead_us"   the Python overhead of s.step(x, out=y), in microseconds (at most target)
  "model / lstm"  the pyrnn model's time per frame over the bare pyrnn LSTM's (at most target)
  "feed256 / rtneural", "step / rtneural"
                  on the tiny models of benchmarks/rtneural/run.py: pyrnn's time per sample fed
                  in blocks of 256, or stepped with s.step(x, out=y) from Python, over RTNeural's
                  ModelT step, both timed in the same run (at most target)
  "A / B"         engine A's time per step over engine B's, both timed in the same run, on a
                  reduced-precision workload (at least target): "pyrnn-fp32 / pyrnn-int8" is
                  how much faster int8 weights run than fp32 ones; "ort-1t / pyrnn-onnx"
                  on a stream workload, ORT's step over pyrnn's stream of the same ONNX graph;
                  on a sequence workload "torch / pyrnn" is pyrnn's speed-up over torch, both
                  at their default thread counts, and "pyrnn-1t / pyrnn" pyrnn's scaling from
                  1 thread to its default (at least target; "pyrnn-out / pyrnn-out-1t", a small
                  stream step on the default threads against 1 thread, at most target); on the
                  packed workload (benchmarks/packed.py) times are per sequence step asked for,
                  so "pyrnn-packed / pyrnn-padded" is the cost of a packed step against a padded
                  one (at most target) and "torch-packed-1t / pyrnn-packed" the speed-up over
                  torch on the same PackedSequence (at least target)
  "capi-cython / pyrnn-c++"  a step through the C API from a Cython nogil loop over the same
                  step in the core's own C++ loop (benchmarks/capi_step.py; at most target)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_AT_MOST = (
    "overhead_us",
    "model / lstm",
    "pyrnn-out / pyrnn-out-1t",
    "pyrnn-packed / pyrnn-padded",
    "capi-cython / pyrnn-c++",
    "feed256 / rtneural",
    "step / rtneural",
)


@dataclass(frozen=True)
class Goal:
    workload: str
    metric: str
    target: float
    text: str

    @property
    def at_most(self) -> bool:
        return self.metric in _AT_MOST

    @property
    def unit(self) -> str:
        return " us" if self.metric.endswith("_us") else "x"


# Every core: pyrnn and the peers each with their default threads (every CPU of the machine).
THREAD_GOALS = (
    *(
        Goal(
            workload,
            f"{peer} / pyrnn",
            1.2,
            f"{workload}: pyrnn >= 1.2x faster than {label}, each with its default threads",
        )
        for workload in (
            "batch-lstm-256",
            "seq-lstm-1024",
            "stack-bilstm",
            "seq-lstm-256",
            "seq-gru-256",
        )
        for peer, label in (("torch", "torch"), ("ort", "ONNX Runtime"))
    ),
    Goal(
        "batch-lstm-256",
        "pyrnn-1t / pyrnn",
        1.8,
        "batch-lstm-256: pyrnn on its default threads (2 here) >= 1.8x its 1-thread speed",
    ),
    Goal(
        "seq-lstm-1024",
        "pyrnn-1t / pyrnn",
        1.8,
        "seq-lstm-1024: pyrnn on its default threads (2 here) >= 1.8x its 1-thread speed",
    ),
    Goal(
        "stream-lstm-1024",
        "pyrnn-out-1t / pyrnn-out",
        1.6,
        "LSTM I=H=1024 s.step(x, out=y) on the default threads (2 here) >= 1.6x its 1-thread speed",
    ),
    Goal(
        "stream-lstm-64",
        "pyrnn-out / pyrnn-out-1t",
        1.05,
        "LSTM 64 s.step(x, out=y) on the default threads no slower than on 1 thread (5% noise)",
    ),
)

GOALS = (
    Goal(
        "stream-lstm-64",
        "x torch-1t",
        20.0,
        "LSTM 64 s.step(x, out=y) >= 20x faster than torch LSTMCell (1 thread)",
    ),
    Goal(
        "stream-lstm-64",
        "x ort-1t",
        10.0,
        "LSTM 64 s.step(x, out=y) >= 10x faster than ONNX Runtime's per-step run (1 thread)",
    ),
    Goal(
        "stream-lstm-64",
        "x batch",
        10.0,
        "LSTM 64 batch=64 stream >= 10x the throughput of 64 streams",
    ),
    Goal(
        "stream-lstm-64",
        "ort-1t / pyrnn-onnx",
        8.0,
        "LSTM 64 imported from ONNX (pyrnn.from_onnx), s.step(x, out=ys) >= 8x faster than ONNX "
        "Runtime running the same ONNX step graph per step (1 thread)",
    ),
    Goal(
        "stream-overhead",
        "overhead_us",
        1.0,
        "Python overhead of s.step(x, out=y) <= 1 us",
    ),
    Goal(
        "model-stream-head",
        "model / lstm",
        1.3,
        "streamed Linear -> LSTM 64 -> Linear -> LogSoftmax: s.step(x, out=y) costs at most 1.3x "
        "a bare LSTM 64 s.step(x, out=y)",
    ),
    Goal(
        "model-stream-head",
        "x torch-1t",
        15.0,
        "streamed head model >= 15x faster than the torch model per frame (1 thread)",
    ),
    Goal(
        "model-stream-head",
        "x ort-1t",
        8.0,
        "streamed head model >= 8x faster than ONNX Runtime running its graph per frame (1 thread)",
    ),
    Goal(
        "model-seq-head",
        "model / lstm",
        1.1,
        "2-layer LSTM 256 + Linear head, model(x) over T=1000: at most 1.1x the LSTM alone",
    ),
    Goal(
        "quant-seq-lstm-1024",
        "pyrnn-fp32 / pyrnn-int8",
        4.0,
        "LSTM 1024 over T=200 (B=1): int8 weights >= 4x faster than fp32",
    ),
    Goal(
        "quant-seq-lstm-1024",
        "pyrnn-fp32 / pyrnn-fp16",
        1.8,
        "LSTM 1024 over T=200 (B=1): fp16 weights >= 1.8x faster than fp32",
    ),
    Goal(
        "quant-seq-lstm-1024",
        "pyrnn-fp32 / pyrnn-bf16",
        1.8,
        "LSTM 1024 over T=200 (B=1): bf16 weights >= 1.8x faster than fp32",
    ),
    Goal(
        "quant-stream-lstm-512",
        "pyrnn-fp32 / pyrnn-int8",
        3.0,
        "LSTM 512 s.step(x, out=y): int8 weights >= 3x faster than fp32",
    ),
    Goal(
        "quant-stream-lstm-512",
        "pyrnn-fp32 / pyrnn-fp16",
        1.7,
        "LSTM 512 s.step(x, out=y): fp16 weights >= 1.7x faster than fp32",
    ),
    Goal(
        "quant-stream-lstm-512",
        "pyrnn-fp32 / pyrnn-bf16",
        1.7,
        "LSTM 512 s.step(x, out=y): bf16 weights >= 1.7x faster than fp32",
    ),
    Goal(
        "quant-peers-lstm-512",
        "ort-int8-1t / pyrnn-int8",
        1.5,
        "LSTM 512 over T=1000 (B=1, 1 thread): pyrnn int8 >= 1.5x faster than ONNX Runtime's "
        "DynamicQuantizeLSTM",
    ),
    Goal(
        "quant-peers-lstm-512",
        "torch-int8-1t / pyrnn-int8",
        1.5,
        "LSTM 512 over T=1000 (B=1, 1 thread): pyrnn int8 >= 1.5x faster than torch's dynamic "
        "int8 LSTM",
    ),
    Goal(
        "quant-peers-lstm-512",
        "torch-bf16-1t / pyrnn-bf16",
        1.0,
        "LSTM 512 over T=1000 (B=1, 1 thread): pyrnn bf16 at least as fast as torch's LSTM in "
        "bfloat16",
    ),
    Goal(
        "packed-lstm",
        "pyrnn-packed / pyrnn-padded",
        1.15,
        "LSTM I=64 H=128, 64 sequences of lengths uniform in [1, 1000] (1 thread): the packed "
        "batch takes at most 1.15x (S / (64*1000)) the time of the fully padded 64x1000 batch",
    ),
    Goal(
        "packed-lstm",
        "torch-packed-1t / pyrnn-packed",
        2.0,
        "LSTM I=64 H=128, 64 sequences of lengths uniform in [1, 1000]: pyrnn >= 2x faster than "
        "torch on the same PackedSequence (1 thread each)",
    ),
    *THREAD_GOALS,
)


# Judged by benchmarks/capi_step.py, which builds a Cython extension (not part of `pyrnn bench`).
CAPI_GOALS = tuple(
    Goal(
        workload,
        "capi-cython / pyrnn-c++",
        1.1,
        f"{label} step through the C API from a Cython nogil loop within 1.1x of the core's own "
        "C++ step loop",
    )
    for workload, label in (("capi-lstm-64", "LSTM 64"), ("capi-lstm-1x16", "LSTM 1x16"))
)


# Tiny models at audio rate (I = 1) against RTNeural's compile-time models (ModelT, Eigen
# backend), built and timed on the same machine in the same run by benchmarks/rtneural/run.py,
# which judges these: RTNeural is C++ only, so `pyrnn bench` has no RTNeural engine.
RTNEURAL_GOALS = (
    *(
        Goal(
            model,
            "feed256 / rtneural",
            0.8,
            f"{label}: s.feed(x, out=y) of 256 samples, per sample, <= 0.8x RTNeural's ModelT step",
        )
        for model, label in (
            ("lstm-8", "LSTM I=1 H=8"),
            ("lstm-16", "LSTM I=1 H=16"),
            ("lstm-32", "LSTM I=1 H=32"),
            ("gru-32", "GRU I=1 H=32"),
        )
    ),
    *(
        Goal(
            model,
            "step / rtneural",
            1.6,
            f"{label}: s.step(x, out=y) from Python <= 1.6x RTNeural's ModelT step (from C++)",
        )
        for model, label in (
            ("lstm-8", "LSTM I=1 H=8"),
            ("lstm-16", "LSTM I=1 H=16"),
            ("lstm-32", "LSTM I=1 H=32"),
            ("gru-32", "GRU I=1 H=32"),
        )
    ),
)


def evaluate_rtneural(results: dict[str, Any], statistic: str = "fastest") -> list[dict[str, Any]]:
    """The RTNeural goals on benchmarks/rtneural/run.py's results ("models": per model, per
    statistic, ns per sample of "rtneural", "feed256", "step", ...), as evaluate() reports."""
    verdicts = []
    for goal in RTNEURAL_GOALS:
        model = results["models"].get(goal.workload)
        if model is None:
            continue
        numbers = model[statistic]
        ours, theirs = numbers.get(goal.metric.split(" / ")[0]), numbers.get("rtneural")
        value = None if ours is None or not theirs else ours / theirs
        status = "not measured" if value is None else "met" if value <= goal.target else "missed"
        verdicts.append(
            {
                "workload": goal.workload,
                "metric": goal.metric,
                "target": goal.target,
                "at_most": True,
                "unit": goal.unit,
                "goal": goal.text,
                "value": value,
                "status": status,
            }
        )
    return verdicts


def measured(workload: dict[str, Any], metric: str) -> float | None:
    """The value of `metric` in one workload's result, None when it was not measured."""
    if metric == "model / lstm":
        versus = workload.get("vs_lstm") or {}
        return float(versus["ratio"]) if versus.get("status") == "ok" else None
    if metric == "x batch":
        batch = workload.get("batch") or {}
        return float(batch["ratio"]) if batch.get("status") == "ok" else None
    if metric == "overhead_us":
        overhead = workload.get("overhead")
        return None if overhead is None else float(overhead["overhead_us"])
    if " / " in metric:  # two engines of one run
        ok = {r["engine"]: r for r in workload.get("results", []) if r["status"] == "ok"}
        numerator, denominator = metric.split(" / ")
        if numerator not in ok or denominator not in ok:
            return None
        return float(ok[numerator]["us_per_step"]) / float(ok[denominator]["us_per_step"])
    engine = metric.removeprefix("x ")
    key = "ratio_vs_model" if workload.get("category") == "model" else "ratio_vs_pyrnn_out"
    for result in workload.get("results", []):
        if result["engine"] == engine and result["status"] == "ok":
            ratio = result.get(key)
            return None if ratio is None else float(ratio)
    return None


def evaluate(
    workloads: list[dict[str, Any]], goals: tuple[Goal, ...] = GOALS
) -> list[dict[str, Any]]:
    """Each of `goals` whose workload is among `workloads`: its value and status (met, missed,
    or not measured when an engine or a measurement did not run)."""
    by_name = {workload["name"]: workload for workload in workloads}
    verdicts = []
    for goal in goals:
        if goal.workload not in by_name:
            continue
        value = measured(by_name[goal.workload], goal.metric)
        if value is None:
            status = "not measured"
        else:
            met = value <= goal.target if goal.at_most else value >= goal.target
            status = "met" if met else "missed"
        verdicts.append(
            {
                "workload": goal.workload,
                "metric": goal.metric,
                "target": goal.target,
                "at_most": goal.at_most,
                "unit": goal.unit,
                "goal": goal.text,
                "value": value,
                "status": status,
            }
        )
    return verdicts


def format_goals(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = []
    for verdict in verdicts:
        if verdict["value"] is None:
            lines.append(f"goal not measured: {verdict['goal']}")
        else:
            unit = verdict["unit"]
            lines.append(
                f"goal {verdict['status']}: {verdict['goal']} "
                f"(measured {verdict['value']:.2f}{unit}, target {verdict['target']:g}{unit})"
            )
    return lines
