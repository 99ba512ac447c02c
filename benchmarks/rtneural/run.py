"""pyrnn's tiny streams against RTNeural's compile-time models (ModelT, Eigen backend), on this
machine, in one run: builds rtneural_bench.cpp against an RTNeural checkout, checks that both
compute the same model (seeded weights, outputs compared), then alternates timing rounds of
RTNeural and pyrnn and reports medians in ns per sample and as headroom at 48 kHz.

    python benchmarks/rtneural/run.py /path/to/RTNeural            # every tiny model
    python benchmarks/rtneural/run.py /path/to/RTNeural --rounds 9 --json out.json
    python benchmarks/rtneural/run.py /path/to/extracted/RTNeural --commit <hash>
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import pyrnn
from pyrnn.bench import cpp_step_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/goals.py
from goals import evaluate_rtneural, format_goals

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "rtneural_bench.cpp"
# As RTNeural's users build a ModelT (its README; its CMake sets the alignment for AVX).
FLAGS = ["-std=c++17", "-O3", "-march=native", "-DRTNEURAL_USE_EIGEN=1"]
FLAGS += ["-DRTNEURAL_DEFAULT_ALIGNMENT=32"]
# name: (kind, hidden, layers); input size 1 (a mono audio sample).
MODELS = {
    "lstm-8": ("lstm", 8, 1),
    "lstm-16": ("lstm", 16, 1),
    "lstm-32": ("lstm", 32, 1),
    "gru-32": ("gru", 32, 1),
    "lstm-16x2": ("lstm", 16, 2),
    "lstm-64": ("lstm", 64, 1),
    "gru-64": ("gru", 64, 1),
}
SAMPLES = 48_000  # one second of audio per RTNeural pass
GROUP = 4096  # samples per timed block, short enough to fall between other processes' slices
SAMPLE_NS_48K = 1e9 / 48_000


def module_for(name: str) -> pyrnn.Module:
    kind, hidden, layers = MODELS[name]
    factory = pyrnn.LSTM if kind == "lstm" else pyrnn.GRU
    return factory(1, hidden, num_layers=layers, seed=0)


def write_weights(module: pyrnn.Module, path: Path) -> None:
    """Per layer: weight_ih, weight_hh, bias_ih, bias_hh in PyTorch layout, float32."""
    state = module.state_dict()
    parts = [
        state[f"{role}_l{layer}"].astype(np.float32).ravel()
        for layer in range(module.config["num_layers"])
        for role in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    np.concatenate(parts).tofile(path)


def build(rtneural: Path, work: Path) -> Path:
    binary = work / "rtneural_bench"
    if binary.exists():
        return binary
    includes = [f"-I{rtneural}", f"-I{rtneural / 'modules' / 'Eigen'}"]
    command = ["g++", *FLAGS, *includes, str(SOURCE), "-o", str(binary)]
    print(f"[rtneural] {shlex.join(command)}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return binary


def commit_of(rtneural: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(rtneural), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown (not a git checkout)"


def time_rtneural(binary: Path, name: str, work: Path, repeats: int) -> tuple[float, float]:
    """(median, fastest) ns per sample over blocks of 4096 samples."""
    result = subprocess.run(
        [
            str(binary),
            name,
            str(work / f"{name}.weights"),
            str(work / "input.f32"),
            str(work / f"{name}.out"),
            str(repeats),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    median, fastest = result.stdout.split()
    return float(median), float(fastest)


def time_pyrnn(module: pyrnn.Module, x: np.ndarray) -> dict[str, list[float]]:
    """ns per sample, per 4096 samples (as RTNeural's): feed of 64- and 256-sample blocks,
    step(x, out=y) from Python, and the same steps in a C++ loop (the stream's own hook)."""
    stream = module.stream()
    hidden = module.config["hidden_size"]
    result: dict[str, list[float]] = {}
    for block in (64, 256):
        out = np.empty((block, hidden), np.float32)
        pieces = [np.ascontiguousarray(x[i : i + block]) for i in range(0, len(x), block)]
        per_group = GROUP // block
        for g in range(0, len(pieces) - per_group + 1, per_group):
            group = pieces[g : g + per_group]
            start = time.perf_counter()
            for piece in group:
                stream.feed(piece, out=out)
            elapsed = time.perf_counter() - start
            result.setdefault(f"feed{block}", []).append(elapsed / GROUP * 1e9)
    rows = [np.ascontiguousarray(row) for row in x[: 4 * GROUP]]
    y = np.empty(hidden, np.float32)
    step = stream.step
    for g in range(0, len(rows), GROUP):
        group = rows[g : g + GROUP]
        start = time.perf_counter()
        for row in group:
            step(row, out=y)
        result.setdefault("step", []).append((time.perf_counter() - start) / GROUP * 1e9)
    result["cpp_step"] = [cpp_step_seconds(stream, rows[0], y, GROUP) * 1e9 for _ in range(4)]
    return result


def check_same_model(module: pyrnn.Module, name: str, work: Path, x: np.ndarray) -> float:
    """Largest |pyrnn - RTNeural| over the first pass's outputs (the binary wrote them)."""
    hidden = module.config["hidden_size"]
    theirs = np.fromfile(work / f"{name}.out", np.float32).reshape(-1, hidden)
    ours = module.stream().feed(x)
    return float(np.max(np.abs(ours - theirs)))


def run(
    rtneural: Path,
    names: list[str],
    rounds: int,
    repeats: int,
    commit: str | None = None,
    build_dir: str | None = None,
) -> dict[str, Any]:
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (SAMPLES, 1)).astype(np.float32)
    results: dict[str, Any] = {
        "rtneural_commit": commit or commit_of(rtneural),
        "flags": " ".join(FLAGS),
        "isa": pyrnn.active_isa(),
        "models": {},
    }
    with tempfile.TemporaryDirectory() as directory:
        work = Path(build_dir) if build_dir else Path(directory)
        work.mkdir(parents=True, exist_ok=True)
        binary = build(rtneural, work)
        x.tofile(work / "input.f32")
        for name in names:
            module = module_for(name)
            write_weights(module, work / f"{name}.weights")
            samples: dict[str, list[float]] = {}
            fastest: dict[str, float] = {}
            time_rtneural(binary, name, work, 1)
            difference = check_same_model(module, name, work, x)
            for _ in range(rounds):  # interleaved: both see the same machine state
                median, best = time_rtneural(binary, name, work, repeats)
                samples.setdefault("rtneural", []).append(median)
                fastest["rtneural"] = min(fastest.get("rtneural", best), best)
                for key, values in time_pyrnn(module, x).items():
                    samples.setdefault(key, []).extend(values)
                    fastest[key] = min(fastest.get(key, min(values)), min(values))
            results["models"][name] = {
                "median": {key: statistics.median(values) for key, values in samples.items()},
                "fastest": fastest,
                "max_abs_difference": difference,
            }
            row = format_row(name, fastest, difference)
            print(f"[rtneural] fastest: {row}", file=sys.stderr, flush=True)
    return results


def format_row(name: str, m: dict[str, float], difference: float) -> str:
    return (
        f"{name:<10} {m['rtneural']:>9.1f} {m['feed64']:>9.1f} {m['feed256']:>9.1f} "
        f"{m['step']:>9.1f} {m['cpp_step']:>9.1f} {m['feed256'] / m['rtneural']:>7.2f} "
        f"{m['step'] / m['rtneural']:>7.2f} {SAMPLE_NS_48K / m['feed256']:>8.0f}x "
        f"{difference:>9.1e}"
    )


def format_table(results: dict[str, Any]) -> str:
    header = (
        f"{'model':<10} {'RTNeural':>9} {'feed64':>9} {'feed256':>9} {'step':>9} "
        f"{'C++ step':>9} {'f256/RT':>7} {'step/RT':>7} {'48k x RT':>9} {'max diff':>9}"
    )
    lines = [
        f"RTNeural {results['rtneural_commit']} ({results['flags']}); pyrnn ISA {results['isa']}",
    ]
    for statistic in ("fastest", "median"):
        lines += ["", f"ns per sample, {statistic} of blocks of {GROUP} samples", header]
        lines += [
            format_row(name, m[statistic], m["max_abs_difference"])
            for name, m in results["models"].items()
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rtneural", type=Path, help="path of an RTNeural checkout")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="RTNeural passes per round")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--commit", help="RTNeural's commit, when the path is not a git checkout")
    parser.add_argument(
        "--build-dir", help="keep the timing program here (built only if absent: reruns reuse it)"
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"--models: expected some of {', '.join(MODELS)}, got {unknown}")
    if not (args.rtneural / "RTNeural" / "RTNeural.h").is_file():
        parser.error(f"rtneural: expected an RTNeural checkout, got {args.rtneural}")
    results = run(args.rtneural, names, args.rounds, args.repeats, args.commit, args.build_dir)
    results["goals"] = evaluate_rtneural(results)
    print(format_table(results))
    print()
    print("\n".join(format_goals(results["goals"])))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
