"""The `pyrnn` command line and the benchmark machinery behind it. Commands run in a subprocess
(from a scratch folder, so the source tree cannot shadow the installed package) and are checked
for the columns and fields they promise; no test asserts anything about timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
from pyrnn.benchmarking.workloads import flops_per_step, recurrent_weight_bytes
from pyrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
ENGINES = ["pyrnn", "torch-1t", "torch", "ort-1t", "ort"]


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
    assert "whole sequence" in out and "step by step" in out
    assert "Comparison" not in out  # only with --compare


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
        (["bench", "--model", "/nonexistent/m.safetensors"], "--model: /nonexistent/m.safetensors"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


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
    assert "step by step" in result.stdout and "whole sequence" not in result.stdout


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
    best = pyrnn.available_isas()[-1]
    pyrnn.set_isa(best)
    module = pyrnn.GRU(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    try:
        np.testing.assert_array_equal(scalar_reference(module, x), _scalar_output(module, x))
        assert pyrnn.active_isa() == best
    finally:
        pyrnn.set_isa(best)


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
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a"]  # rotated; b gone after failing
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


def test_console_script_points_at_main():
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "pyrnn"]
    assert script.value == "pyrnn.cli:main"
    assert script.load() is main
