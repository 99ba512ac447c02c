"""Variable-length batches: one LSTM over a seeded batch of sequences of uneven lengths, run
packed (no work on padding) and run fully padded, and torch running the same PackedSequence.
Everything runs on one thread.

Engines of a result, each with "us_per_step" = seconds per sequence step actually asked for:
  "pyrnn-packed"    module(PackedSequence): the call's time over S, the sum of the lengths
  "pyrnn-padded"    module(x) over the padded (T_max, N) batch: the call's time over N * T_max
  "torch-packed-1t" torch.nn.LSTM(torch PackedSequence), torch.set_num_threads(1): time over S
So "pyrnn-packed / pyrnn-padded" is what a packed step costs against a padded one (1.0: the
cost follows S exactly), and "torch-packed-1t / pyrnn-packed" pyrnn's speed-up over torch.
Calls take turns and the median of each engine is kept (runner.time_interleaved).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyrnn import LSTM, pack_padded_sequence, pad_packed_sequence, threads
from pyrnn.bench import Runner, Unavailable, import_torch, time_interleaved, torch_module

from .workloads import WORKLOADS, PackedWorkload

if TYPE_CHECKING:
    from .runner import BenchOptions, Progress

__all__ = [
    "PACKED_WORKLOADS",
    "PackedCase",
    "check",
    "engines",
    "packed_case",
    "run_packed_workload",
]


PACKED_WORKLOADS = {
    name: workload for name, workload in WORKLOADS.items() if isinstance(workload, PackedWorkload)
}


@dataclass
class PackedCase:
    workload: PackedWorkload
    module: LSTM
    padded: np.ndarray  # (T_max, N, I), zero past each length
    lengths: np.ndarray
    packed: Any  # pyrnn.PackedSequence

    @property
    def rows(self) -> int:
        """S, the sequence steps of the batch."""
        return int(self.lengths.sum())


def packed_case(workload: PackedWorkload, seed: int = 0) -> PackedCase:
    module = LSTM(workload.input_size, workload.hidden_size, seed=seed)
    lengths = workload.lengths(seed)
    rng = np.random.default_rng(seed + 1)
    shape = (workload.max_length, workload.batch, workload.input_size)
    padded = rng.standard_normal(shape).astype(np.float32)
    padded[np.arange(workload.max_length)[:, None] >= lengths[None, :]] = 0.0
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
    return PackedCase(workload, module, padded, lengths, packed)


@contextlib.contextmanager
def _one_thread(torch: Any = None) -> Iterator[None]:
    previous = threads.get_num_threads()
    torch_previous = torch.get_num_threads() if torch is not None else None
    threads.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        threads.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(torch_previous)


def engines(case: PackedCase) -> dict[str, tuple[Callable[[], Any], int]]:
    """Engine name -> (one call, the sequence steps it is asked for); torch's only when torch is
    installed (Unavailable otherwise is left out)."""
    module, packed = case.module, case.packed
    runs: dict[str, tuple[Callable[[], Any], int]] = {
        "pyrnn-packed": (lambda: module(packed), case.rows),
        "pyrnn-padded": (lambda: module(case.padded), case.padded.shape[0] * case.padded.shape[1]),
    }
    try:
        torch = import_torch()
    except Unavailable:
        return runs
    reference = torch_module(module)
    torch_packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(case.padded), torch.from_numpy(case.lengths), enforce_sorted=False
    )

    def run_torch() -> Any:
        with torch.inference_mode():
            return reference(torch_packed)

    runs["torch-packed-1t"] = (run_torch, case.rows)
    return runs


def check(case: PackedCase, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """The packed run against the padded one at every valid step, and torch's packed output
    when torch is there: raises AssertionError on a difference."""
    packed_out, _ = case.module(case.packed)
    padded_out, _ = case.module(case.padded)
    steps = case.padded.shape[0]
    unpacked, _ = pad_packed_sequence(packed_out, total_length=steps)
    valid = np.arange(case.padded.shape[0])[:, None] < case.lengths[None, :]
    np.testing.assert_allclose(unpacked[valid], padded_out[valid], rtol=rtol, atol=atol)
    runs = engines(case)
    if "torch-packed-1t" in runs:
        # Compared padded: torch's sort may order sequences of equal length differently.
        torch_out, _ = pad_packed_sequence(runs["torch-packed-1t"][0]()[0], total_length=steps)
        np.testing.assert_allclose(unpacked[valid], torch_out[valid], rtol=rtol, atol=atol)


def run_packed_workload(
    workload: PackedWorkload,
    machine: dict[str, Any],
    options: BenchOptions,
    progress: Progress,
) -> dict[str, Any]:
    """The workload's result, as goals.py reads `pyrnn bench` workloads: "results" per engine
    with "us_per_step" (seconds per sequence step asked for, in microseconds). The machine's
    probes are not needed: the figures are ratios of engines timed in turns."""
    repeats = options.effective_repeats
    case = packed_case(workload)
    progress(f"{workload.name}: S = {case.rows} of {workload.batch * workload.max_length} steps")
    check(case)
    runs = engines(case)
    torch = None
    with contextlib.suppress(Unavailable):
        torch = import_torch()
    with _one_thread(torch):
        runners = [Runner(run) for run, _ in runs.values()]
        times = time_interleaved(runners, repeats, options.warmup)
    results: list[dict[str, Any]] = []
    for (name, (_, steps)), measured in zip(runs.items(), times, strict=True):
        if isinstance(measured, str):
            results.append({"engine": name, "status": "failed", "error": measured})
            continue
        median = float(np.median(measured))
        results.append(
            {
                "engine": name,
                "status": "ok",
                "median_s": median,
                "steps": steps,
                "us_per_step": median / steps * 1e6,
            }
        )
        progress(f"{workload.name}: {name} {median * 1e3:.1f} ms")
    return {
        "name": workload.name,
        "category": "packed",
        "description": workload.describe(),
        "timing": {"repeats": repeats, "warmup": options.warmup},
        "rows": case.rows,
        "padded_rows": workload.batch * workload.max_length,
        "results": results,
    }
