"""The reduced-precision benchmark workloads (quant-seq-lstm-1024, quant-stream-lstm-512,
quant-peers-lstm-512) of the project's comparison suite (benchmarks/harness/):
benchmarks/compare.py runs them and reports their measurements in tables without any goal, then
judges the goals of benchmarks/goals.py on them (as benchmarks/quantized.py does). Commands
run in a subprocess from a scratch folder with --quick and one repeat; no test asserts anything
about timings."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from harness import WORKLOADS, BenchOptions, QuantWorkload
from harness.quantized import (
    PEER_TOLERANCES,
    QuantEngine,
    ort_int8_graph,
    quant_case,
    run_quant_workload,
    sequence_engines,
    step_engines,
    torch_int8_lstm,
)
from harness.runner import scalar_reference
from harness.streaming import CHECK_STEPS, scalar_stream_reference

from pyrnn.bench.engines import Runner

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
QUICK = ["--quick", "--repeats", "1"]
# The project's comparison suite, run from the repository checkout.
COMPARE = str(Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py")
NAMES = ["quant-seq-lstm-1024", "quant-stream-lstm-512", "quant-peers-lstm-512"]
PYRNN_ENGINES = ["pyrnn-fp32", "pyrnn-fp16", "pyrnn-bf16", "pyrnn-int8"]
PEER_ENGINES = ["torch-int8-1t", "ort-int8-1t", "torch-bf16-1t"]
_VERDICT_WORDS = re.compile(r"goal|target|\bmet\b|missed", re.IGNORECASE)
MIB = 1 << 20


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], cwd=cwd, capture_output=True, text=True, check=False
    )


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/NAME.py, freshly loaded (its scripts import goals.py as a top-level module)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_quant_workloads_are_registered():
    quant = {n: w for n, w in WORKLOADS.items() if isinstance(w, QuantWorkload)}
    assert list(quant) == NAMES
    sequence, stream, peers = quant.values()
    assert (sequence.mode, sequence.input_size, sequence.hidden_size) == ("sequence", 1024, 1024)
    assert sequence.steps == WORKLOADS["seq-lstm-1024"].steps == 200  # type: ignore[union-attr]
    assert (stream.mode, stream.input_size, stream.hidden_size) == ("stream", 512, 512)
    assert (peers.mode, peers.hidden_size, peers.steps) == ("sequence", 512, 1000)
    assert peers.peers
    assert not sequence.peers and not stream.peers
    assert sequence.category == "quantized"
    # A sequence step reads W_hh (the input projection is one GEMM over all steps), a stream
    # step W_ih and W_hh; int8 adds a float32 scale per row of each.
    assert sequence.step_weight_bytes("fp32") == 16 * MIB
    assert sequence.step_weight_bytes("fp16") == sequence.step_weight_bytes("bf16") == 8 * MIB
    assert sequence.step_weight_bytes("int8") == 4 * MIB + 4 * 4096
    assert stream.step_weight_bytes("fp32") == 8 * MIB
    assert stream.step_weight_bytes("int8") == 2 * MIB + 2 * 4 * 2048
    assert peers.step_weight_bytes("int8") == MIB + 4 * 2048
    assert sequence.describe(20) == "LSTM I=1024 H=1024: whole sequence, B=1, T=20"
    assert stream.describe() == "LSTM I=512 H=512: s.step(x, out=y), one step per call, batch 1"
    for workload in quant.values():  # what a workload is, not what it should reach
        assert not _VERDICT_WORDS.search(str(asdict(workload)) + workload.describe())


def _check_results(workload: dict[str, Any], engines: list[str]) -> None:
    """Every engine ran, matched its reference, and its figures follow from its time."""
    results = {r["engine"]: r for r in workload["results"]}
    assert list(results) == engines
    fp32_us = results["pyrnn-fp32"]["us_per_step"]
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        weights = entry["weights"]
        assert name.split("-")[1] == weights
        tolerance = entry["tolerance"]
        if entry["library"] == "pyrnn":
            assert entry["checked_against"] == f"pyrnn's scalar kernels, {weights}"
            assert entry["max_abs_err"] <= tolerance["atol"] + tolerance["rtol"]  # |ref| < 1
            assert entry["ratio_vs_pyrnn"] == 1.0
        else:
            assert entry["checked_against"] == "the fp32 model"
            assert (tolerance["atol"], tolerance["rtol"]) == PEER_TOLERANCES[weights]
            assert entry["err_vs_fp32"] == entry["max_abs_err"]
            assert entry["ratio_vs_pyrnn"] == pytest.approx(
                entry["us_per_step"] / results[f"pyrnn-{weights}"]["us_per_step"]
            )
        if name == "pyrnn-fp32":
            assert entry["err_vs_fp32"] == entry["max_abs_err"]  # the same reference
        elif entry["library"] == "pyrnn":
            assert entry["err_vs_fp32"] > entry["max_abs_err"]  # narrow weights round
        bound = workload["bounds"][weights]
        assert entry["pct_bound"] == pytest.approx(100 * bound["us"] / entry["us_per_step"])
        assert entry["speedup_vs_fp32"] == pytest.approx(fp32_us / entry["us_per_step"])
        assert entry["gflops"] == pytest.approx(
            workload["flops_per_step"] / (entry["us_per_step"] * 1e3)
        )
    quant = WORKLOADS[workload["name"]]
    assert isinstance(quant, QuantWorkload)
    assert set(workload["bounds"]) == {"fp32", "fp16", "bf16", "int8"}
    for weights, bound in workload["bounds"].items():
        assert bound["weight_bytes"] == quant.step_weight_bytes(weights)
        assert bound["us"] == max(bound["compute_us"], bound["memory_us"])


def test_bench_quant_workloads_table_json_and_png(tmp_path):
    report_path, chart_path = tmp_path / "r.json", tmp_path / "r.png"
    args = [*QUICK, "--workloads", ",".join(NAMES)]
    result = run([COMPARE, *args, "--json", str(report_path), "--png", str(chart_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    # The tables, before the goals compare.py judges on them.
    out = result.stdout.split("\nGoals (benchmarks/goals.py)", 1)[0]
    assert "Weights in each type of pyrnn.quantize, batch 1, 1 thread:" in out
    header = next(line for line in out.splitlines() if line.startswith("workload"))
    assert header.split() == [
        "workload", "engine", "weights", "us/step", "%", "bound", "x", "fp32", "x", "pyrnn",
        "check", "err", "err", "vs", "fp32", "call",
    ]  # fmt: skip
    assert "int8 4 MiB + 16 KiB scales (" in out  # the seq workload's W_hh, per step
    assert "int8 2 MiB + 16 KiB scales (" in out  # the stream step's W_ih and W_hh
    assert "Not timed:" not in out
    assert not _VERDICT_WORDS.search(out)  # the tables measure; goals.py judges

    report = json.loads(report_path.read_text())
    assert [w["name"] for w in report["workloads"]] == NAMES
    assert not _VERDICT_WORDS.search(json.dumps(report["workloads"]))
    sequence, stream, peers = report["workloads"]
    assert (sequence["category"], sequence["mode"]) == ("quantized", "sequence")
    assert sequence["workload"]["steps"] == 20  # --quick: a tenth of T=200
    assert peers["workload"]["steps"] == 100
    assert "steps" not in stream["workload"]  # a stream has no sequence length
    assert stream["tolerance"]["pyrnn"]["steps_checked"] == CHECK_STEPS
    assert "peers" not in stream["tolerance"] and "peers" in peers["tolerance"]
    _check_results(sequence, PYRNN_ENGINES)
    _check_results(stream, PYRNN_ENGINES)
    _check_results(peers, PYRNN_ENGINES + PEER_ENGINES)
    for entry in sequence["results"]:
        assert len(entry["times_s"]) == 1
        assert entry["us_per_step"] == pytest.approx(entry["median_s"] / 20 * 1e6)
    for entry in stream["results"]:
        assert len(entry["times_us"]) == 1 and entry["us_per_step"] == entry["times_us"][0]
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


def test_without_the_peers_pyrnn_is_still_measured(tmp_path):
    report_path = tmp_path / "r.json"
    args = [*QUICK, "--workloads", "quant-peers-lstm-512"]
    result = run(["-c", _WITHOUT_PEERS, COMPARE, *args, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    (workload,) = json.loads(report_path.read_text())["workloads"]
    results = {r["engine"]: r for r in workload["results"]}
    assert list(results) == PYRNN_ENGINES + PEER_ENGINES
    for name in PYRNN_ENGINES:
        assert results[name]["status"] == "ok"
    for name in PEER_ENGINES:
        assert results[name]["status"] == "unavailable"
        assert "not installed" in results[name]["reason"]
    assert "Not timed:" in result.stdout and "quant-peers-lstm-512 / ort-int8-1t" in result.stdout


# -- the engines ---------------------------------------------------------------------------------
TINY = QuantWorkload("tiny", "tiny", "sequence", 5, 7, steps=9, peers=True)
TINY_STREAM = QuantWorkload("tiny-stream", "tiny", "stream", 5, 7)


def test_pyrnn_engines_match_the_scalar_kernels_on_the_same_weights(isa):
    case = quant_case(TINY, seed=2)
    assert [m.weight_dtype for m in case.modules.values()] == ["fp32", "fp16", "bf16", "int8"]
    for engine in sequence_engines(peers=False):
        module = case.modules[engine.weights]
        output = engine.prepare(case).run()
        reference = scalar_reference(module, case.x)
        np.testing.assert_allclose(output, reference, atol=1e-5, rtol=1e-4, err_msg=engine.name)
    stream_case = quant_case(TINY_STREAM, seed=2)
    for engine in step_engines():
        module = stream_case.modules[engine.weights]
        reference = scalar_stream_reference(module, stream_case.x)
        output = engine.prepare(stream_case).check()
        np.testing.assert_allclose(output, reference, atol=1e-6, rtol=1e-5, err_msg=engine.name)


def test_peers_run_their_own_reduced_precision_lstms():
    import torch

    case = quant_case(TINY, seed=1)
    fp32 = scalar_reference(case.modules["fp32"], case.x)
    lstm = torch_int8_lstm(case.modules["fp32"])
    assert isinstance(lstm, torch.ao.nn.quantized.dynamic.LSTM)
    graph = ort_int8_graph(case.modules["fp32"])
    assert "DynamicQuantizeLSTM" in [node.op_type for node in graph.graph.node]
    tensors = {i.name: i for i in graph.graph.initializer}
    for name in ("W_l0", "R_l0"):  # int8 weights, a scale per gate unit (per channel)
        assert tensors[f"{name}_quantized"].data_type == 3  # TensorProto.INT8
        assert list(tensors[f"{name}_scale"].dims) == [1, 4 * 7]
    engines = {engine.name: engine for engine in sequence_engines()}
    assert list(engines) == PYRNN_ENGINES + PEER_ENGINES
    threads = torch.get_num_threads()
    for name in PEER_ENGINES:
        runner = engines[name].prepare(case)
        with runner.context():
            output = runner.run()
        atol, rtol = PEER_TOLERANCES[engines[name].weights]
        assert output.dtype == np.float32 and output.shape == fp32.shape
        np.testing.assert_allclose(output, fp32, atol=atol, rtol=rtol, err_msg=name)
    assert torch.get_num_threads() == threads  # 1 thread inside the context only


MACHINE = {"fma_peak_gflops": 100.0, "caches": {"L1d": 32 << 10, "L2": 1 << 20, "L3": 32 << 20}}


def _offset(name: str, weights: str, library: str, shift: float) -> QuantEngine:
    """An engine whose output is its reference plus `shift`; its timed calls are counted."""

    def prepare(case: Any) -> Runner:
        module = case.modules["fp32" if library != "pyrnn" else weights]
        reference = scalar_reference(module, case.x) + np.float32(shift)

        def run() -> np.ndarray:
            CALLS.append(name)
            return reference

        return Runner(run=run)

    return QuantEngine(name, library, weights, prepare, call="test")


CALLS: list[str] = []


def test_an_engine_off_its_reference_is_reported_and_not_timed(monkeypatch):
    engines = [
        *sequence_engines(peers=False),
        _offset("pyrnn-wrong", "int8", "pyrnn", 1e-3),  # 10x the tolerance of pyrnn's kernels
        _offset("peer-close", "int8", "peer", 0.04),  # within the int8 peers' 0.05
        _offset("peer-wrong", "bf16", "peer", 0.03),  # beyond the bf16 peers' 0.01
    ]
    monkeypatch.setattr("harness.quantized.sequence_engines", lambda peers: engines)
    CALLS.clear()
    options = BenchOptions(quick=True, repeats=2)
    report = run_quant_workload(TINY, MACHINE, options, lambda message: None)
    results = {r["engine"]: r for r in report["results"]}
    assert results["pyrnn-wrong"]["status"] == "mismatch"
    assert results["pyrnn-wrong"]["max_abs_err"] == pytest.approx(1e-3, rel=1e-3)
    assert results["peer-wrong"]["status"] == "mismatch"
    assert "0.01 + 0.01*|ref|" in results["peer-wrong"]["reason"]
    assert CALLS.count("pyrnn-wrong") == CALLS.count("peer-wrong") == 1  # checked, never timed
    close = results["peer-close"]
    assert close["status"] == "ok" and close["checked_against"] == "the fp32 model"
    assert close["err_vs_fp32"] == pytest.approx(0.04, rel=1e-3)
    assert CALLS.count("peer-close") == 1 + 1 + 2 * 2  # checked, warmed up, twice: untimed + timed
    assert "us_per_step" not in results["pyrnn-wrong"] and "pct_bound" in close
    for name in PYRNN_ENGINES:
        assert results[name]["status"] == "ok"
    # Every weight type's bound, the int8 one from its bytes: 4*7 rows of 7 + their scales.
    assert report["bounds"]["int8"]["weight_bytes"] == 28 * 7 + 4 * 28
    assert report["bounds"]["fp32"]["weight_bytes"] == 4 * 28 * 7


def test_the_table_says_why_an_engine_was_not_timed(monkeypatch):
    from harness.report import format_quantized

    engines = [*sequence_engines(peers=False), _offset("pyrnn-wrong", "int8", "pyrnn", 1e-3)]
    monkeypatch.setattr("harness.quantized.sequence_engines", lambda peers: engines)
    options = BenchOptions(quick=True, repeats=1)
    report = run_quant_workload(TINY, MACHINE, options, lambda message: None)
    lines = format_quantized({"workloads": [report]})
    (row,) = [line for line in lines if " pyrnn-wrong " in line]
    assert row.split()[1:] == ["int8", "mismatch"]
    assert lines[-2] == "Not timed:"
    assert lines[-1].startswith("  tiny / pyrnn-wrong: mismatch: max |err| 0.001 > 0.0001")


# -- the goals (benchmarks/goals.py) --------------------------------------------------------------
def _quant(name: str, times: dict[str, float | None]) -> dict[str, Any]:
    """A stubbed quantized workload: each engine's us per step, None for not timed."""
    results = [
        {"engine": engine, "status": "unavailable"}
        if us is None
        else {"engine": engine, "status": "ok", "us_per_step": us}
        for engine, us in times.items()
    ]
    return {"name": name, "category": "quantized", "results": results}


def test_quant_goals_are_the_ratios_of_two_engines_of_one_run(monkeypatch):
    goals = load_script("goals", monkeypatch)
    quant_goals = [g for g in goals.GOALS if g.workload.startswith("quant-")]
    assert goals.GOALS[9 : 9 + len(quant_goals)] == tuple(quant_goals)  # after the model goals
    quant = [(g.workload, g.metric, g.target, g.at_most) for g in quant_goals]
    assert quant == [
        ("quant-seq-lstm-1024", "pyrnn-fp32 / pyrnn-int8", 4.0, False),
        ("quant-seq-lstm-1024", "pyrnn-fp32 / pyrnn-fp16", 1.8, False),
        ("quant-seq-lstm-1024", "pyrnn-fp32 / pyrnn-bf16", 1.8, False),
        ("quant-stream-lstm-512", "pyrnn-fp32 / pyrnn-int8", 3.0, False),
        ("quant-stream-lstm-512", "pyrnn-fp32 / pyrnn-fp16", 1.7, False),
        ("quant-stream-lstm-512", "pyrnn-fp32 / pyrnn-bf16", 1.7, False),
        ("quant-peers-lstm-512", "ort-int8-1t / pyrnn-int8", 1.5, False),
        ("quant-peers-lstm-512", "torch-int8-1t / pyrnn-int8", 1.5, False),
        ("quant-peers-lstm-512", "torch-bf16-1t / pyrnn-bf16", 1.0, False),
    ]
    for goal in quant_goals:
        engines = goal.metric.split(" / ")
        assert all(e in PYRNN_ENGINES + PEER_ENGINES for e in engines)

    sequence = _quant(
        "quant-seq-lstm-1024",
        {"pyrnn-fp32": 400.0, "pyrnn-fp16": 200.0, "pyrnn-bf16": 250.0, "pyrnn-int8": 100.0},
    )
    verdicts = goals.evaluate([sequence])
    assert [(v["metric"], v["value"], v["status"]) for v in verdicts] == [
        ("pyrnn-fp32 / pyrnn-int8", 4.0, "met"),  # at least: 4 >= 4
        ("pyrnn-fp32 / pyrnn-fp16", 2.0, "met"),
        ("pyrnn-fp32 / pyrnn-bf16", 1.6, "missed"),
    ]
    lines = goals.format_goals(verdicts)
    assert lines[0] == (
        "goal met: LSTM 1024 over T=200 (B=1): int8 weights >= 4x faster than fp32 "
        "(measured 4.00x, target 4x)"
    )
    assert lines[2].endswith("(measured 1.60x, target 1.8x)")


def test_quant_goals_whose_engines_did_not_run_are_not_measured(monkeypatch):
    goals = load_script("goals", monkeypatch)
    peers = _quant(
        "quant-peers-lstm-512",
        {
            "pyrnn-fp32": 100.0,
            "pyrnn-bf16": 50.0,
            "pyrnn-int8": 20.0,
            "torch-int8-1t": 30.0,
            "ort-int8-1t": None,  # not installed
            "torch-bf16-1t": 49.0,
        },
    )
    verdicts = goals.evaluate([peers])
    assert [(v["metric"], v["status"]) for v in verdicts] == [
        ("ort-int8-1t / pyrnn-int8", "not measured"),
        ("torch-int8-1t / pyrnn-int8", "met"),  # 1.5 >= 1.5
        ("torch-bf16-1t / pyrnn-bf16", "missed"),  # 0.98 < 1
    ]
    assert verdicts[0]["value"] is None
    lines = goals.format_goals(verdicts)
    assert lines[0] == (
        "goal not measured: LSTM 512 over T=1000 (B=1, 1 thread): pyrnn int8 >= 1.5x faster "
        "than ONNX Runtime's DynamicQuantizeLSTM"
    )
    # pyrnn fp32 not timed: no speed-up over it can be judged.
    stream = _quant("quant-stream-lstm-512", {"pyrnn-fp32": None, "pyrnn-int8": 10.0})
    assert [v["status"] for v in goals.evaluate([stream])] == ["not measured"] * 3


def test_quantized_script_prints_the_table_and_the_quant_goals(tmp_path, monkeypatch):
    report_path = tmp_path / "q.json"
    script = str(BENCHMARKS / "quantized.py")
    workloads = "quant-stream-lstm-512,quant-peers-lstm-512"
    result = run([script, *QUICK, "--workloads", workloads, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert [w["name"] for w in report["workloads"]] == workloads.split(",")
    assert report["machine"]["fma_peak_gflops"] > 0
    goals = load_script("goals", monkeypatch)
    assert [v["goal"] for v in report["goals"]] == [
        g.text for g in goals.GOALS if g.workload in workloads.split(",")
    ]
    assert len(report["goals"]) == 6
    by_name = {w["name"]: w for w in report["workloads"]}
    for verdict in report["goals"]:
        times = {r["engine"]: r["us_per_step"] for r in by_name[verdict["workload"]]["results"]}
        numerator, denominator = verdict["metric"].split(" / ")
        assert verdict["value"] == times[numerator] / times[denominator]
        met = verdict["value"] >= verdict["target"]
        assert verdict["status"] == ("met" if met else "missed")
        assert f"goal {verdict['status']}: {verdict['goal']} (measured " in result.stdout
    table, verdicts = result.stdout.split("\n\ngoal ", 1)
    assert "Weights in each type of pyrnn.quantize" in table
    assert not _VERDICT_WORDS.search(table)
    assert len(verdicts.splitlines()) == 6


def test_compare_script_judges_the_quant_goals(monkeypatch, capsys):
    compare = load_script("compare", monkeypatch)
    measured = [
        _quant(
            "quant-stream-lstm-512",
            {"pyrnn-fp32": 300.0, "pyrnn-fp16": 150.0, "pyrnn-bf16": 180.0, "pyrnn-int8": 90.0},
        )
    ]

    monkeypatch.setattr(compare, "run_bench", lambda options, progress: {"workloads": measured})
    monkeypatch.setattr(compare, "format_report", lambda report: "")
    assert compare.compare(["--workloads", "quant-stream-lstm-512"]) == 0
    out = capsys.readouterr().out
    assert "benchmarks/quantized.py time their workloads alone" in out
    verdicts = [line for line in out.splitlines() if line.startswith("goal ")]
    assert [line.split(":")[0] for line in verdicts] == ["goal met", "goal met", "goal missed"]
    assert verdicts[0].endswith("(measured 3.33x, target 3x)")
    assert verdicts[2].endswith("(measured 1.67x, target 1.7x)")


def test_compare_help_lists_the_quant_workloads(tmp_path):
    result = run([COMPARE, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--workloads {','.join(NAMES)}" in result.stdout
    assert BenchOptions().workloads[-3:] == NAMES  # in the default run
