"""Per-step streaming latency from Python: pyrnn streams against torch's LSTMCell/GRUCell and
ONNX Runtime's per-step session.run, all measured in the same process and run — the streaming
part of `pyrnn bench --compare` (pyrnn/benchmarking/streaming.py), without the machine probes
and the sequence workloads.

    python benchmarks/stream_latency.py            # the streaming table with its goals
    python benchmarks/stream_latency.py --quick    # shorter timings, same rows
    python benchmarks/stream_latency.py --json out.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pyrnn.benchmarking import WORKLOADS, BenchOptions, StreamWorkload
from pyrnn.benchmarking.report import format_streaming
from pyrnn.benchmarking.streaming import run_stream_workload

STREAM_WORKLOADS = [w for w in WORKLOADS.values() if isinstance(w, StreamWorkload)]


def run(quick: bool = False) -> dict[str, Any]:
    """Every stream workload's measurements, as `pyrnn bench` reports them under "workloads"."""
    options = BenchOptions(quick=quick)
    return {
        "workloads": [
            run_stream_workload(workload, {}, options, lambda message: None)
            for workload in STREAM_WORKLOADS
        ]
    }


def format_table(results: dict[str, Any]) -> str:
    return "\n".join(format_streaming(results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing loops")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
