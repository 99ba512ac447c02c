"""Whole models converted with pyrnn.from_torch: the model workloads of compare.py
(benchmarks/harness/models.py) without the machine probes and the other workloads, followed by
each of their goals (goals.py), met or missed with the measured value. It takes 15 repeats by
default, not compare.py's 5: a model(x) over T=1000 lasts ~25 ms, and the median of 5 such
calls on a shared machine moved the model/LSTM ratio by +-10%, as much as the 1.1x goal allows.

    python benchmarks/models.py                     # the table and the goals
    python benchmarks/models.py --quick             # shorter timings, same rows
    python benchmarks/models.py --workloads model-stream-head --repeats 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from goals import evaluate, format_goals
from harness import WORKLOADS, BenchOptions, ModelWorkload
from harness.models import run_model_workload
from harness.report import format_models

REPEATS = 15
MODEL_WORKLOADS = {name: w for name, w in WORKLOADS.items() if isinstance(w, ModelWorkload)}


def run(names: list[str], quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    """The model workloads' measurements ("workloads", as compare.py reports them) and the
    goals judged on them ("goals")."""
    options = BenchOptions(quick=quick, repeats=repeats)

    def progress(message: str) -> None:
        print(f"[models] {message}", file=sys.stderr, flush=True)

    workloads = [run_model_workload(MODEL_WORKLOADS[name], {}, options, progress) for name in names]
    return {"workloads": workloads, "goals": evaluate(workloads)}


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODEL_WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {', '.join(MODEL_WORKLOADS)}, got {text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help=f"timed loops/calls per engine ({REPEATS})"
    )
    parser.add_argument("--workloads", type=_names, default=list(MODEL_WORKLOADS))
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    results = run(args.workloads, quick=args.quick, repeats=args.repeats)
    print("\n".join([*format_models(results), "", *format_goals(results["goals"])]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
