"""Reduced-precision weights: the quantized workloads of `python benchmarks/compare.py`
(benchmarks/harness/quantized.py) with the FMA peak probe their bounds need, without the other
workloads and probes, followed by each of their goals (goals.py), met or missed with the measured
value. It takes 15 repeats by default, not compare.py's 5: the goals are ratios of engines
timed in turns, and on a shared machine the median of 5 calls moved them by +-10%.

    python benchmarks/quantized.py                  # the table and the goals
    python benchmarks/quantized.py --quick          # a tenth of the steps, same rows
    python benchmarks/quantized.py --workloads quant-peers-lstm-512 --repeats 9 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from goals import evaluate, format_goals
from harness import WORKLOADS, BenchOptions, QuantWorkload
from harness.quantized import run_quant_workload
from harness.report import format_quantized

from pyrnn.bench.machine import measure_peak

REPEATS = 15
QUANT_WORKLOADS = {name: w for name, w in WORKLOADS.items() if isinstance(w, QuantWorkload)}


def run(names: list[str], quick: bool = False, repeats: int | None = None) -> dict[str, Any]:
    """The FMA peak ("machine"), the quantized workloads' measurements ("workloads", as
    compare.py reports them) and the goals judged on them ("goals")."""
    options = BenchOptions(quick=quick, repeats=repeats)

    def progress(message: str) -> None:
        print(f"[quantized] {message}", file=sys.stderr, flush=True)

    progress("measuring the FMA peak")
    machine = measure_peak(options.effective_probe_seconds)
    workloads = [
        run_quant_workload(QUANT_WORKLOADS[name], machine, options, progress) for name in names
    ]
    return {"machine": machine, "workloads": workloads, "goals": evaluate(workloads)}


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUANT_WORKLOADS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected some of {', '.join(QUANT_WORKLOADS)}, got {text!r}"
        )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps, short loops")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help=f"timed loops/calls per engine ({REPEATS})"
    )
    parser.add_argument("--workloads", type=_names, default=list(QUANT_WORKLOADS))
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats: expected a positive integer, got {args.repeats}")
    results = run(args.workloads, quick=args.quick, repeats=args.repeats)
    machine = results["machine"]
    peak = f"FMA peak {machine['fma_peak_gflops']:.1f} GFLOP/s ({machine['fma_peak_isa']})"
    print("\n".join([peak, *format_quantized(results), "", *format_goals(results["goals"])]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
