"""The `pyrnn` command line and the benchmark machinery behind it. Commands run in a subprocess
(from a scratch folder, so the source tree cannot shadow the installed package) and are checked
for the columns and fields they promise, and for holding measurements only: the project's speed
goals and their verdicts belong to benchmarks/ (tests/test_goals.py). No test asserts anything
about timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from unprivileged import can_drop_privileges, run_python, scratch_folder

import pyrnn
from pyrnn.benchmarking import WORKLOADS, BenchOptions
from pyrnn.benchmarking.engines import Engine, Runner
from pyrnn.benchmarking.machine import lower_bound_us
from pyrnn.benchmarking.runner import (
    load_default_model,
    run_engine,
    scalar_reference,
    time_interleaved,
)
from pyrnn.benchmarking.streaming import (
    StepEngine,
    StepRunner,
    run_stream_workload,
    scalar_stream_reference,
    step_engines,
    time_round_robin,
)
from pyrnn.benchmarking.workloads import (
    ModelWorkload,
    QuantWorkload,
    SequenceWorkload,
    StreamWorkload,
    flops_per_step,
    recurrent_weight_bytes,
)
from pyrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
ENGINES = ["pyrnn", "pyrnn-1t", "torch-1t", "torch", "ort-1t", "ort"]
STEP_ENGINES = [
    "pyrnn", "pyrnn-out", "pyrnn-out-1t", "pyrnn-c++", "pyrnn-onnx", "torch-1t", "ort-1t"
]  # fmt: skip


def run_cli(args: list[str], cwd: Path, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "pyrnn.cli"]
    return subprocess.run(
        command + ([] if code else args), cwd=cwd, capture_output=True, text=True, check=False
    )


def test_info_prints_version_features_and_kernels(tmp_path):
    result = run_cli(["info"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"pyrnn {pyrnn.__version__}" in result.stdout
    for label in ("CPU features:", "kernels compiled:", "kernels available:", "kernels active:"):
        assert label in result.stdout
    assert f"kernels active: {pyrnn.active_isa()}" in result.stdout


def test_info_json(tmp_path):
    result = run_cli(["info", "--json"], tmp_path)
    info = json.loads(result.stdout)
    assert info["version"] == pyrnn.__version__
    assert info["available"] == pyrnn.available_isas()
    assert info["probe_isas"][0] == "scalar"


def test_bench_quick_prints_hardware_and_model_table(tmp_path):
    result = run_cli(["bench", "--quick"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "FMA peak" in out and "GFLOP/s" in out
    for level in ("L2 (", "L3 (", "DRAM ("):
        assert level in out
    assert "default.safetensors (lstm I=40 H=128 layers=2)" in out
    header = next(line for line in out.splitlines() if line.startswith("mode"))
    assert header.split() == ["mode", "us/step", "GFLOP/s", "%", "peak"]
    assert "whole sequence" in out and "stream step, s.step(x, out=y)" in out
    assert "Comparison" not in out and "Streaming" not in out  # only with --compare


def test_bench_compare_json_and_png(tmp_path):
    report_path, chart_path = tmp_path / "r.json", tmp_path / "r.png"
    args = ["bench", "--quick", "--repeats", "1", "--workloads", "seq-gru-256"]
    result = run_cli([*args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
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


# Words of a verdict on a goal, which the package never prints or writes.
_VERDICT_WORDS = re.compile(r"goal|target|\bmet\b|missed", re.IGNORECASE)


def assert_measurements_only(*texts: str) -> None:
    for text in texts:
        assert not _VERDICT_WORDS.search(text), _VERDICT_WORDS.findall(text)


def report_text(report: dict) -> str:
    """The JSON report as text, without the model's path (where pyrnn is installed, any name)."""
    return json.dumps({**report, "model": {**report["model"], "path": ""}})


def chart_titles(report: dict, path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The panel titles and the suptitle write_png gives the chart of `report`."""
    import matplotlib.axes
    import matplotlib.figure

    from pyrnn.benchmarking.report import write_png

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
    args = ["bench", "--quick", "--repeats", "1", "--workloads", "stream-lstm-64,stream-overhead"]
    result = run_cli([*args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
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

    # Measurements only: no goal, target or verdict in the table, the JSON or the chart.
    assert "goals" not in lstm and "goals" not in overhead
    titles = chart_titles(report, tmp_path / "again.png", monkeypatch)
    assert "stream-lstm-64 (LSTM 64)" in titles and "stream-overhead (1-unit LSTM)" in titles
    assert_measurements_only(out, report_text(report), *titles)


# Runs `pyrnn bench` with torch and onnxruntime made unimportable.
_WITHOUT_PEERS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnxruntime'):
            raise ImportError(f'{name} blocked for this test')
sys.meta_path.insert(0, Block())
from pyrnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_missing_peers_are_reported_unavailable(tmp_path):
    report_path = tmp_path / "r.json"
    args = ["bench", "--quick", "--repeats", "1", "--workloads", "seq-gru-256"]
    result = run_cli([*args, "--json", str(report_path)], tmp_path, code=_WITHOUT_PEERS)
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
    args = ["bench", "--quick", "--repeats", "1", "--workloads", "stream-lstm-64"]
    result = run_cli([*args, "--json", str(report_path)], tmp_path, code=_WITHOUT_PEERS)
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
    assert_measurements_only(result.stdout, report_text(json.loads(report_path.read_text())))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bench", "--workloads", "nope"],
            "unknown workload(s) nope; expected some of seq-lstm-256",
        ),
        (["bench", "--workloads", ","], "expected comma-separated workload names"),
        (["bench", "--repeats", "0"], "--repeats: expected a positive integer, got 0"),
        (["bench", "--repeats", "x"], "--repeats: expected a positive integer, got 'x'"),
        (
            ["bench", "--model", "/nonexistent/m.safetensors"],
            "--model: cannot read '/nonexistent/m.safetensors': No such file or directory",
        ),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--help"], ["bench", "--help"], ["info", "--help"]])
def test_help_describes_measurements_only(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pyrnn" in out
    assert_measurements_only(out)


def test_model_that_is_not_a_pyrnn_file(tmp_path, capsys):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", str(path)])
    assert exit_info.value.code == 2
    assert "--model:" in capsys.readouterr().err


def test_bench_runs_a_given_cell_model_step_by_step(tmp_path):
    path = tmp_path / "cell.safetensors"
    pyrnn.save(pyrnn.GRUCell(3, 5, seed=0), path)
    result = run_cli(["bench", "--quick", "--model", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stream step" in result.stdout and "whole sequence" not in result.stdout


# -- the machinery ----------------------------------------------------------------------------
def test_bundled_default_model_is_installed():
    module, path = load_default_model()
    assert path.endswith("default.safetensors")
    assert module.config == {
        "kind": "lstm", "input_size": 40, "hidden_size": 128, "num_layers": 2, "bias": True,
        "batch_first": False, "dropout": 0.0, "bidirectional": False, "proj_size": 0,
    }  # fmt: skip


def test_bundled_default_model_matches_its_generator():
    script = REPO / "tools" / "make_default_model.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, cwd=REPO / "tools"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_flops_per_step_counts_every_matmul():
    lstm = WORKLOADS["seq-lstm-256"].module().config
    assert flops_per_step(lstm) == 2 * 4 * 256 * (256 + 256)
    assert flops_per_step(lstm, rows=64) == 64 * 2 * 4 * 256 * 512
    stack = WORKLOADS["stack-bilstm"].module().config
    layer0 = 2 * 4 * 128 * (64 + 128)
    layer1 = 2 * 4 * 128 * (2 * 128 + 128)
    assert flops_per_step(stack) == 2 * (layer0 + layer1)
    projected = pyrnn.LSTM(10, 8, proj_size=3).config
    assert flops_per_step(projected) == 2 * 4 * 8 * (10 + 3) + 2 * 3 * 8
    gru = pyrnn.GRU(6, 5, num_layers=2).config
    assert flops_per_step(gru) == 2 * 3 * 5 * (6 + 5) + 2 * 3 * 5 * (5 + 5)
    assert recurrent_weight_bytes(gru) == 4 * 2 * 3 * 5 * 5


def test_lower_bound_picks_the_cache_level_holding_the_weights():
    machine = {
        "fma_peak_gflops": 100.0,
        "caches": {"L1d": 32 << 10, "L2": 1 << 20, "L3": 32 << 20},
        "read_bandwidth": {
            "L2": {"gbytes_per_s": 100.0},
            "L3": {"gbytes_per_s": 50.0},
            "DRAM": {"gbytes_per_s": 10.0},
        },
    }
    small = lower_bound_us(1e6, 512 << 10, machine)
    assert small["weights_level"] == "L2" and small["limit"] == "compute"
    assert small["us"] == pytest.approx(10.0)  # 1e6 FLOP at 100 GFLOP/s
    middle = lower_bound_us(1e3, 8 << 20, machine)
    assert middle["weights_level"] == "L3" and middle["limit"] == "L3 bandwidth"
    assert middle["us"] == pytest.approx((8 << 20) / 50e3)
    assert lower_bound_us(1e3, 64 << 20, machine)["weights_level"] == "DRAM"


def test_scalar_reference_restores_the_active_isa():
    previous, best = pyrnn.active_isa(), pyrnn.available_isas()[-1]
    pyrnn.set_isa(best)
    module = pyrnn.GRU(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    try:
        np.testing.assert_array_equal(scalar_reference(module, x), _scalar_output(module, x))
        assert pyrnn.active_isa() == best
        np.testing.assert_array_equal(scalar_stream_reference(module, x[0, 0]), _stream(module, x))
        assert pyrnn.active_isa() == best
    finally:
        pyrnn.set_isa(previous)  # PYRNN_ISA may have chosen another ISA for the whole run


def _stream(module, x):
    previous = pyrnn.active_isa()
    pyrnn.set_isa("scalar")
    try:
        stream = module.stream()
        for _ in range(3):
            y = stream.step(x[0, 0])
        return y
    finally:
        pyrnn.set_isa(previous)


def _scalar_output(module, x):
    previous = pyrnn.active_isa()
    pyrnn.set_isa("scalar")
    try:
        return module(x)[0]
    finally:
        pyrnn.set_isa(previous)


def test_an_engine_with_wrong_output_is_reported_not_timed():
    module = pyrnn.LSTM(3, 4, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    reference = scalar_reference(module, x)
    calls = []

    def prepare(module, x):
        def run():
            calls.append(1)
            return reference + 1e-3  # 10x the tolerance: must be caught

        return Runner(run=run)

    result = run_engine(
        Engine("broken", "test", prepare), module, x, reference, 1.0, 1.0, BenchOptions(repeats=3)
    )
    assert result["status"] == "mismatch"
    assert result["max_abs_err"] == pytest.approx(1e-3, rel=1e-3)
    assert len(calls) == 1  # checked once, never timed


def test_an_engine_within_tolerance_is_timed_with_repeats():
    module = pyrnn.LSTM(3, 4, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    reference = scalar_reference(module, x)
    engine = Engine("close", "test", lambda m, x: Runner(run=lambda: reference + 5e-5))
    result = run_engine(engine, module, x, reference, 100.0, 1.0, BenchOptions(repeats=3))
    assert result["status"] == "ok" and len(result["times_s"]) == 3
    assert result["us_per_step"] == pytest.approx(result["median_s"] / 5 * 1e6)


def test_engines_are_timed_round_robin_and_a_failing_one_is_isolated():
    calls: list[str] = []

    def runner(name: str, fail_on_call: int | None = None) -> Runner:
        count = 0

        def run():
            nonlocal count
            count += 1
            calls.append(name)
            if count == fail_on_call:
                raise RuntimeError(f"{name} broke")

        return Runner(run=run)

    outcome = time_interleaved([runner("a"), runner("b", fail_on_call=3), runner("c")], 3, 1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    # Rotated rounds, each timed call after an untimed one of the same runner; b fails on its
    # third call (its first timed one) and is not called again.
    assert calls[3:] == ["a", "a", "b", "b", "c", "c", "c", "c", "a", "a", "c", "c", "a", "a"]
    assert len(outcome[0]) == 3 and len(outcome[2]) == 3
    assert outcome[1] == "RuntimeError: b broke"


def test_an_engine_with_the_wrong_output_shape_is_a_mismatch():
    module = pyrnn.GRU(3, 4, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    reference = scalar_reference(module, x)
    engine = Engine("short", "test", lambda m, x: Runner(run=lambda: reference[:-1]))
    result = run_engine(engine, module, x, reference, 1.0, 1.0, BenchOptions(repeats=1))
    assert result["status"] == "mismatch"
    assert result["reason"] == "output shape (4, 2, 4), expected (5, 2, 4)"


# -- the streaming machinery ---------------------------------------------------------------
def test_stream_workloads_are_registered():
    streams = {n: w for n, w in WORKLOADS.items() if isinstance(w, StreamWorkload)}
    assert list(streams) == [
        "stream-lstm-64", "stream-gru-64", "stream-lstm-1x32", "stream-lstm-1024",
        "stream-overhead", "tiny-lstm-1x8", "tiny-lstm-1x16", "tiny-lstm-1x32", "tiny-gru-1x32",
        "tiny-lstm-1x16x2",
    ]  # fmt: skip
    kinds = SequenceWorkload | StreamWorkload | ModelWorkload | QuantWorkload
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
    monkeypatch.setattr("pyrnn.benchmarking.streaming.step_engines", lambda: engines)
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


def test_tiny_workloads_report_ns_per_sample_and_the_headroom_at_48_khz():
    from pyrnn.benchmarking.report import format_streaming

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


def test_stream_runners_are_timed_round_robin_and_a_failing_one_is_isolated():
    calls: list[tuple[str, int]] = []

    def runner(name: str, fail_on_loop: int | None = None) -> StepRunner:
        loops = 0

        def loop(number: int) -> float:
            nonlocal loops
            loops += 1
            calls.append((name, number))
            if loops == fail_on_loop:
                raise RuntimeError(f"{name} broke")
            return 0.02 * number  # 20 ms per step: calibration stops at 1 step

        return StepRunner(check=lambda: np.zeros(1), loop=loop)

    runners = [runner("a"), runner("b", fail_on_loop=3), runner("c")]
    outcome = time_round_robin(runners, budget=0.3, repeats=3)
    assert calls[:3] == [("a", 1), ("b", 1), ("c", 1)]  # calibration
    timed = [name for name, _ in calls[3:]]
    assert timed == ["a", "b", "c", "b", "c", "a", "c", "a"]  # rotated; b gone after failing
    assert all(number == 5 for _, number in calls[3:])  # 0.1 s loops of 20 ms steps
    assert outcome[0] == outcome[2] == [0.02, 0.02, 0.02]
    assert outcome[1] == "RuntimeError: b broke"


def test_run_model_streams_the_steps_and_skips_what_a_module_cannot_do():
    from pyrnn.benchmarking.runner import run_model

    machine = {"fma_peak_gflops": 100.0}
    options = BenchOptions(quick=True, repeats=1)
    lstm = run_model(pyrnn.LSTM(3, 4, num_layers=2, seed=0), "m", machine, options)
    assert set(lstm["modes"]) == {"sequence", "step"}
    bidirectional = run_model(pyrnn.GRU(3, 4, bidirectional=True, seed=0), "m", machine, options)
    assert set(bidirectional["modes"]) == {"sequence"}  # a backward pass cannot stream
    cell = run_model(pyrnn.RNNCell(3, 4, seed=0), "m", machine, options)
    assert set(cell["modes"]) == {"step"}
    assert cell["flops_per_step"] == 2 * 4 * (3 + 4)


def test_console_script_points_at_main():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "pyrnn"]
    assert script.value == "pyrnn.cli:main"
    assert script.load() is main


# -- --model as a PyTorch state_dict; output paths checked before the benchmark ---------------
@pytest.fixture
def benchmark_never_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument errors must be reported before the machine is measured or anything timed."""

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark started")

    monkeypatch.setattr("pyrnn.benchmarking.run_bench", started)
    monkeypatch.setattr("pyrnn.benchmarking.runner.measure_machine", started)


class _Loaded(Exception):
    pass


def _loaded_by_bench(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> pyrnn.Module:
    """The module `pyrnn bench args` would time (stopped before timing it)."""

    def capture(options: object, progress: object, model: tuple | None = None) -> None:
        raise _Loaded(model[0] if model else None)

    monkeypatch.setattr("pyrnn.benchmarking.run_bench", capture)
    with pytest.raises(_Loaded) as loaded:
        main(["bench", *args])
    return loaded.value.args[0]


def _whole_model_state_dict(tmp_path: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {f"encoder.rnn.{k}": v for k, v in torch.nn.GRU(3, 5).state_dict().items()}
    state["head.weight"] = torch.ones(2, 5)
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    return path


def test_bench_model_state_dict_reads_with_kind_prefix_and_batch_first(tmp_path, monkeypatch):
    path = _whole_model_state_dict(tmp_path)
    args = ["--model", str(path), "--kind", "gru", "--prefix", "encoder.rnn.", "--batch-first"]
    module = _loaded_by_bench(monkeypatch, args)
    assert module.config["kind"] == "gru" and module.config["hidden_size"] == 5
    assert module.config["batch_first"] is True
    cell = tmp_path / "cell.safetensors"
    pyrnn.save(pyrnn.RNNCell(2, 3), cell)
    assert _loaded_by_bench(monkeypatch, ["--model", str(cell)]).config["kind"] == "rnn_cell"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            [],
            "no pyrnn metadata (format=None); to load a plain PyTorch state_dict pass --kind lstm",
        ),
        (["--kind", "gru"], "no 'weight_ih_l0' under the prefix; found ['encoder.rnn.bias_hh_l0'"),
        (["--kind", "gru", "--prefix", "x."], "choose the module's keys with --prefix"),
    ],
)
def test_bench_model_errors_advise_the_command_line_flags(
    tmp_path, capsys, benchmark_never_runs, extra, message
):
    path = _whole_model_state_dict(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", str(path), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "kind='" not in err and "prefix='" not in err  # no Python spelling on the CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "lstm"], "--kind: describe the file given as --model; pass --model"),
        (["--prefix", "a.", "--batch-first"], "--prefix, --batch-first: describe the file"),
        (["--kind", "transformer"], "argument --kind: invalid choice: 'transformer'"),
        (["--nonlinearity", "sigmoid"], "argument --nonlinearity: invalid choice: 'sigmoid'"),
    ],
)
def test_bench_load_flags_are_checked(capsys, benchmark_never_runs, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_flags_that_contradict_a_pyrnn_model(tmp_path, capsys, benchmark_never_runs):
    path = tmp_path / "cell.safetensors"
    pyrnn.save(pyrnn.GRUCell(3, 5), path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", str(path), "--kind", "lstm"])
    assert exit_info.value.code == 2
    assert "--model: kind: " in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="unix sockets")
def test_bench_model_that_is_a_special_file(capsys, benchmark_never_runs):
    import socket
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pyrnn-") as folder:
        path = Path(folder) / "m.safetensors"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "--model", str(path)])
    assert exit_info.value.code == 2
    assert "a socket, not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json", "--png"])
@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda tmp: tmp / "absent" / "r.out", "absent' does not exist"),
        (lambda tmp: tmp, "is a directory; expected a file name"),
        (lambda tmp: tmp / "file.txt" / "r.out", "file.txt' is not a directory"),
    ],
    ids=["missing-folder", "a-folder", "under-a-file"],
)
def test_bench_output_paths_are_checked_before_benchmarking(
    tmp_path, capsys, benchmark_never_runs, flag, where, message
):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--quick", flag, str(where(tmp_path))])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and message in err


@pytest.mark.skipif(not can_drop_privileges(), reason="needs POSIX and, under root, setpriv")
def test_bench_output_path_in_a_read_only_folder():
    # As a user the file system can refuse (root writes into read-only folders anyway). The
    # arguments are refused before anything is measured, so this takes no benchmark time.
    code = """
import os, sys
from pyrnn.cli import main
os.mkdir("ro")
os.chmod("ro", 0o500)
try:
    main(["bench", "--json", os.path.join(os.getcwd(), "ro", "r.json")])
except SystemExit as exit_info:
    sys.exit(exit_info.code)
"""
    with scratch_folder() as folder:
        result = run_python(code, folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no permission to create files in" in result.stderr


def test_bench_png_without_matplotlib_says_so_before_benchmarking(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what find_spec sees when absent
    _loaded_by_bench(monkeypatch, ["--png", str(tmp_path / "r.png")])  # stops before timing
    assert "--png: matplotlib is not installed; no chart will be written" in capsys.readouterr().err
