"""The speed goals of whole-model inference, judged on the measurements of the model workloads
(pyrnn/benchmarking/models.py; `pyrnn bench --workloads model-stream-head,model-seq-head`).
The package measures; only this project folder holds the goals and says met or missed.

Metrics of a workload's result:
  "model / lstm"  the pyrnn model's time per frame over the bare pyrnn LSTM's (at most target)
  "x ENGINE"      ENGINE's time per frame over the pyrnn model's (at least target)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelGoal:
    workload: str
    metric: str
    target: float
    text: str

    @property
    def at_most(self) -> bool:
        return self.metric == "model / lstm"


GOALS = (
    ModelGoal(
        "model-stream-head",
        "model / lstm",
        1.3,
        "streamed Linear -> LSTM 64 -> Linear -> LogSoftmax: s.step(x, out=y) costs at most 1.3x "
        "a bare LSTM 64 s.step(x, out=y)",
    ),
    ModelGoal(
        "model-stream-head",
        "x torch-1t",
        15.0,
        "streamed head model >= 15x faster than the torch model per frame (1 thread)",
    ),
    ModelGoal(
        "model-stream-head",
        "x ort-1t",
        8.0,
        "streamed head model >= 8x faster than ONNX Runtime running its graph per frame (1 thread)",
    ),
    ModelGoal(
        "model-seq-head",
        "model / lstm",
        1.1,
        "2-layer LSTM 256 + Linear head, model(x) over T=1000: at most 1.1x the LSTM alone",
    ),
)


def measured(workload: dict[str, Any], metric: str) -> float | None:
    """The value of `metric` in one model workload's result, None when it was not measured."""
    if metric == "model / lstm":
        versus = workload.get("vs_lstm", {})
        return float(versus["ratio"]) if versus.get("status") == "ok" else None
    engine = metric.removeprefix("x ")
    for result in workload.get("results", []):
        if result["engine"] == engine and result["status"] == "ok":
            ratio = result.get("ratio_vs_model")
            return None if ratio is None else float(ratio)
    return None


def evaluate(workloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal whose workload is among `workloads`: its value and status (met, missed, or not
    measured when the engine or the model did not run)."""
    by_name = {workload["name"]: workload for workload in workloads}
    verdicts = []
    for goal in GOALS:
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
            lines.append(
                f"goal {verdict['status']}: {verdict['goal']} "
                f"(measured {verdict['value']:.2f}x, target {verdict['target']:g}x)"
            )
    return lines
