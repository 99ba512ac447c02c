"""The comparison script: pyrnn vs PyTorch vs ONNX Runtime on every workload of the project's
suite (harness/workloads.py), in one run: the machine, the bundled model (as `pyrnn bench`
prints them), a table per kind of workload, then the goals (goals.py) of the streaming,
whole-model and reduced-precision workloads, judged on the same run. For example

    python benchmarks/compare.py                                  # every workload (minutes)
    python benchmarks/compare.py --quick --workloads stream-lstm-64,seq-gru-256
    python benchmarks/compare.py --json results.json --png results.png
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from goals import evaluate, format_goals
from harness import WORKLOADS, BenchOptions, run_bench
from harness.report import format_report, write_json, write_png

from pyrnn.bench.arguments import output_path, positive_int

_EPILOG = """\
examples:
  python benchmarks/compare.py --json r.json   every workload against PyTorch and ONNX Runtime
  python benchmarks/compare.py --quick --workloads seq-lstm-256,seq-gru-256
  python benchmarks/compare.py --workloads stream-lstm-64,stream-overhead
                                      streaming latency from Python
  python benchmarks/compare.py --workloads model-stream-head,model-seq-head
                                      whole models converted from torch
  python benchmarks/compare.py \\
      --workloads quant-seq-lstm-1024,quant-stream-lstm-512,quant-peers-lstm-512
                                      weights in fp32, fp16, bf16 and int8 (pyrnn.quantize)
"""


def _workload_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated workload names, got none")
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python benchmarks/compare.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "--workloads",
        metavar="A,B",
        type=_workload_list,
        default=list(WORKLOADS),
        help=f"workloads to run (default: all of {', '.join(WORKLOADS)})",
    )
    result.add_argument(
        "--repeats", type=positive_int, help="timed runs per measurement (default 5, quick 2)"
    )
    result.add_argument(
        "--quick", action="store_true", help="1/10 of the steps, fewer repeats, short probes"
    )
    result.add_argument(
        "--json", metavar="PATH", type=output_path, help="write every measurement as JSON"
    )
    result.add_argument(
        "--png", metavar="PATH", type=output_path, help="write a bar chart (needs matplotlib)"
    )
    return result


def compare(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = BenchOptions(workloads=args.workloads, quick=args.quick, repeats=args.repeats)

    def progress(message: str) -> None:
        print(f"[compare] {message}", file=sys.stderr, flush=True)

    if args.png and importlib.util.find_spec("matplotlib") is None:
        # Said now, not after the benchmark.
        print(
            "compare.py: --png: matplotlib is not installed; no chart will be written",
            file=sys.stderr,
        )
        args.png = None
    report = run_bench(options, progress)
    print(format_report(report), end="")
    if args.json:
        write_json(report, args.json)
        progress(f"wrote {args.json}")
    if args.png:
        if write_png(report, args.png):
            progress(f"wrote {args.png}")
        else:
            print(
                "compare.py: --png: matplotlib is not installed; no chart written", file=sys.stderr
            )
    verdicts = evaluate(report["workloads"])
    if verdicts:
        print(
            "\nGoals (benchmarks/goals.py), judged on this run (benchmarks/stream_latency.py, "
            "benchmarks/models.py and benchmarks/quantized.py time their workloads alone):"
        )
        print("\n".join(format_goals(verdicts)))
    return 0


if __name__ == "__main__":
    sys.exit(compare(sys.argv[1:]))
