"""The comparison script: pyrnn vs PyTorch vs ONNX Runtime on every workload, in one run.
Same as `pyrnn bench --compare`, followed by the goals (goals.py) of the streaming,
whole-model and reduced-precision workloads, judged on the same run; any `pyrnn bench` option
may follow, e.g.

    python benchmarks/compare.py --json results.json --png results.png
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from goals import evaluate, format_goals

from pyrnn.cli import _parsers, main


def compare(argv: list[str]) -> int:
    args = ["bench", "--compare", *argv]
    parser, _ = _parsers()
    report_path = parser.parse_args(args).json
    with tempfile.TemporaryDirectory(prefix="pyrnn-compare-") as folder:
        if report_path is None:  # the goals are read from the report of this very run
            report_path = os.path.join(folder, "report.json")
            args += ["--json", report_path]
        status = main(args)
        with open(report_path, encoding="utf-8") as file:
            workloads = json.load(file)["workloads"]
    verdicts = evaluate(workloads)
    if verdicts:
        print(
            "\nGoals (benchmarks/goals.py), judged on this run (benchmarks/stream_latency.py, "
            "benchmarks/models.py and benchmarks/quantized.py time their workloads alone):"
        )
        print("\n".join(format_goals(verdicts)))
    return status


if __name__ == "__main__":
    sys.exit(compare(sys.argv[1:]))
