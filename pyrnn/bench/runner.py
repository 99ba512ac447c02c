"""Runs `pyrnn bench`: machine probes, the bundled (or given) model in whole-sequence use and
streamed step by step, and, with compare, the same model on every engine: its whole sequence on
pyrnn, PyTorch and ONNX Runtime (engines.py) and its steps one call each (steps.py). Each
engine's output is checked against pyrnn's scalar path before it is timed; times are medians over
repeats after a warm-up (best loops for steps). Returns one JSON-ready dict; report.py formats
it."""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from .. import __version__, isa
from .._base import Module
from ..io import FormatError, load
from .engines import Engine, Runner, Unavailable, sequence_engines
from .machine import flops_per_step, measure_machine
from .steps import ATOL as STEP_ATOL
from .steps import CHECK_STEPS, step_engines
from .steps import RTOL as STEP_RTOL
from .timing import (
    prepare_step_engine,
    record_timings,
    scalar_stream_reference,
    time_prepared_steps,
)

# Every engine must match pyrnn's scalar path within |y - ref| <= ATOL + RTOL*|ref|. Engines sum
# in different orders (blocked GEMMs, SIMD lanes, MKL) and the differences compound over up to
# 1000 recurrent steps; observed gaps are ~1e-6, while a real mistake (a swapped gate, a missing
# bias) is off by 1e-2 or more, so 1e-4 separates the two with room on both sides.
ATOL = 1e-4
RTOL = 1e-4

DEFAULT_MODEL_STEPS = 1000
QUICK_STEP_DIVISOR = 10


@dataclass
class BenchOptions:
    model: str | None = None  # None: the bundled default model
    # How to read `model` when it is a plain PyTorch state_dict (see pyrnn.load).
    kind: str | None = None
    prefix: str = ""
    nonlinearity: str | None = None
    batch_first: bool | None = None
    compare: bool = False  # also time the model on PyTorch and ONNX Runtime
    repeats: int | None = None  # None: 5, or 2 with quick
    warmup: int = 1
    quick: bool = False
    probe_seconds: float | None = None  # None: 0.3, or 0.05 with quick
    seed: int = 0

    @property
    def effective_repeats(self) -> int:
        return self.repeats if self.repeats is not None else (2 if self.quick else 5)

    @property
    def effective_probe_seconds(self) -> float:
        if self.probe_seconds is not None:
            return self.probe_seconds
        return 0.05 if self.quick else 0.3

    def steps(self, steps: int) -> int:
        return max(10, steps // QUICK_STEP_DIVISOR) if self.quick else steps

    @property
    def stream_seconds(self) -> float:
        """Seconds of timed step loops per engine (split over the repeats)."""
        return 0.1 if self.quick else 0.5


Progress = Callable[[str], None]


def load_default_model() -> tuple[Module, str]:
    """The bundled speech-style LSTM (see tools/make_default_model.py) and its path."""
    resource = resources.files("pyrnn").joinpath("models/default.safetensors")
    with resources.as_file(resource) as path:
        return _recurrent(load(path), str(path)), str(path)


def _recurrent(loaded: Any, path: str) -> Module:
    """`loaded` if it is one of the six recurrent modules, which is what the workloads time."""
    if not isinstance(loaded, Module):
        raise FormatError(
            f"{path}: holds a {type(loaded).__name__} (a converted graph); pyrnn bench measures "
            "the recurrent modules (RNN, LSTM, GRU and their cells)"
        )
    return loaded


def time_calls(run: Callable[[], Any], repeats: int, warmup: int) -> list[float]:
    """Seconds of each of `repeats` calls of run() after `warmup` untimed calls (gc paused)."""
    for _ in range(warmup):
        run()
    times = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    finally:
        if enabled:
            gc.enable()
    return times


def scalar_reference(module: Module, x: np.ndarray) -> np.ndarray:
    """module(x)'s output computed by pyrnn's scalar kernels (the active ISA is restored)."""
    previous = isa.active_isa()
    isa.set_isa("scalar")
    try:
        return np.asarray(module(x)[0])
    finally:
        isa.set_isa(previous)


def _timing_summary(times: list[float], steps: int, flops: float, peak: float) -> dict[str, Any]:
    median = float(np.median(times))
    us = median / steps * 1e6
    gflops = flops / (us * 1e3)
    return {
        "median_s": median,
        "min_s": float(min(times)),
        "times_s": times,
        "us_per_step": us,
        "gflops": gflops,
        "pct_peak": 100.0 * gflops / peak,
    }


def prepare_engine(
    engine: Engine, module: Module, x: np.ndarray, reference: np.ndarray
) -> tuple[dict[str, Any], Runner | None]:
    """Prepares `engine` and checks its output against `reference`. The runner comes back only
    when the output matches: the speed of a wrong result means nothing."""
    result: dict[str, Any] = {"engine": engine.name, "library": engine.library}
    try:
        runner = engine.prepare(module, x)
    except Unavailable as unavailable:
        return {**result, "status": "unavailable", "reason": str(unavailable)}, None
    except Exception as failure:  # a peer choking on a model must not sink the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    result["threads"] = runner.threads
    try:
        with runner.context():
            output = np.asarray(runner.run())
    except Exception as failure:  # an engine failing must not sink the rest of the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    if output.shape != reference.shape:
        reason = f"output shape {output.shape}, expected {reference.shape}"
        return {**result, "status": "mismatch", "reason": reason}, None
    error = np.abs(output - reference)
    result["max_abs_err"] = float(error.max())
    if bool(np.any(~(error <= ATOL + RTOL * np.abs(reference)))):  # NaN counts as a mismatch
        reason = f"max |err| {result['max_abs_err']:.3g} vs pyrnn's scalar path"
        return {**result, "status": "mismatch", "reason": reason}, None
    return {**result, "status": "ok"}, runner


# See time_interleaved: measured, 20 ms is enough for ONNX Runtime's pool to stop spinning.
SETTLE_SECONDS = 0.02


def time_interleaved(runners: list[Runner], repeats: int, warmup: int) -> list[list[float] | str]:
    """Seconds of `repeats` calls of each runner, after `warmup` untimed calls each. The calls
    go round-robin (one per runner per round, the order rotated every round) so that load from
    other processes on a shared machine falls on every engine alike instead of on whichever
    happened to run during it. Before each timed call, a pause lets the previous engine's thread
    pool stop spinning (ONNX Runtime's spins for milliseconds after a call, on the cores the
    next engine needs), then an untimed call of the same runner wakes its own threads and
    cores. A runner that raises gets its error text instead of times."""
    outcome: list[list[float] | str] = [[] for _ in runners]

    def call(index: int, timed: bool) -> None:
        if isinstance(outcome[index], str):
            return
        try:
            with runners[index].context():
                start = time.perf_counter()
                runners[index].run()
                elapsed = time.perf_counter() - start
        except Exception as error:  # one engine failing must not sink the others
            outcome[index] = f"{type(error).__name__}: {error}"
            return
        if timed:
            outcome[index].append(elapsed)  # type: ignore[union-attr]

    for index in range(len(runners)):
        for _ in range(warmup):
            call(index, timed=False)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(repeats):
            for offset in range(len(runners)):
                index = (round_ + offset) % len(runners)
                if len(runners) > 1:
                    time.sleep(SETTLE_SECONDS)
                    call(index, timed=False)
                call(index, timed=True)
    finally:
        if enabled:
            gc.enable()
    return outcome


def run_engines(
    engines: list[Engine],
    module: Module,
    x: np.ndarray,
    reference: np.ndarray,
    flops: float,
    peak: float,
    options: BenchOptions,
    progress: Progress | None = None,
    steps: int | None = None,
) -> list[dict[str, Any]]:
    """Every engine on one input: prepared and verified one by one, then timed together.
    `steps` divides each time into a time per step (default: x's first axis, T)."""
    prepared = []
    for engine in engines:
        if progress:
            progress(f"preparing and verifying {engine.name}")
        prepared.append(prepare_engine(engine, module, x, reference))
    if progress:
        progress(f"timing {sum(runner is not None for _, runner in prepared)} engines, interleaved")
    per_call = steps or x.shape[0]
    return time_prepared(
        prepared,
        options.effective_repeats,
        options.warmup,
        lambda times: _timing_summary(times, per_call, flops, peak),
    )


def time_prepared(
    prepared: list[tuple[dict[str, Any], Runner | None]],
    repeats: int,
    warmup: int,
    summarize: Callable[[list[float]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Times the runners of `prepared` ((result, runner) pairs from prepare_engine; None for an
    engine that was not verified) interleaved, adds summarize(times) to each timed result (or
    status "error" with the reason), and returns every result in order."""
    return record_timings(
        prepared, lambda runners: time_interleaved(runners, repeats, warmup), summarize
    )


def call_summary(times: list[float], steps: int) -> dict[str, Any]:
    """The median, fastest and all call times, and the median per step of `steps`."""
    median = float(np.median(times))
    return {
        "us_per_step": median / steps * 1e6,
        "median_s": median,
        "min_s": float(min(times)),
        "times_s": times,
    }


def run_engine(
    engine: Engine,
    module: Module,
    x: np.ndarray,
    reference: np.ndarray,
    flops: float,
    peak: float,
    options: BenchOptions,
) -> dict[str, Any]:
    """One engine on one input: prepare, verify against `reference`, then time."""
    return run_engines([engine], module, x, reference, flops, peak, options)[0]


def model_input(module: Module, options: BenchOptions) -> np.ndarray:
    """The seeded batch-1 float32 input the model is timed on: (T, 1, I), or (1, T, I) for a
    batch_first module (T = options.steps(DEFAULT_MODEL_STEPS))."""
    config = module.config
    steps = options.steps(DEFAULT_MODEL_STEPS)
    rng = np.random.default_rng(options.seed)
    x = rng.standard_normal((steps, 1, config["input_size"]), dtype=np.float32)
    return np.ascontiguousarray(x.transpose(1, 0, 2)) if config.get("batch_first") else x


def _model_flops(module: Module) -> float:
    config = module.config
    return flops_per_step({**config, "kind": config["kind"].removesuffix("_cell")}, 1)


def _modes(module: Module) -> tuple[bool, bool]:
    """Whether the module runs whole sequences (not a cell) and streams (not bidirectional)."""
    config = module.config
    return not config["kind"].endswith("_cell"), not config.get("bidirectional", False)


def run_model(
    module: Module, path: str, machine: dict[str, Any], options: BenchOptions
) -> dict[str, Any]:
    """The given model with batch 1: a whole-sequence forward, and the same steps streamed one
    call at a time (``s.step(x, out=y)`` on ``module.stream()``, as a real-time caller would).
    A bidirectional model cannot stream, a cell has no sequence: each gets the mode it has."""
    config = module.config
    x = model_input(module, options)
    steps = options.steps(DEFAULT_MODEL_STEPS)
    peak = machine["fma_peak_gflops"]
    flops = _model_flops(module)
    sequence, streams = _modes(module)
    modes: dict[str, Any] = {}
    if sequence:
        times = time_calls(lambda: module(x), options.effective_repeats, options.warmup)
        modes["sequence"] = _timing_summary(times, steps, flops, peak)
    if streams:
        stream = module.stream()
        step = stream.step
        # views made before timing: the loop does nothing but step
        rows = list(x[0] if config.get("batch_first") else x[:, 0, :])
        y = np.empty(config.get("proj_size") or config["hidden_size"], np.float32)

        def streamed() -> None:
            stream.reset()
            for row in rows:
                step(row, out=y)

        times = time_calls(streamed, options.effective_repeats, options.warmup)
        modes["step"] = _timing_summary(times, steps, flops, peak)
    return {
        "path": path,
        "config": config,
        "steps": steps,
        "batch": 1,
        "flops_per_step": flops,
        "modes": modes,
    }


def compare_sequence(
    module: Module, machine: dict[str, Any], options: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """The model's whole sequence (model_input) on every sequence engine, each verified against
    pyrnn's scalar path, then timed interleaved; ratios are against pyrnn's default threads."""
    x = model_input(module, options)
    flops = _model_flops(module)
    progress("whole sequence: scalar reference")
    reference = scalar_reference(module, x)
    results = run_engines(
        sequence_engines(),
        module,
        x,
        reference,
        flops,
        machine["fma_peak_gflops"],
        options,
        lambda message: progress(f"whole sequence: {message}"),
        steps=options.steps(DEFAULT_MODEL_STEPS),
    )
    base = next((r for r in results if r["engine"] == "pyrnn" and r["status"] == "ok"), None)
    for result in results:
        if base is not None and result["status"] == "ok":
            result["ratio_vs_pyrnn"] = result["us_per_step"] / base["us_per_step"]
    return {
        "steps": options.steps(DEFAULT_MODEL_STEPS),
        "batch": 1,
        "flops_per_step": flops,
        "results": results,
    }


def compare_steps(module: Module, options: BenchOptions, progress: Progress) -> dict[str, Any]:
    """The model streamed one step per call from Python on every step engine (steps.py), each
    verified against pyrnn's scalar path after a few steps, then timed in alternating loops;
    ratios are against pyrnn's s.step(x, out=y)."""
    rng = np.random.default_rng(options.seed)
    x = rng.standard_normal(module.config["input_size"], np.float32)
    reference = scalar_stream_reference(module, x)
    prepared = []
    for engine in step_engines():
        progress(f"stream step: preparing and verifying {engine.name}")
        prepared.append(prepare_step_engine(engine, module, x, reference))
    budget, repeats = options.stream_seconds, options.effective_repeats
    progress("stream step: timing the verified engines, interleaved")
    time_prepared_steps(prepared, budget, repeats)
    ok = [result for result, _ in prepared if result["status"] == "ok"]
    base = next((r for r in ok if r["engine"] == "pyrnn-out"), None)
    if base is not None:
        for result in ok:
            result["ratio_vs_pyrnn_out"] = result["us_per_step"] / base["us_per_step"]
    return {
        "batch": 1,
        "timing": {"seconds_per_engine": budget, "loops": repeats, "statistic": "best loop"},
        "tolerance": {"atol": STEP_ATOL, "rtol": STEP_RTOL, "steps_checked": CHECK_STEPS},
        "results": [result for result, _ in prepared],
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"pyrnn": __version__, "numpy": np.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", None) if module else None
    return versions


def load_model(options: BenchOptions) -> tuple[Module, str]:
    """The module `options` name (the bundled one by default) and its path."""
    if options.model is None:
        return load_default_model()
    module = load(
        options.model,
        options.kind,
        options.prefix,
        nonlinearity=options.nonlinearity,
        batch_first=options.batch_first,
    )
    return _recurrent(module, options.model), options.model


def run_bench(
    options: BenchOptions,
    progress: Progress | None = None,
    model: tuple[Module, str] | None = None,
) -> dict[str, Any]:
    """Everything `pyrnn bench` measures, as one JSON-ready dict. `model` is what
    load_model(options) returned, when the caller loaded it already."""
    progress = progress or (lambda message: None)
    # Loaded before the probes run, so a bad model fails fast.
    module, path = model if model is not None else load_model(options)

    progress("measuring the machine")
    machine = measure_machine(options.effective_probe_seconds)
    progress("timing the model")
    report: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "cpu_info": isa.cpu_info(),
        "options": asdict(options),
        "timing": {"repeats": options.effective_repeats, "warmup": options.warmup},
        "tolerance": {"atol": ATOL, "rtol": RTOL, "reference": "pyrnn scalar path"},
        "machine": machine,
        "model": run_model(module, path, machine, options),
    }
    if options.compare:
        sequence, streams = _modes(module)
        report["compare"] = {
            "sequence": compare_sequence(module, machine, options, progress) if sequence else None,
            "step": compare_steps(module, options, progress) if streams else None,
        }
    report["versions"] = _versions()
    return report
