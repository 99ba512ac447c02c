"""The project's speed goals, kept in benchmarks/goals.py and judged there on what the package
measured: the verdicts of benchmarks/stream_latency.py, benchmarks/models.py and
benchmarks/compare.py, and that `pyrnn bench` itself prints none of them. Judging is tested on
stubbed measurements; the scripts' own runs use tiny repeat counts, and no test asserts anything
about timings (a goal may be met or missed on any machine)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
QUICK = ["--quick", "--repeats", "1"]
_VERDICT_WORDS = re.compile(r"goal|target|\bmet\b|missed", re.IGNORECASE)


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/NAME.py, freshly loaded (a script folder, not a package: its scripts import
    goals.py as a top-level module)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command], cwd=cwd, capture_output=True, text=True, check=False
    )


# -- stubbed measurements, with the keys `compare.py --json` writes --------------------------------
def _stream(
    name: str, ratios: dict[str, float | None], batch: float | None = None
) -> dict[str, Any]:
    results = [
        {"engine": engine, "status": "unavailable"}
        if ratio is None
        else {"engine": engine, "status": "ok", "ratio_vs_pyrnn_out": ratio}
        for engine, ratio in ratios.items()
    ]
    measured = {"status": "mismatch"} if batch is None else {"status": "ok", "ratio": batch}
    return {
        "name": name,
        "category": "stream",
        "results": results,
        "batch": measured,
        "overhead": None,
    }


def _overhead(overhead_us: float | None) -> dict[str, Any]:
    workload = _stream("stream-overhead", {"pyrnn-out": 1.0, "pyrnn-c++": 0.9})
    workload["batch"] = None
    if overhead_us is not None:
        workload["overhead"] = {"step_us": 1.0, "cpp_us": 1.0 - overhead_us}
        workload["overhead"]["overhead_us"] = overhead_us
    return workload


def _model(name: str, ratios: dict[str, float | None], versus: float | None) -> dict[str, Any]:
    results = [
        {"engine": engine, "status": "unavailable"}
        if ratio is None
        else {"engine": engine, "status": "ok", "ratio_vs_model": ratio}
        for engine, ratio in ratios.items()
    ]
    vs_lstm = {"status": "not measured"} if versus is None else {"status": "ok", "ratio": versus}
    return {"name": name, "category": "model", "results": results, "vs_lstm": vs_lstm}


# -- judging ------------------------------------------------------------------------------------
def test_every_goal_names_a_workload_the_package_measures(monkeypatch):
    from harness import WORKLOADS

    goals = load_script("goals", monkeypatch)
    assert [(g.workload, g.metric, g.target, g.at_most) for g in goals.GOALS[:9]] == [
        ("stream-lstm-64", "x torch-1t", 20.0, False),
        ("stream-lstm-64", "x ort-1t", 10.0, False),
        ("stream-lstm-64", "x batch", 10.0, False),
        ("stream-lstm-64", "ort-1t / pyrnn-onnx", 8.0, False),
        ("stream-overhead", "overhead_us", 1.0, True),
        ("model-stream-head", "model / lstm", 1.3, True),
        ("model-stream-head", "x torch-1t", 15.0, False),
        ("model-stream-head", "x ort-1t", 8.0, False),
        ("model-seq-head", "model / lstm", 1.1, True),
    ]  # then the reduced-precision goals: tests/test_quant_bench.py
    assert all(goal.workload in WORKLOADS for goal in goals.GOALS)


def test_stream_goals_are_judged_at_least_or_at_most(monkeypatch):
    goals = load_script("goals", monkeypatch)
    lstm = _stream("stream-lstm-64", {"pyrnn-out": 1.0, "torch-1t": 20.0, "ort-1t": 9.99}, 2.0)
    # The imported ONNX step against ORT: two engines' times of one run.
    lstm["results"][2]["us_per_step"] = 9.99
    lstm["results"].append({"engine": "pyrnn-onnx", "status": "ok", "us_per_step": 1.25})
    verdicts = [
        v
        for v in goals.evaluate([lstm, _overhead(1.0)])
        if v["metric"] != "pyrnn-out / pyrnn-out-1t"
    ]
    assert [(v["workload"], v["metric"], v["value"], v["status"]) for v in verdicts] == [
        ("stream-lstm-64", "x torch-1t", 20.0, "met"),  # at least: 20 >= 20
        ("stream-lstm-64", "x ort-1t", 9.99, "missed"),
        ("stream-lstm-64", "x batch", 2.0, "missed"),
        ("stream-lstm-64", "ort-1t / pyrnn-onnx", pytest.approx(7.992), "missed"),
        ("stream-overhead", "overhead_us", 1.0, "met"),  # at most: 1 <= 1
    ]
    lines = goals.format_goals(verdicts)
    assert lines[0] == (
        "goal met: LSTM 64 s.step(x, out=y) >= 20x faster than torch LSTMCell (1 thread) "
        "(measured 20.00x, target 20x)"
    )
    assert lines[4] == (
        "goal met: Python overhead of s.step(x, out=y) <= 1 us (measured 1.00 us, target 1 us)"
    )
    (verdict,) = goals.evaluate([_overhead(1.01)])
    assert verdict["status"] == "missed"


def _packed(us: dict[str, float | None]) -> dict[str, Any]:
    results = [
        {"engine": engine, "status": "unavailable"}
        if value is None
        else {"engine": engine, "status": "ok", "us_per_step": value}
        for engine, value in us.items()
    ]
    return {"name": "packed-lstm", "category": "packed", "results": results}


def test_packed_goals_are_judged_at_most_and_at_least(monkeypatch):
    """Per sequence step: packed at most 1.15x padded, torch at least 2x packed."""
    goals = load_script("goals", monkeypatch)
    workload = _packed({"pyrnn-packed": 4.6, "pyrnn-padded": 4.0, "torch-packed-1t": 9.2})
    verdicts = goals.evaluate([workload])
    assert [(v["metric"], v["value"], v["at_most"], v["status"]) for v in verdicts] == [
        ("pyrnn-packed / pyrnn-padded", pytest.approx(1.15), True, "met"),
        ("torch-packed-1t / pyrnn-packed", pytest.approx(2.0), False, "met"),
    ]
    workload = _packed({"pyrnn-packed": 4.7, "pyrnn-padded": 4.0, "torch-packed-1t": None})
    assert [v["status"] for v in goals.evaluate([workload])] == ["missed", "not measured"]


def test_packed_workload_runs_and_reports_per_sequence_step():
    """A tiny packed workload through the suite's runner (no timing is asserted): every
    engine reports its time over the sequence steps it was asked for."""
    from harness import BenchOptions, PackedWorkload
    from harness.packed import run_packed_workload
    from harness.report import format_packed

    tiny = PackedWorkload("tiny-packed", 3, 5, batch=4, max_length=9)
    result = run_packed_workload(tiny, {}, BenchOptions(repeats=1), lambda message: None)
    lengths = tiny.lengths(0)
    assert result["rows"] == int(lengths.sum()) and result["padded_rows"] == 36
    steps = {r["engine"]: r["steps"] for r in result["results"]}
    assert steps == {
        "pyrnn-packed": result["rows"],
        "pyrnn-padded": 36,
        "torch-packed-1t": result["rows"],
    }
    for entry in result["results"]:
        assert entry["status"] == "ok"
        assert entry["us_per_step"] == pytest.approx(entry["median_s"] / entry["steps"] * 1e6)
    table = format_packed({"workloads": [result]})
    assert table[0].startswith("Variable-length batches") and not _VERDICT_WORDS.search(
        "\n".join(table)
    )


def test_stream_goals_whose_measurement_did_not_run_are_not_measured(monkeypatch):
    goals = load_script("goals", monkeypatch)
    # Peers not installed and the batch comparison refused: pyrnn's own ratio is no goal's.
    lstm = _stream("stream-lstm-64", {"pyrnn-out": 1.0, "torch-1t": None, "ort-1t": None})
    verdicts = goals.evaluate([lstm, _overhead(None)])
    assert [v["status"] for v in verdicts] == ["not measured"] * 6  # pyrnn-out-1t did not run
    assert all(v["value"] is None for v in verdicts)
    lines = goals.format_goals(verdicts)
    assert lines[0] == (
        "goal not measured: LSTM 64 s.step(x, out=y) >= 20x faster than torch LSTMCell (1 thread)"
    )
    # A workload without goals, or none that ran, gives no verdict.
    assert goals.evaluate([_stream("stream-gru-64", {"pyrnn-out": 1.0}, 2.0)]) == []
    assert goals.evaluate([]) == []


def _timed(name: str, category: str, us_per_step: dict[str, float | None]) -> dict[str, Any]:
    results = [
        {"engine": engine, "status": "unavailable"}
        if us is None
        else {"engine": engine, "status": "ok", "us_per_step": us}
        for engine, us in us_per_step.items()
    ]
    return {"name": name, "category": category, "results": results}


def test_thread_goals_are_ratios_of_two_engines_of_one_run(monkeypatch):
    goals = load_script("goals", monkeypatch)
    assert [(g.workload, g.metric, g.target, g.at_most) for g in goals.THREAD_GOALS] == [
        *(
            (workload, f"{peer} / pyrnn", 1.2, False)
            for workload in (
                "batch-lstm-256",
                "seq-lstm-1024",
                "stack-bilstm",
                "seq-lstm-256",
                "seq-gru-256",
            )
            for peer in ("torch", "ort")
        ),
        ("batch-lstm-256", "pyrnn-1t / pyrnn", 1.8, False),
        ("seq-lstm-1024", "pyrnn-1t / pyrnn", 1.8, False),
        ("stream-lstm-1024", "pyrnn-out-1t / pyrnn-out", 1.6, False),
        ("stream-lstm-64", "pyrnn-out / pyrnn-out-1t", 1.05, True),
    ]
    batch = _timed(
        "batch-lstm-256",
        "sequence",
        {"pyrnn": 100.0, "pyrnn-1t": 179.0, "torch": 120.0, "ort": None},
    )
    verdicts = {v["metric"]: (v["value"], v["status"]) for v in goals.evaluate([batch])}
    assert verdicts == {
        "torch / pyrnn": (1.2, "met"),
        "ort / pyrnn": (None, "not measured"),
        "pyrnn-1t / pyrnn": (1.79, "missed"),
    }
    small = _timed("stream-lstm-64", "stream", {"pyrnn-out": 1.06, "pyrnn-out-1t": 1.0})
    (verdict,) = [v for v in goals.evaluate([small]) if v["metric"] == "pyrnn-out / pyrnn-out-1t"]
    assert verdict["status"] == "missed" and verdict["value"] == pytest.approx(1.06)
    small = _timed("stream-lstm-64", "stream", {"pyrnn-out": 1.04, "pyrnn-out-1t": 1.0})
    (verdict,) = [v for v in goals.evaluate([small]) if v["metric"] == "pyrnn-out / pyrnn-out-1t"]
    assert verdict["status"] == "met"


def test_model_goals_are_judged_at_most_or_at_least(monkeypatch):
    goals = load_script("goals", monkeypatch)
    workloads = [_model("model-stream-head", {"torch-1t": 15.0, "ort-1t": 7.9}, 1.31)]
    verdicts = goals.evaluate(workloads)
    assert [(v["metric"], v["status"]) for v in verdicts] == [
        ("model / lstm", "missed"),  # 1.31 > 1.3: at most
        ("x torch-1t", "met"),  # 15 >= 15: at least
        ("x ort-1t", "missed"),
    ]  # the sequence goal is left out: its workload did not run
    workloads = [
        _model("model-stream-head", {"torch-1t": None, "ort-1t": 9.0}, 1.3),
        _model("model-seq-head", {}, None),
    ]
    verdicts = goals.evaluate(workloads)
    assert [v["status"] for v in verdicts] == ["met", "not measured", "met", "not measured"]
    lines = goals.format_goals(verdicts)
    assert lines[1].startswith("goal not measured: streamed head model >= 15x faster")
    assert lines[2].endswith("(measured 9.00x, target 8x)")


def test_c_api_goals_are_the_c_api_loop_over_the_core_loop_at_most(monkeypatch):
    goals = load_script("goals", monkeypatch)

    def capi(name: str, ours: float | None, core: float) -> dict[str, Any]:
        results = [{"engine": "pyrnn-c++", "status": "ok", "us_per_step": core}]
        if ours is not None:
            results.append({"engine": "capi-cython", "status": "ok", "us_per_step": ours})
        return {"name": name, "category": "capi", "results": results}

    assert [(g.workload, g.metric, g.target, g.at_most) for g in goals.CAPI_GOALS] == [
        ("capi-lstm-64", "capi-cython / pyrnn-c++", 1.1, True),
        ("capi-lstm-1x16", "capi-cython / pyrnn-c++", 1.1, True),
    ]
    assert not set(goals.CAPI_GOALS) & set(goals.GOALS)  # judged by capi_step.py alone
    workloads = [capi("capi-lstm-64", 0.55, 0.5), capi("capi-lstm-1x16", 0.111, 0.1)]
    verdicts = goals.evaluate(workloads, goals.CAPI_GOALS)
    assert [(v["status"], round(v["value"], 3)) for v in verdicts] == [
        ("met", 1.1),
        ("missed", 1.11),
    ]
    verdicts = goals.evaluate([capi("capi-lstm-64", None, 0.5)], goals.CAPI_GOALS)
    assert [v["status"] for v in verdicts] == ["not measured"]
    assert goals.evaluate(workloads) == []  # not among the package's goals


def test_the_same_engine_is_read_from_each_category_s_own_ratio(monkeypatch):
    # "x torch-1t" is a goal of a stream and of a model workload: each reads its own ratio.
    goals = load_script("goals", monkeypatch)
    stream = _stream("stream-lstm-64", {"torch-1t": 25.0})
    model = _model("model-stream-head", {"torch-1t": 5.0}, None)
    values = {(v["workload"], v["metric"]): v["value"] for v in goals.evaluate([stream, model])}
    assert values[("stream-lstm-64", "x torch-1t")] == 25.0
    assert values[("model-stream-head", "x torch-1t")] == 5.0


# -- the scripts --------------------------------------------------------------------------------
def _check_verdicts_against_the_measurements(report: dict[str, Any], out: str) -> None:
    """Each verdict's value is the measurement in the report, its status follows from the
    target, and its line is printed."""
    by_name = {workload["name"]: workload for workload in report["workloads"]}
    for verdict in report["goals"]:
        workload = by_name[verdict["workload"]]
        ratios = {r["engine"]: r for r in workload["results"] if r["status"] == "ok"}
        metric = verdict["metric"]
        if metric == "model / lstm":
            expected = workload["vs_lstm"]["ratio"]
        elif metric == "x batch":
            expected = workload["batch"]["ratio"]
        elif metric == "overhead_us":
            expected = workload["overhead"]["overhead_us"]
        elif " / " in metric:  # two engines of one run
            numerator, denominator = metric.split(" / ")
            expected = ratios[numerator]["us_per_step"] / ratios[denominator]["us_per_step"]
        else:
            key = "ratio_vs_model" if workload["category"] == "model" else "ratio_vs_pyrnn_out"
            expected = ratios[metric.removeprefix("x ")][key]
        assert verdict["value"] == expected, verdict
        value, target = verdict["value"], verdict["target"]
        met = value <= target if verdict["at_most"] else value >= target
        assert verdict["status"] == ("met" if met else "missed"), verdict
        assert f"goal {verdict['status']}: {verdict['goal']} (measured " in out


def test_stream_latency_script_prints_the_table_and_the_stream_goals(tmp_path, monkeypatch):
    report_path = tmp_path / "s.json"
    workloads = "stream-lstm-64,stream-overhead"
    script = str(BENCHMARKS / "stream_latency.py")
    result = run([script, *QUICK, "--workloads", workloads, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert [w["name"] for w in report["workloads"]] == workloads.split(",")
    goals = load_script("goals", monkeypatch)
    expected = [*goals.GOALS[:5], goals.THREAD_GOALS[-1]]  # the last: LSTM 64 on 1 thread
    assert [v["goal"] for v in report["goals"]] == [g.text for g in expected]
    _check_verdicts_against_the_measurements(report, result.stdout)
    table, verdicts = result.stdout.split("\n\ngoal ", 1)
    assert "Streaming: one step per call from Python" in table
    assert not _VERDICT_WORDS.search(table)  # the package's table, then the verdicts
    assert len(verdicts.splitlines()) == 6


def test_models_script_prints_the_table_and_the_model_goals(tmp_path, monkeypatch):
    report_path = tmp_path / "m.json"
    script = str(BENCHMARKS / "models.py")
    result = run([script, *QUICK, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert [w["name"] for w in report["workloads"]] == ["model-stream-head", "model-seq-head"]
    goals = load_script("goals", monkeypatch)
    assert [v["goal"] for v in report["goals"]] == [g.text for g in goals.GOALS[5:9]]
    _check_verdicts_against_the_measurements(report, result.stdout)
    assert "Whole models converted with pyrnn.from_torch" in result.stdout


def test_compare_script_prints_the_goals_after_the_package_s_report(tmp_path):
    # The real tables first (measurements only), then the verdicts.
    script = str(BENCHMARKS / "compare.py")
    result = run([script, *QUICK, "--workloads", "stream-overhead"], tmp_path)
    assert result.returncode == 0, result.stderr
    bench, goals = result.stdout.split("\nGoals (benchmarks/goals.py), judged on this run", 1)
    assert "Python overhead of s.step(x, out=y), 1-unit LSTM:" in bench
    assert not _VERDICT_WORDS.search(bench)
    (verdict,) = [line for line in goals.splitlines() if line.startswith("goal ")]
    assert re.fullmatch(
        r"goal (met|missed): Python overhead of s\.step\(x, out=y\) <= 1 us "
        r"\(measured -?\d+\.\d\d us, target 1 us\)",
        verdict,
    )


def compare_script(monkeypatch: pytest.MonkeyPatch, workloads: list[dict[str, Any]]) -> Any:
    """benchmarks/compare.py with its run replaced by one returning a report of `workloads` (and
    its tables by nothing); the options of each run are in `calls`."""
    module = load_script("compare", monkeypatch)
    module.calls = []

    def bench(options: Any, progress: Any) -> dict[str, Any]:
        module.calls.append(options)
        return {"workloads": workloads}

    monkeypatch.setattr(module, "run_bench", bench)
    monkeypatch.setattr(module, "format_report", lambda report: "")
    return module


def test_compare_script_judges_the_goals_of_what_ran(tmp_path, monkeypatch, capsys):
    measured = [
        _stream("stream-lstm-64", {"pyrnn-out": 1.0, "torch-1t": 21.0, "ort-1t": 8.5}, 2.0),
        _model("model-seq-head", {}, 1.04),
    ]
    compare = compare_script(monkeypatch, measured)
    assert compare.compare(["--quick", "--workloads", "stream-lstm-64,model-seq-head"]) == 0
    (options,) = compare.calls
    assert options.quick and options.workloads == ["stream-lstm-64", "model-seq-head"]
    out = capsys.readouterr().out
    assert "Goals (benchmarks/goals.py), judged on this run" in out
    verdicts = [line for line in out.splitlines() if line.startswith("goal ")]
    # The LSTM 64 one-thread comparison did not run: pyrnn-out-1t is not in the stub.
    assert verdicts.pop() == (
        "goal not measured: LSTM 64 s.step(x, out=y) on the default threads no slower than on "
        "1 thread (5% noise)"
    )
    assert [line.split(":")[0] for line in verdicts] == [
        "goal met", "goal missed", "goal missed", "goal not measured", "goal met"
    ]  # fmt: skip
    assert verdicts[0].startswith("goal met: LSTM 64 s.step(x, out=y) >= 20x faster")
    assert verdicts[1].endswith("(measured 8.50x, target 10x)")
    assert verdicts[2].startswith("goal missed: LSTM 64 batch=64 stream >= 10x the throughput")
    assert verdicts[3].startswith("goal not measured: LSTM 64 imported from ONNX")
    assert verdicts[4].startswith("goal met: 2-layer LSTM 256 + Linear head")  # only what ran
    assert verdicts[4].endswith("(measured 1.04x, target 1.1x)")

    report_path = tmp_path / "mine.json"
    compare.calls.clear()
    assert compare.compare(["--json", str(report_path)]) == 0
    (options,) = compare.calls
    from harness import WORKLOADS

    assert not options.quick and options.workloads == list(WORKLOADS)
    # The report judged is the one written: goals.py reads nothing the JSON does not hold.
    assert json.loads(report_path.read_text()) == {"workloads": measured}
    assert "goal met" in capsys.readouterr().out


def test_compare_script_without_goal_workloads_prints_no_goals(monkeypatch, capsys):
    compare = compare_script(monkeypatch, [_stream("stream-gru-64", {"pyrnn-out": 1.0}, 2.0)])
    assert compare.compare(["--workloads", "stream-gru-64"]) == 0
    assert not _VERDICT_WORDS.search(capsys.readouterr().out)
