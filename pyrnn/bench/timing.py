"""Checking and timing the step engines of steps.py: each engine's output after a few steps
against pyrnn's scalar path (a wrong result is reported, never timed), then timed loops that
alternate between the engines, the best loop kept (noise on a shared machine only ever adds
time)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from .. import isa
from .._base import Module
from .engines import Unavailable
from .steps import ATOL, CHECK_STEPS, RTOL, StepEngine, StepRunner

_R = TypeVar("_R")

__all__ = [
    "prepare_step_engine",
    "scalar_stream_reference",
    "step_summary",
    "time_prepared_steps",
    "time_round_robin",
    "verify_output",
]


def time_round_robin(
    runners: list[StepRunner], budget: float, repeats: int
) -> list[list[float] | str]:
    """Seconds per step of `repeats` loops of each runner, each loop lasting about
    budget/repeats seconds. Loops alternate between runners (the order rotated every round). A
    runner that raises gets its error text instead of times."""
    outcome: list[list[float] | str] = [[] for _ in runners]
    numbers = [1] * len(runners)
    for index, runner in enumerate(runners):  # calibrate: loops of at least 10 ms
        try:
            number, elapsed = 1, runner.seconds(1)
            while elapsed < 0.01:
                number *= 4
                elapsed = runner.seconds(number)
            numbers[index] = max(1, round(number * (budget / repeats) / elapsed))
        except Exception as error:
            outcome[index] = f"{type(error).__name__}: {error}"
    enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(repeats):
            for offset in range(len(runners)):
                index = (round_ + offset) % len(runners)
                times = outcome[index]
                if isinstance(times, str):
                    continue
                try:
                    times.append(runners[index].seconds(numbers[index]) / numbers[index])
                except Exception as error:
                    outcome[index] = f"{type(error).__name__}: {error}"
    finally:
        if enabled:
            gc.enable()
    return outcome


def step_summary(times: list[float]) -> dict[str, Any]:
    """The figures of a runner's loops (seconds per step each): the best, median and all, in us."""
    return {
        "us_per_step": 1e6 * min(times),  # best loop: noise only ever adds time
        "median_us": 1e6 * float(np.median(times)),
        "times_us": [1e6 * t for t in times],
    }


def time_prepared_steps(
    prepared: list[tuple[dict[str, Any], StepRunner | None]], budget: float, repeats: int
) -> list[dict[str, Any]]:
    """Times the runners of `prepared` ((result, runner) pairs from prepare_step_engine; None
    for an engine that was not verified) in alternating loops, adds step_summary to each timed
    result (or status "error" with the reason), and returns every result in order."""
    return record_timings(
        prepared, lambda runners: time_round_robin(runners, budget, repeats), step_summary
    )


def record_timings(
    prepared: list[tuple[dict[str, Any], _R | None]],
    time_runners: Callable[[list[_R]], list[list[float] | str]],
    summarize: Callable[[list[float]], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Times the runners of the verified engines in `prepared` together with `time_runners`,
    adds summarize(times) to each one's result (or status "error" with the reason), and
    returns every result in order."""
    timed = [(result, runner) for result, runner in prepared if runner is not None]
    outcomes = time_runners([runner for _, runner in timed])
    for (result, _), outcome in zip(timed, outcomes, strict=True):
        if isinstance(outcome, str):
            result.update(status="error", reason=outcome)
        else:
            result.update(summarize(outcome))
    return [result for result, _ in prepared]


def scalar_stream_reference(module: Module, x: np.ndarray, steps: int = CHECK_STEPS) -> np.ndarray:
    """The output of a fresh stream after `steps` steps of x, on pyrnn's scalar kernels."""
    previous = isa.active_isa()
    isa.set_isa("scalar")
    try:
        stream = module.stream(batch=None if x.ndim == 1 else x.shape[0])
        for _ in range(steps):
            y = stream.step(x)
        return y
    finally:
        isa.set_isa(previous)


def verify_output(
    output: Any, reference: np.ndarray, atol: float = ATOL, rtol: float = RTOL
) -> tuple[str, float, str]:
    """(status, max |err|, reason) of an engine's output against the reference, within
    atol + rtol*|reference|."""
    output = np.asarray(output, dtype=np.float32)
    if output.shape != reference.shape:
        return "mismatch", float("nan"), f"output shape {output.shape}, expected {reference.shape}"
    error = np.abs(output - reference)
    worst = float(error.max())
    if bool(np.any(~(error <= atol + rtol * np.abs(reference)))):  # NaN counts as a mismatch
        return "mismatch", worst, f"max |err| {worst:.3g} > {atol:g} + {rtol:g}*|ref|"
    return "ok", worst, ""


def prepare_step_engine(
    engine: StepEngine, module: Module, x: np.ndarray, reference: np.ndarray
) -> tuple[dict[str, Any], StepRunner | None]:
    """Prepares `engine` and checks its output against `reference`. The runner comes back only
    when the output matches: the speed of a wrong result means nothing."""
    result: dict[str, Any] = {"engine": engine.name, "library": engine.library}
    try:
        runner = engine.prepare(module, x)
        output = runner.check()
    except Unavailable as unavailable:
        return {**result, "status": "unavailable", "reason": str(unavailable)}, None
    except Exception as failure:  # an engine failing must not sink the rest of the comparison
        return {**result, "status": "error", "reason": f"{type(failure).__name__}: {failure}"}, None
    result.update(threads=runner.threads, call=runner.call)
    status, result["max_abs_err"], reason = verify_output(output, reference)
    if status != "ok":
        return {**result, "status": status, "reason": reason}, None
    return {**result, "status": "ok"}, runner
