"""A step through pyrnn's C API from Cython against the core's own C++ step loop
(pyrnn.bench.cpp_step_seconds, no Python), on LSTM 64 and a tiny LSTM (input 1, hidden 16),
followed by the C API goals (goals.py), met or missed with the measured ratio.

The Cython loop (benchmarks/capi/capi_bench.pyx) is built against the installed pyrnn in a
temporary directory first (needs Cython, setuptools and a C compiler). The two loops alternate,
round after round, so that load from other processes falls on both alike; each keeps its best
round, since noise on a shared machine only ever adds time.

    python benchmarks/capi_step.py              # the table and the goals
    python benchmarks/capi_step.py --quick      # fewer, shorter rounds
    python benchmarks/capi_step.py --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from goals import CAPI_GOALS, evaluate, format_goals

import pyrnn
from pyrnn.bench import cpp_step_seconds

SOURCE = Path(__file__).resolve().parent / "capi" / "capi_bench.pyx"
SETUP = """\
import pyrnn
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension("capi_bench", ["capi_bench.pyx"], include_dirs=[pyrnn.get_include()])
setup(name="capi_bench", ext_modules=cythonize([extension], quiet=True),
      script_args=["build_ext", "--inplace", "-q"])
"""
# name: (label, input size, hidden size)
WORKLOADS = {"capi-lstm-64": ("LSTM 64", 64, 64), "capi-lstm-1x16": ("LSTM 1x16", 1, 16)}
ROUND_SECONDS = 0.05


def build(directory: Path) -> ModuleType:
    shutil.copy(SOURCE, directory / SOURCE.name)
    (directory / "setup.py").write_text(SETUP)
    subprocess.run([sys.executable, "setup.py"], cwd=directory, check=True, capture_output=True)
    path = directory / f"capi_bench{sysconfig.get_config_var('EXT_SUFFIX')}"
    spec = importlib.util.spec_from_file_location("capi_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(bench: ModuleType, name: str, rounds: int) -> dict[str, Any]:
    label, input_size, hidden_size = WORKLOADS[name]
    module = pyrnn.LSTM(input_size, hidden_size, seed=0)
    x = np.random.default_rng(0).standard_normal(input_size).astype(np.float32)
    y = np.empty(hidden_size, np.float32)
    ours, core = module.stream(), module.stream()
    per_step = cpp_step_seconds(core, x, y, 10_000)
    count = max(1000, int(ROUND_SECONDS / max(per_step, 1e-9)))
    bench.time_steps(ours, x, y, count)  # warm both up
    best = {"capi-cython": float("inf"), "pyrnn-c++": float("inf")}
    for _ in range(rounds):
        best["capi-cython"] = min(best["capi-cython"], bench.time_steps(ours, x, y, count))
        best["pyrnn-c++"] = min(best["pyrnn-c++"], cpp_step_seconds(core, x, y, count))
    return {
        "name": name,
        "category": "capi",
        "label": label,
        "steps_per_round": count,
        "rounds": rounds,
        "results": [
            {"engine": engine, "status": "ok", "us_per_step": seconds * 1e6}
            for engine, seconds in best.items()
        ],
    }


def run(quick: bool = False, rounds: int | None = None) -> dict[str, Any]:
    rounds = rounds or (5 if quick else 25)
    with tempfile.TemporaryDirectory() as directory:
        bench = build(Path(directory))
        workloads = [measure(bench, name, rounds) for name in WORKLOADS]
    return {"workloads": workloads, "goals": evaluate(workloads, CAPI_GOALS)}


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "One step through the C API from a Cython nogil loop against the core's C++ loop",
        f"{'model':<12}{'C API (us)':>12}{'C++ loop (us)':>15}{'ratio':>8}",
    ]
    for workload in results["workloads"]:
        us = {r["engine"]: r["us_per_step"] for r in workload["results"]}
        capi, cpp = us["capi-cython"], us["pyrnn-c++"]
        lines.append(f"{workload['label']:<12}{capi:>12.4f}{cpp:>15.4f}{capi / cpp:>8.3f}")
    return "\n".join([*lines, "", *format_goals(results["goals"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per loop")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results = run(args.quick, args.rounds)
    print(format_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
