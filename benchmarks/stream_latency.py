"""Per-step streaming latency from Python: pyrnn streams against torch's LSTMCell/GRUCell and
ONNX Runtime's per-step session.run, all measured in the same process and run — the streaming
part of `python benchmarks/compare.py` (benchmarks/harness/streaming.py), without the machine probes
and the other workloads — followed by each streaming goal (goals.py), met or missed with the
measured value.

    python benchmarks/stream_latency.py            # the streaming table and the goals
    python benchmarks/stream_latency.py --quick    # shorter timings, same rows
    python benchmarks/stream_latency.py --workloads stream-overhead --repeats 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from goals import evaluate, format_goals
from harness import WORKLOADS, BenchOptions, StreamWorkload
from harness.report import format_streaming
from harness.streaming import run_stream_workload

STREAM_WORKLOADS = {name: w for name, w in WORKLOADS.items() if isinstance(w, StreamWorkload)}


def run(
    names: list[str] | None = None, quick: bool = False, repeats: int | None = None
) -> dict[str, Any]:
    """The stream workloads' measurements ("workloads", as compare.py reports them; all of
    them when `names` is None) and the goals judged on them ("goals")."""
    options = BenchOptions(quick=quick, repeats=repeats)

    def progress(message: str) -> None:
        print(f"[stream_latency] {message}", file=sys.stderr, flush=True)

    chosen = list(STREAM_WORKLOADS) if names is None else names
    workloads = [
        run_stream_workload(STREAM_WORKLOADS[name], {}, options, progress) for name in chosen
    ]
    return {"workloads": workloads, "goals": evaluate(workloads)}


def format_table(results: dict[str, Any]) -> str:
    """The streaming table, then one line per goal."""
    return "\n".join([*format_streaming(results), "", *format_goals(results["goals"])])


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STREAM_WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {', '.join(STREAM_WORKLOADS)}, got {text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--repeats", type=int, help="timed loops per engine (default 5, quick 2)")
    parser.add_argument("--workloads", type=_names, default=list(STREAM_WORKLOADS))
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    results = run(args.workloads, quick=args.quick, repeats=args.repeats)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
