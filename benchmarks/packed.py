"""Variable-length batches: the packed workloads of `python benchmarks/compare.py`
(benchmarks/harness/packed.py), a batch of sequences of uneven lengths run packed, run fully
padded, and run packed by torch, all on one thread, followed by each of their goals (goals.py),
met or missed with the measured value. 9 repeats by default: the goals are ratios of engines
timed in turns.

    python benchmarks/packed.py                     # the table and the goals
    python benchmarks/packed.py --repeats 15 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from goals import evaluate, format_goals
from harness import BenchOptions
from harness.packed import PACKED_WORKLOADS, run_packed_workload
from harness.report import format_packed

REPEATS = 9


def run(names: list[str], repeats: int = REPEATS) -> dict[str, Any]:
    """The packed workloads' measurements ("workloads", as `pyrnn bench` reports them) and the
    goals judged on them ("goals")."""
    options = BenchOptions(repeats=repeats)

    def progress(message: str) -> None:
        print(f"[packed] {message}", file=sys.stderr, flush=True)

    workloads = [
        run_packed_workload(PACKED_WORKLOADS[name], {}, options, progress) for name in names
    ]
    return {"workloads": workloads, "goals": evaluate(workloads)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help=f"timed calls per engine ({REPEATS})"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    results = run(list(PACKED_WORKLOADS), args.repeats)
    print("\n".join([*format_packed(results), "", *format_goals(results["goals"])]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
