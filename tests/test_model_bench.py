"""The whole-model benchmark workloads (model-stream-head, model-seq-head) of the project's
comparison suite (benchmarks/harness/): benchmarks/compare.py runs them and reports their
measurements in tables without any goal, then judges the goals of benchmarks/goals.py on them
(as benchmarks/models.py does: tests/test_goals.py).
Commands run in a subprocess from a scratch folder, with tiny repeat counts; no test asserts
anything about timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import WORKLOADS, ModelWorkload
from harness.models import (
    model_case,
    model_sequence_reference,
    model_stream_reference,
    onnx_model_graph,
    torch_model,
)

import pyrnn

STEP_ENGINES = ["pyrnn", "pyrnn-out", "lstm-out", "lstm-c++", "torch-1t", "torch-lstm-1t", "ort-1t"]
SEQUENCE_ENGINES = ["pyrnn", "lstm", "torch-1t", "ort-1t"]
QUICK = ["--quick", "--repeats", "1"]
# The project's comparison suite, run from the repository checkout.
COMPARE = str(Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py")


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_model_workloads_are_registered():
    models = {n: w for n, w in WORKLOADS.items() if isinstance(w, ModelWorkload)}
    assert list(models) == ["model-stream-head", "model-seq-head"]
    head, sequence = models.values()
    assert head.layers() == "Linear(64->64) -> LSTM(64, 64) -> Linear(64->10) -> LogSoftmax"
    assert (head.mode, head.category) == ("stream", "model")
    assert sequence.layers() == "LSTM(256, 256, 2 layers) -> Linear(256->32)"
    assert (sequence.mode, sequence.steps) == ("sequence", 1000)
    lstm_flops = 2 * 4 * 64 * (64 + 64)
    assert head.flops_per_step() == lstm_flops + 2 * 64 * 64 + 2 * 64 * 10


def test_bench_compare_model_workloads_table_json_and_png(tmp_path):
    report_path, chart_path = tmp_path / "r.json", tmp_path / "r.png"
    args = [*QUICK, "--workloads", "model-stream-head,model-seq-head"]
    result = run([COMPARE, *args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    # The tables, before the goals compare.py judges on them.
    out = result.stdout.split("\nGoals (benchmarks/goals.py)", 1)[0]
    assert "Whole models converted with pyrnn.from_torch, batch 1:" in out
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload", "engine", "threads", "us/step", "x", "model", "max", "err", "call"
    ]  # fmt: skip
    assert "goal" not in out.lower()  # the tables measure; goals.py judges

    report = json.loads(report_path.read_text())
    for workload in report["workloads"]:
        assert "goal" not in json.dumps(workload).lower()
    stream, sequence = report["workloads"]
    assert (stream["name"], stream["category"], stream["mode"]) == (
        "model-stream-head", "model", "stream"
    )  # fmt: skip
    assert (sequence["name"], sequence["mode"]) == ("model-seq-head", "sequence")
    assert sequence["workload"]["steps"] == 100  # --quick: a tenth of T=1000
    assert "steps" not in stream["workload"]  # a stream has no sequence length

    results = {r["engine"]: r for r in stream["results"]}
    assert list(results) == STEP_ENGINES
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-5 + 1e-4 * 3  # atol + rtol*|ref|; log-probs ~ -2.3
        assert len(entry["times_us"]) == 1 and entry["us_per_step"] == entry["times_us"][0]
        assert entry["ratio_vs_model"] == pytest.approx(
            entry["us_per_step"] / results["pyrnn-out"]["us_per_step"]
        )
    versus = stream["vs_lstm"]
    assert versus["status"] == "ok"
    assert versus["model_us"] == results["pyrnn-out"]["us_per_step"]
    assert versus["lstm_us"] == results["lstm-out"]["us_per_step"]
    assert versus["ratio"] == pytest.approx(versus["model_us"] / versus["lstm_us"])
    assert versus["extra_us"] == pytest.approx(versus["model_us"] - versus["lstm_us"])
    assert f"the model's s.step(x, out=y) takes {versus['ratio']:.2f}x the bare LSTM's" in out

    results = {r["engine"]: r for r in sequence["results"]}
    assert list(results) == SEQUENCE_ENGINES
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-4
        assert len(entry["times_s"]) == 1
        assert entry["us_per_step"] == pytest.approx(entry["median_s"] / 100 * 1e6)
    assert results["pyrnn"]["ratio_vs_model"] == 1.0
    assert sequence["vs_lstm"]["ratio"] == pytest.approx(
        results["pyrnn"]["us_per_step"] / results["lstm"]["us_per_step"]
    )
    assert chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# Runs benchmarks/compare.py with torch and onnxruntime made unimportable.
_WITHOUT_PEERS = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnxruntime'):
            raise ImportError(f'{name} blocked for this test')
sys.meta_path.insert(0, Block())
script = sys.argv.pop(1)
sys.path.insert(0, str(__import__('pathlib').Path(script).parent))
runpy.run_path(script, run_name='__main__')
"""


def test_model_workloads_without_torch_are_reported_unavailable(tmp_path):
    report_path = tmp_path / "r.json"
    args = [*QUICK, "--workloads", "model-stream-head,model-seq-head"]
    result = run(["-c", _WITHOUT_PEERS, COMPARE, *args, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    stream, sequence = json.loads(report_path.read_text())["workloads"]
    for workload, engines in ((stream, STEP_ENGINES), (sequence, SEQUENCE_ENGINES)):
        assert [r["engine"] for r in workload["results"]] == engines
        for entry in workload["results"]:
            assert entry["status"] == "unavailable"
            assert "torch is not installed" in entry["reason"]
        assert workload["vs_lstm"] == {"status": "not measured"}
    assert "Not timed:" in result.stdout


# -- the engines' graphs and models agree with the converted model ---------------------------
def test_torch_model_of_a_workload_is_what_the_converted_model_computes():
    import torch

    workload = WORKLOADS["model-stream-head"]
    assert isinstance(workload, ModelWorkload)
    case = model_case(workload, seed=3)
    assert isinstance(case.model, pyrnn.Model)
    assert case.lstm.config["hidden_size"] == 64
    x = np.random.default_rng(1).standard_normal((4, 1, 64), np.float32)
    with torch.inference_mode():
        expected = case.torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(case.model(x), expected, atol=1e-5, rtol=1e-5)
    stream = case.model.stream()
    for t in range(4):
        np.testing.assert_allclose(stream.step(x[t, 0]), expected[t, 0], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(  # seeded: the same weights every time
        torch_model(workload, 3).state_dict()["head.weight"].numpy(),
        case.torch_model.state_dict()["head.weight"].numpy(),
    )
    assert case.x.shape == (64,) and model_stream_reference(case).shape == (10,)


def test_onnx_graph_of_the_whole_sequence_model_matches_pyrnn():
    import onnxruntime as ort

    from pyrnn.onnx_export import to_onnx

    workload = ModelWorkload("tiny", "tiny", "sequence", 5, 7, 3, 2, True, True, steps=6)
    case = model_case(workload, seed=0)
    graph = onnx_model_graph(case, to_onnx(case.lstm, initial_state=False), "input", "output")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"frame": case.x})
    np.testing.assert_allclose(logits, model_sequence_reference(case), atol=1e-5, rtol=1e-4)
