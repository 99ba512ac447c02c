"""The project's comparison suite (benchmarks/compare.py and benchmarks/harness/, run from the
repository checkout; tests/conftest.py puts benchmarks/ on sys.path): its workloads, tables, JSON
and chart, each engine checked before it is timed, and its argument errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from harness import WORKLOADS, BenchOptions
from harness.report import format_streaming, write_png
from harness.streaming import run_stream_workload, step_engines
from harness.workloads import (
    ModelWorkload,
    PackedWorkload,
    QuantWorkload,
    SequenceWorkload,
    StreamWorkload,
)

import pyrnn
from pyrnn.bench import StepEngine, StepRunner, scalar_stream_reference

REPO = Path(__file__).resolve().parents[1]
COMPARE = REPO / "benchmarks" / "compare.py"
ENGINES = ["pyrnn", "pyrnn-1t", "torch-1t", "torch", "ort-1t", "ort"]
STEP_ENGINES = [
    "pyrnn", "pyrnn-out", "pyrnn-out-1t", "pyrnn-c++", "pyrnn-onnx", "torch-1t", "ort-1t"
]  # fmt: skip

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


def run_compare(
    args: list[str], cwd: Path, without_peers: bool = False
) -> subprocess.CompletedProcess:
    command = [sys.executable, str(COMPARE)]
    if without_peers:
        command = [sys.executable, "-c", _WITHOUT_PEERS, str(COMPARE)]
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, check=False)


def tables(out: str) -> str:
    """compare.py's output before the goals it judges: the measurements."""
    return out.split("\nGoals (benchmarks/goals.py)", 1)[0]


# Words of a verdict on a goal, which only goals.py's part of the output may hold.
_VERDICT_WORDS = re.compile(r"goal|target|\bmet\b|missed", re.IGNORECASE)


def assert_measurements_only(*texts: str) -> None:
    for text in texts:
        assert not _VERDICT_WORDS.search(text), _VERDICT_WORDS.findall(text)


def report_text(report: dict) -> str:
    """The JSON report as text, without the model's path (where pyrnn is installed, any name)."""
    return json.dumps({**report, "model": {**report["model"], "path": ""}})


def test_bench_compare_json_and_png(tmp_path):
    report_path, chart_path = tmp_path / "r.json", tmp_path / "r.png"
    args = ["--quick", "--repeats", "1", "--workloads", "seq-gru-256"]
    result = run_compare([*args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload", "engine", "threads", "us/step", "GFLOP/s", "%", "peak", "x", "pyrnn", "max",
        "err",
    ]  # fmt: skip
    report = json.loads(report_path.read_text())
    assert report["cpu_info"] == pyrnn.cpu_info()
    assert report["machine"]["fma_peak_gflops"] > 0
    assert set(report["machine"]["read_bandwidth"]) == {"L2", "L3", "DRAM"}
    assert set(report["model"]["modes"]) == {"sequence", "step"}
    (workload,) = report["workloads"]
    assert workload["name"] == "seq-gru-256" and workload["workload"]["steps"] == 100
    results = {r["engine"]: r for r in workload["results"]}
    assert list(results) == ENGINES
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-4
        assert len(entry["times_s"]) == 1
        assert entry["ratio_vs_pyrnn"] > 0
        assert entry["gflops"] == pytest.approx(
            workload["flops_per_step"] / (entry["us_per_step"] * 1e3)
        )
    assert results["pyrnn"]["ratio_vs_pyrnn"] == 1.0
    assert chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def chart_titles(report: dict, path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The panel titles and the suptitle write_png gives the chart of `report`."""
    import matplotlib.axes
    import matplotlib.figure

    titles: list[str] = []
    set_title, suptitle = matplotlib.axes.Axes.set_title, matplotlib.figure.Figure.suptitle

    def recording_title(self, label, *args, **kwargs):
        titles.append(label)
        return set_title(self, label, *args, **kwargs)

    def recording_suptitle(self, text, *args, **kwargs):
        titles.append(text)
        return suptitle(self, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", recording_title)
    monkeypatch.setattr(matplotlib.figure.Figure, "suptitle", recording_suptitle)
    assert write_png(report, str(path))
    return titles


def test_bench_compare_streaming_table_json_and_png(tmp_path, monkeypatch):
    report_path, chart_path = tmp_path / "r.json", tmp_path / "r.png"
    args = ["--quick", "--repeats", "1", "--workloads", "stream-lstm-64,stream-overhead"]
    result = run_compare([*args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Streaming: one step per call from Python" in out
    assert "Comparison (" not in out  # no sequence workload was asked for
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload", "engine", "threads", "us/step", "x", "out=", "max", "err", "call"
    ]  # fmt: skip
    assert "LSTM 64: batch=64 step" in out and "M stream-steps/s" in out
    assert "Python overhead of s.step(x, out=y), 1-unit LSTM:" in out

    report = json.loads(report_path.read_text())
    lstm, overhead = report["workloads"]
    assert lstm["name"] == "stream-lstm-64" and lstm["category"] == "stream"
    results = {r["engine"]: r for r in lstm["results"]}
    assert list(results) == STEP_ENGINES
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-5 + 1e-4  # within the check's atol + rtol*|ref|, |ref|<1
        assert len(entry["times_us"]) == 1 and entry["us_per_step"] == entry["times_us"][0]
        assert entry["ratio_vs_pyrnn_out"] == pytest.approx(
            entry["us_per_step"] / results["pyrnn-out"]["us_per_step"]
        )
    assert results["torch-1t"]["call"] == "LSTMCell, inference_mode"
    batch = lstm["batch"]
    assert batch["status"] == "ok" and batch["rows"] == 64
    assert batch["ratio"] == pytest.approx(batch["separate_us"] / batch["batch_us"])
    assert batch["batch_stream_steps_per_s"] == pytest.approx(64 / batch["batch_us"] * 1e6)
    assert f"{batch['ratio']:.1f}x" in out
    assert lstm["overhead"] is None

    assert [r["engine"] for r in overhead["results"]] == ["pyrnn-out", "pyrnn-c++"]
    measured = overhead["overhead"]
    assert measured["overhead_us"] == pytest.approx(measured["step_us"] - measured["cpp_us"])
    assert f"1-unit LSTM: {measured['overhead_us']:.3f} us" in out
    assert chart_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Measurements only: no goal, target or verdict in the tables, the JSON or the chart (the
    # goals come after the tables, from goals.py).
    assert "goals" not in lstm and "goals" not in overhead
    titles = chart_titles(report, tmp_path / "again.png", monkeypatch)
    assert "stream-lstm-64 (LSTM 64)" in titles and "stream-overhead (1-unit LSTM)" in titles
    assert_measurements_only(tables(out), report_text(report), *titles)


def test_missing_peers_are_reported_unavailable(tmp_path):
    report_path = tmp_path / "r.json"
    args = ["--quick", "--repeats", "1", "--workloads", "seq-gru-256"]
    result = run_compare([*args, "--json", str(report_path)], tmp_path, without_peers=True)
    assert result.returncode == 0, result.stderr
    statuses = {
        r["engine"]: r for r in json.loads(report_path.read_text())["workloads"][0]["results"]
    }
    assert statuses["pyrnn"]["status"] == "ok"
    for name in ("torch-1t", "torch", "ort-1t", "ort"):
        assert statuses[name]["status"] == "unavailable"
        assert "not installed" in statuses[name]["reason"]
    assert "unavailable" in result.stdout and "Not timed:" in result.stdout


def test_missing_peers_leave_their_stream_ratios_unmeasured(tmp_path):
    report_path = tmp_path / "r.json"
    args = ["--quick", "--repeats", "1", "--workloads", "stream-lstm-64"]
    result = run_compare([*args, "--json", str(report_path)], tmp_path, without_peers=True)
    assert result.returncode == 0, result.stderr
    (workload,) = json.loads(report_path.read_text())["workloads"]
    statuses = {r["engine"]: r for r in workload["results"]}
    for name in ("pyrnn", "pyrnn-out", "pyrnn-c++"):
        assert statuses[name]["status"] == "ok"
        assert "ratio_vs_pyrnn_out" in statuses[name]
    for name in ("torch-1t", "ort-1t"):
        assert statuses[name]["status"] == "unavailable"
        assert "not installed" in statuses[name]["reason"]
        assert "ratio_vs_pyrnn_out" not in statuses[name]
    assert workload["batch"]["status"] == "ok"  # pyrnn alone measures this one
    assert "Not timed:" in result.stdout
    assert_measurements_only(
        tables(result.stdout), report_text(json.loads(report_path.read_text()))
    )


# -- the streaming machinery ---------------------------------------------------------------
def test_stream_workloads_are_registered():
    streams = {n: w for n, w in WORKLOADS.items() if isinstance(w, StreamWorkload)}
    assert list(streams) == [
        "stream-lstm-64", "stream-gru-64", "stream-lstm-1x32", "stream-lstm-1024",
        "stream-overhead", "tiny-lstm-1x8", "tiny-lstm-1x16", "tiny-lstm-1x32", "tiny-gru-1x32",
        "tiny-lstm-1x16x2",
    ]  # fmt: skip
    kinds = SequenceWorkload | StreamWorkload | ModelWorkload | QuantWorkload | PackedWorkload
    assert all(isinstance(w, kinds) for w in WORKLOADS.values())
    lstm = streams["stream-lstm-64"]
    assert (lstm.kind, lstm.input_size, lstm.hidden_size, lstm.batch) == ("lstm", 64, 64, 64)
    assert (streams["stream-lstm-1x32"].input_size, streams["stream-lstm-1x32"].hidden_size) == (
        1,
        32,
    )
    assert streams["stream-gru-64"].kind == "gru"
    assert streams["stream-overhead"].measure == "overhead"
    for workload in streams.values():  # what a workload is, not what it should reach
        assert_measurements_only(str(asdict(workload)), workload.describe())


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_peer_step_engines_compute_what_pyrnn_computes(kind, bias):
    # Three steps carrying the state, with an odd size: a gate order or bias layout mistake in
    # the torch cell or the one-node ONNX graph shows here (ATOL/RTOL as in the benchmark).
    module = {"lstm": pyrnn.LSTM, "gru": pyrnn.GRU}[kind](5, 7, bias=bias, seed=1)
    x = np.random.default_rng(2).standard_normal(5, np.float32)
    reference = scalar_stream_reference(module, x)
    for engine in step_engines():
        np.testing.assert_allclose(
            engine.prepare(module, x).check(), reference, atol=1e-5, rtol=1e-4, err_msg=engine.name
        )
    np.testing.assert_allclose(
        scalar_stream_reference(module, x, 1), module(x[None])[0][0], atol=1e-6
    )


def _tiny_workload(**overrides) -> StreamWorkload:
    fields = {"name": "t", "label": "tiny", "kind": "lstm", "input_size": 3, "hidden_size": 4}
    return StreamWorkload(**{**fields, "batch": 5, **overrides})


def test_a_stream_engine_with_wrong_output_is_reported_not_timed(monkeypatch):
    calls = []

    def broken(module, x):
        def check():
            return scalar_stream_reference(module, x) + 1e-3  # 10x the tolerance

        return StepRunner(check=check, loop=lambda number: calls.append(number) or 1e-6)

    engines = [*step_engines()[:2], StepEngine("broken", "test", broken)]
    monkeypatch.setattr("harness.streaming.step_engines", lambda: engines)
    report = run_stream_workload(
        _tiny_workload(), {}, BenchOptions(quick=True, repeats=1), lambda m: None
    )
    results = {r["engine"]: r for r in report["results"]}
    assert results["broken"]["status"] == "mismatch"
    assert results["broken"]["max_abs_err"] == pytest.approx(1e-3, rel=1e-3)
    assert "ratio_vs_pyrnn_out" not in results["broken"]
    assert calls == []  # checked, never timed
    assert results["pyrnn-out"]["status"] == "ok"
    assert results["pyrnn-out"]["ratio_vs_pyrnn_out"] == 1.0
    assert report["batch"]["status"] == "ok" and report["batch"]["rows"] == 5
    assert report["batch"]["ratio"] > 0
    assert "goals" not in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workloads", "nope"], "unknown workload(s) nope; expected some of seq-lstm-256"),
        (["--workloads", ","], "expected comma-separated workload names"),
        (["--repeats", "0"], "--repeats: expected a positive integer, got 0"),
        (["--json", "/nonexistent/r.json"], "argument --json: cannot write"),
        (["--png", "/nonexistent/r.png"], "argument --png: cannot write"),
    ],
)
def test_compare_bad_arguments_exit_2_with_a_clear_message(capsys, monkeypatch, args, message):
    import compare

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark started")

    monkeypatch.setattr(compare, "run_bench", started)
    with pytest.raises(SystemExit) as exit_info:
        compare.compare(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_png_without_matplotlib_says_so_before_benchmarking(tmp_path, monkeypatch, capsys):
    import compare

    class Started(Exception):
        pass

    def started(*args: object, **kwargs: object) -> None:
        raise Started

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what find_spec sees when absent
    monkeypatch.setattr(compare, "run_bench", started)
    with pytest.raises(Started):
        compare.compare(["--png", str(tmp_path / "r.png")])
    assert "--png: matplotlib is not installed; no chart will be written" in capsys.readouterr().err


def test_flops_of_the_workloads():
    from harness.workloads import flops_per_step, recurrent_weight_bytes

    lstm = WORKLOADS["seq-lstm-256"].module().config
    assert flops_per_step(lstm) == 2 * 4 * 256 * (256 + 256)
    assert flops_per_step(lstm, rows=64) == 64 * 2 * 4 * 256 * 512
    stack = WORKLOADS["stack-bilstm"].module().config
    layer0 = 2 * 4 * 128 * (64 + 128)
    layer1 = 2 * 4 * 128 * (2 * 128 + 128)
    assert flops_per_step(stack) == 2 * (layer0 + layer1)
    assert recurrent_weight_bytes(lstm) == 4 * 4 * 256 * 256


def test_tiny_workloads_report_ns_per_sample_and_the_headroom_at_48_khz():
    workload = WORKLOADS["tiny-lstm-1x16x2"]
    assert isinstance(workload, StreamWorkload) and workload.module().config["num_layers"] == 2
    report = run_stream_workload(
        WORKLOADS["tiny-lstm-1x8"], {}, BenchOptions(quick=True, repeats=1), lambda m: None
    )
    results = {r["engine"]: r for r in report["results"]}
    assert set(results) == {"pyrnn-out", "pyrnn-c++", "pyrnn-feed64", "pyrnn-feed256"}
    assert all(r["status"] == "ok" for r in results.values())
    tiny = report["tiny"]
    assert tiny["feed256_ns"] == pytest.approx(1e3 * results["pyrnn-feed256"]["us_per_step"])
    assert tiny["x_realtime_48k"] == pytest.approx(1e9 / 48_000 / tiny["feed256_ns"])
    lines = format_streaming({"workloads": [report]})
    assert any("at 48 kHz" in line and "LSTM I=1 H=8" in line for line in lines)
