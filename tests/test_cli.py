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
import tempfile
from pathlib import Path

import numpy as np
import pytest
from unprivileged import can_drop_privileges, run_python, scratch_folder

import pyrnn
from pyrnn.bench import (
    BenchOptions,
    Engine,
    Runner,
    StepEngine,
    StepRunner,
    flops_per_step,
    lower_bound_us,
    recurrent_weight_bytes,
    scalar_reference,
    scalar_stream_reference,
    step_engines,
    time_interleaved,
    time_round_robin,
)
from pyrnn.bench.runner import load_default_model, run_engine
from pyrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
ENGINES = ["pyrnn", "pyrnn-1t", "torch-1t", "torch", "ort-1t", "ort"]
STEP_ENGINES = ["pyrnn", "pyrnn-out", "pyrnn-out-1t", "torch-1t", "ort-1t"]


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
    assert "Whole sequence of" not in out and "Stream:" not in out  # only with --compare
    assert "Comparison" not in out and "Streaming" not in out  # the project's suite


# Words of a verdict on a goal, which the package never prints or writes.
_VERDICT_WORDS = re.compile(r"goal|target|\bmet\b|missed", re.IGNORECASE)


def assert_measurements_only(*texts: str) -> None:
    for text in texts:
        assert not _VERDICT_WORDS.search(text), _VERDICT_WORDS.findall(text)


# Names of the project's fixed workloads (benchmarks/harness/workloads.py), which the installed
# package never speaks of: a pattern, not the list, so that new workloads are caught as well.
_WORKLOAD_NAMES = re.compile(
    r"\b(seq|batch|stack|stream|model|quant)-(lstm|gru|rnn|bilstm|overhead|stream|seq|peers)\b"
)


def assert_no_workload_names(*texts: str) -> None:
    for text in texts:
        assert not _WORKLOAD_NAMES.search(text), _WORKLOAD_NAMES.findall(text)


def report_text(report: dict) -> str:
    """The JSON report as text, without the model's path (where pyrnn is installed, any name)."""
    return json.dumps({**report, "model": {**report["model"], "path": ""}})


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


def test_bench_compare_times_the_model_on_every_engine(tmp_path):
    report_path = tmp_path / "r.json"
    args = ["bench", "--quick", "--repeats", "1", "--compare", "--json", str(report_path)]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Whole sequence of default.safetensors (lstm I=40 H=128 layers=2), batch 1" in out
    assert "Stream: one step per call from Python, batch 1" in out
    headers = [line.split() for line in out.splitlines() if line.startswith("engine")]
    assert headers == [
        ["engine", "threads", "us/step", "GFLOP/s", "%", "peak", "x", "pyrnn", "max", "err"],
        ["engine", "threads", "us/step", "x", "out=", "max", "err", "call"],
    ]
    report = json.loads(report_path.read_text())
    assert report["cpu_info"] == pyrnn.cpu_info()
    assert report["machine"]["fma_peak_gflops"] > 0
    assert set(report["machine"]["read_bandwidth"]) == {"L2", "L3", "DRAM"}
    assert set(report["model"]["modes"]) == {"sequence", "step"}
    assert "workloads" not in report
    sequence, step = report["compare"]["sequence"], report["compare"]["step"]
    assert sequence["steps"] == report["model"]["steps"] == 100
    results = {r["engine"]: r for r in sequence["results"]}
    assert list(results) == ENGINES
    for name, entry in results.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-4
        assert len(entry["times_s"]) == 1
        assert entry["ratio_vs_pyrnn"] > 0
        assert entry["gflops"] == pytest.approx(
            sequence["flops_per_step"] / (entry["us_per_step"] * 1e3)
        )
    assert results["pyrnn"]["ratio_vs_pyrnn"] == 1.0
    steps = {r["engine"]: r for r in step["results"]}
    assert list(steps) == STEP_ENGINES
    for name, entry in steps.items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["max_abs_err"] <= 1e-5 + 1e-4 * 1.0  # |ref| < 1 after tanh
        assert len(entry["times_us"]) == 1 and entry["us_per_step"] == entry["times_us"][0]
        assert entry["ratio_vs_pyrnn_out"] == pytest.approx(
            entry["us_per_step"] / steps["pyrnn-out"]["us_per_step"]
        )
    # The 2-layer model has no single cell: torch and ORT run the stacked module step by step.
    assert steps["torch-1t"]["call"] == "nn.LSTM per step (state passed back), inference_mode"
    assert steps["ort-1t"]["call"] == "session.run per step (to_onnx graph, state fed back)"
    assert_measurements_only(out, report_text(report))
    assert_no_workload_names(out, report_text(report))


def test_bench_compare_runs_the_modes_a_model_has(tmp_path):
    # A bidirectional GRU has no stream and a cell no whole sequence: each is compared in the
    # mode it has.
    bidirectional, cell = tmp_path / "bi.safetensors", tmp_path / "cell.safetensors"
    pyrnn.save(pyrnn.GRU(3, 5, bidirectional=True, seed=0), bidirectional)
    pyrnn.save(pyrnn.RNNCell(3, 5, nonlinearity="relu", seed=0), cell)
    args = ["bench", "--quick", "--repeats", "1", "--compare"]
    for path, present, absent in ((bidirectional, "sequence", "step"), (cell, "step", "sequence")):
        report_path = tmp_path / f"{path.stem}.json"
        result = run_cli([*args, "--model", str(path), "--json", str(report_path)], tmp_path)
        assert result.returncode == 0, result.stderr
        compare = json.loads(report_path.read_text())["compare"]
        assert compare[absent] is None
        statuses = {r["engine"]: r["status"] for r in compare[present]["results"]}
        assert set(statuses.values()) == {"ok"}, statuses
    # A projecting LSTM has no ONNX graph (the operator has no projection): unavailable.
    projected = tmp_path / "projected.safetensors"
    pyrnn.save(pyrnn.LSTM(3, 5, proj_size=2, num_layers=2, seed=0), projected)
    report_path = tmp_path / "projected.json"
    result = run_cli([*args, "--model", str(projected), "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    compare = json.loads(report_path.read_text())["compare"]
    for mode in ("sequence", "step"):
        statuses = {r["engine"]: r["status"] for r in compare[mode]["results"]}
        for engine, status in statuses.items():
            assert status == ("unavailable" if engine.startswith("ort") else "ok"), statuses
    assert "Not timed:" in result.stdout and "proj_size=2 cannot be exported" in result.stdout


def test_bench_compare_on_a_quantised_model_reports_the_peers_unavailable(tmp_path):
    # The peers run float32 weights: pyrnn's int8 rows are timed, the peers' say why not.
    path, report_path = tmp_path / "int8.safetensors", tmp_path / "r.json"
    pyrnn.save(pyrnn.quantize(pyrnn.LSTM(8, 16, seed=0), "int8"), path)
    args = ["bench", "--quick", "--repeats", "1", "--compare", "--model", str(path)]
    result = run_cli([*args, "--json", str(report_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    compare = json.loads(report_path.read_text())["compare"]
    for mode in ("sequence", "step"):
        for entry in compare[mode]["results"]:
            if entry["library"] == "pyrnn":
                assert entry["status"] == "ok", entry
            else:
                assert entry["status"] == "unavailable", entry
                assert "int8" in entry["reason"], entry
    assert "Not timed:" in result.stdout


def test_an_engine_that_fails_to_prepare_is_reported_and_the_others_timed():
    module = pyrnn.GRU(3, 4, seed=0)
    x = np.ones((5, 1, 3), np.float32)
    reference = scalar_reference(module, x)

    def choke(module, x):
        raise TypeError("cannot build this model")

    engines = [
        Engine("choking", "test", choke),
        Engine("fine", "test", lambda m, x: Runner(run=lambda: reference)),
    ]
    from pyrnn.bench import run_engines

    choking, fine = run_engines(engines, module, x, reference, 1.0, 1.0, BenchOptions(repeats=1))
    assert choking["status"] == "error"
    assert choking["reason"] == "TypeError: cannot build this model"
    assert fine["status"] == "ok" and len(fine["times_s"]) == 1


def test_bench_compare_on_a_batch_first_model_times_one_sequence(tmp_path):
    # A batch_first model reads (N, T, I): its sequence must be one row of T steps, not T rows
    # of one step, or its time per step would be that of a batch of T.
    from pyrnn.bench import run_model
    from pyrnn.bench.runner import model_input

    options = BenchOptions(quick=True, repeats=1)
    module = pyrnn.LSTM(3, 4, batch_first=True, seed=0)
    assert model_input(module, options).shape == (1, 100, 3)
    assert model_input(pyrnn.LSTM(3, 4, seed=0), options).shape == (100, 1, 3)
    shapes = []

    class Recording(pyrnn.LSTM):
        def __call__(self, x, *args, **kwargs):
            shapes.append(np.shape(x))
            return super().__call__(x, *args, **kwargs)

    recording = Recording(3, 4, batch_first=True, seed=0)
    run_model(recording, "m", {"fma_peak_gflops": 100.0}, options)
    assert shapes and set(shapes) == {(1, 100, 3)}


def test_missing_peers_are_reported_unavailable(tmp_path):
    report_path = tmp_path / "r.json"
    args = ["bench", "--quick", "--repeats", "1", "--compare", "--json", str(report_path)]
    result = run_cli(args, tmp_path, code=_WITHOUT_PEERS)
    assert result.returncode == 0, result.stderr
    compare = json.loads(report_path.read_text())["compare"]
    sequence = {r["engine"]: r for r in compare["sequence"]["results"]}
    assert sequence["pyrnn"]["status"] == "ok"
    for name in ("torch-1t", "torch", "ort-1t", "ort"):
        assert sequence[name]["status"] == "unavailable"
        assert "not installed" in sequence[name]["reason"]
    step = {r["engine"]: r for r in compare["step"]["results"]}
    for name in ("pyrnn", "pyrnn-out", "pyrnn-out-1t"):
        assert step[name]["status"] == "ok" and "ratio_vs_pyrnn_out" in step[name]
    for name in ("torch-1t", "ort-1t"):
        assert step[name]["status"] == "unavailable"
        assert "not installed" in step[name]["reason"]
        assert "ratio_vs_pyrnn_out" not in step[name]
    assert "unavailable" in result.stdout and "Not timed:" in result.stdout
    assert_measurements_only(result.stdout, report_text(json.loads(report_path.read_text())))


def test_the_installed_package_holds_no_benchmark_suite():
    # pyrnn ships the engine and `pyrnn bench` for the user's own model: no fixed workloads,
    # goals or verdicts (those are the project's, in benchmarks/).
    import importlib.util

    assert importlib.util.find_spec("pyrnn.benchmarking") is None
    root = Path(pyrnn.__file__).parent
    assert not (root / "benchmarking").exists()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".pyi"):  # sources and stubs
            assert_no_workload_names(path.read_text(encoding="utf-8"))
    for path in [root / "cli.py", *sorted((root / "bench").glob("*.py"))]:
        assert_measurements_only(path.read_text(encoding="utf-8"))


# Subprocesses start outside the source tree, whose pyrnn/ has no compiled extension.
OUTSIDE = tempfile.gettempdir()


def test_the_engine_extension_holds_no_test_hooks():
    # The oracle, the activation hook, the step-timing loop and the switches that make the engine
    # take rare paths live in pyrnn._testing; _core's surface is the engine (plus the probe that
    # `pyrnn bench` reports and the C API capsule).
    code = (
        "import sys, pyrnn; from pyrnn import _core; "
        "print(sorted(n for n in dir(_core) if n.startswith('_') and not n.startswith('__'))); "
        "print(sorted(n for n in dir(_core.Stream) if n.startswith('_time'))); "
        "print('pyrnn._testing' in sys.modules)"
    )
    lines = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=OUTSIDE
    ).stdout.splitlines()
    assert lines == [
        "['_C_API', '_probe_fma_peak', '_probe_isas', '_probe_read_bandwidth', '_testing_hooks']",
        "[]",
        "False",  # import pyrnn does not load the test hooks
    ]
    assert not hasattr(pyrnn._core, "reference_forward")
    from pyrnn import _testing

    hooks = {"reference_forward", "activation", "isa_choice", "pretend_cpu_features"}
    hooks |= {"count_core_calls", "set_physical_memory", "set_split_every_step", "time_steps"}
    assert hooks <= set(dir(_testing))


def test_test_hooks_from_another_build_are_refused_naming_both_versions():
    # _testing reaches _core's state through a versioned capsule; a stale build of either side
    # must not call through a table of another layout.
    code = (
        "import ctypes; from pyrnn import _core\n"
        "new = ctypes.pythonapi.PyCapsule_New\n"
        "new.restype = ctypes.py_object\n"
        "new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]\n"
        "table = (ctypes.c_int * 16)(999)\n"
        "_core._testing_hooks = new(ctypes.addressof(table), b'pyrnn._core._testing_hooks', None)\n"
        "from pyrnn import _testing\n"
        "try:\n"
        "    _testing.set_split_every_step(False)\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=OUTSIDE
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"test hooks are version 999, this extension expects \d+", result.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The project's suite takes these (benchmarks/compare.py), not the package.
        (["bench", "--workloads", "seq-lstm-256"], "unrecognized arguments: --workloads"),
        (["bench", "--png", "r.png"], "unrecognized arguments: --png"),
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
    lstm = pyrnn.LSTM(256, 256).config
    assert flops_per_step(lstm) == 2 * 4 * 256 * (256 + 256)
    assert flops_per_step(lstm, rows=64) == 64 * 2 * 4 * 256 * 512
    stack = pyrnn.LSTM(64, 128, num_layers=2, bidirectional=True).config
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


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "make",
    [
        lambda bias: pyrnn.LSTM(5, 7, bias=bias, seed=1),
        lambda bias: pyrnn.GRU(5, 7, bias=bias, seed=1),
        lambda bias: pyrnn.RNN(5, 7, bias=bias, seed=1),
        lambda bias: pyrnn.RNN(5, 7, nonlinearity="relu", bias=bias, seed=1),
        lambda bias: pyrnn.LSTMCell(5, 7, bias=bias, seed=1),
        lambda bias: pyrnn.GRUCell(5, 7, bias=bias, seed=1),
        lambda bias: pyrnn.LSTM(5, 7, num_layers=2, bias=bias, seed=1),
        lambda bias: pyrnn.GRU(5, 7, num_layers=3, batch_first=True, bias=bias, seed=1),
        lambda bias: pyrnn.RNN(5, 7, num_layers=2, nonlinearity="relu", bias=bias, seed=1),
    ],
    ids=[
        "lstm",
        "gru",
        "rnn-tanh",
        "rnn-relu",
        "lstm-cell",
        "gru-cell",
        "lstm-2-layers",
        "gru-3-layers-batch-first",
        "rnn-relu-2-layers",
    ],
)
def test_step_engines_compute_what_pyrnn_computes(make, bias):
    # Three steps carrying the state, with an odd size: a gate order, activation, bias layout or
    # state feedback mistake in a torch or ONNX step engine shows here (tolerances as in bench).
    module = make(bias)
    x = np.random.default_rng(2).standard_normal(5, np.float32)
    reference = scalar_stream_reference(module, x)
    for engine in step_engines():
        np.testing.assert_allclose(
            engine.prepare(module, x).check(), reference, atol=1e-5, rtol=1e-4, err_msg=engine.name
        )
    np.testing.assert_allclose(
        scalar_stream_reference(module, x, 1), module.stream().step(x), atol=1e-6
    )


def test_a_step_engine_with_wrong_output_is_reported_not_timed(monkeypatch):
    from pyrnn.bench.runner import compare_steps

    calls = []

    def broken(module, x):
        def check():
            return scalar_stream_reference(module, x) + 1e-3  # 10x the tolerance

        return StepRunner(check=check, loop=lambda number: calls.append(number) or 1e-6)

    engines = [*step_engines()[:2], StepEngine("broken", "test", broken)]
    monkeypatch.setattr("pyrnn.bench.runner.step_engines", lambda: engines)
    module = pyrnn.LSTM(3, 4, seed=0)
    report = compare_steps(module, BenchOptions(quick=True, repeats=1), lambda m: None)
    results = {r["engine"]: r for r in report["results"]}
    assert results["broken"]["status"] == "mismatch"
    assert results["broken"]["max_abs_err"] == pytest.approx(1e-3, rel=1e-3)
    assert "ratio_vs_pyrnn_out" not in results["broken"]
    assert calls == []  # checked, never timed
    assert results["pyrnn-out"]["status"] == "ok"
    assert results["pyrnn-out"]["ratio_vs_pyrnn_out"] == 1.0


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
    from pyrnn.bench import run_model

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

    monkeypatch.setattr("pyrnn.bench.run_bench", started)
    monkeypatch.setattr("pyrnn.bench.runner.measure_machine", started)


class _Loaded(Exception):
    pass


def _loaded_by_bench(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> pyrnn.Module:
    """The module `pyrnn bench args` would time (stopped before timing it)."""

    def capture(options: object, progress: object, model: tuple | None = None) -> None:
        raise _Loaded(model[0] if model else None)

    monkeypatch.setattr("pyrnn.bench.run_bench", capture)
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


@pytest.mark.parametrize("flag", ["--json"])
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
