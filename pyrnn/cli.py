"""The `pyrnn` command: `pyrnn bench` (timings against the measured hardware, and with --compare
against PyTorch and ONNX Runtime) and `pyrnn info` (version, CPU features, kernels)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__, isa

_EPILOG = """\
examples:
  pyrnn bench                         the bundled model, whole sequence and streamed
  pyrnn bench --compare --json r.json every workload against PyTorch and ONNX Runtime
  pyrnn bench --quick --workloads seq-lstm-256,seq-gru-256
  pyrnn bench --workloads stream-lstm-64,stream-overhead   streaming latency and its goals
"""


def _workload_list(text: str) -> list[str]:
    from .benchmarking import WORKLOADS

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated workload names, got none")
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown)}; expected some of {', '.join(WORKLOADS)}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its bench subparser (for bench's own error messages)."""
    from .benchmarking.workloads import WORKLOADS

    parser = argparse.ArgumentParser(
        prog="pyrnn", description="pyrnn: exact, fast CPU inference for RNN, LSTM and GRU."
    )
    parser.add_argument("--version", action="version", version=f"pyrnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="time pyrnn (and with --compare, PyTorch and ONNX Runtime) against the hardware",
        description="Measures this core's FMA peak and read bandwidth, times a model in\n"
        "whole-sequence use and streamed one step per call (s.step(x, out=y)), and with\n"
        "--compare runs the benchmark workloads (whole sequences and streaming) on pyrnn,\n"
        "PyTorch and ONNX Runtime in one run.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--model", metavar="PATH", help="a pyrnn .safetensors model (default: the bundled LSTM)"
    )
    bench.add_argument(
        "--compare", action="store_true", help="also time the workloads on PyTorch and ORT"
    )
    bench.add_argument(
        "--workloads",
        metavar="A,B",
        type=_workload_list,
        help="comparison workloads to run, implies --compare (default: all of "
        f"{', '.join(WORKLOADS)})",
    )
    bench.add_argument(
        "--repeats", type=_positive_int, help="timed runs per measurement (default 5, quick 2)"
    )
    bench.add_argument(
        "--quick", action="store_true", help="1/10 of the steps, fewer repeats, short probes"
    )
    bench.add_argument("--json", metavar="PATH", help="write every measurement as JSON")
    bench.add_argument("--png", metavar="PATH", help="write a bar chart (needs matplotlib)")

    info = commands.add_parser("info", help="print the version, CPU features and kernels")
    info.add_argument("--json", action="store_true", help="print as JSON")
    return parser, bench


def _info(json_output: bool) -> int:
    from . import _core

    info = {"version": __version__, **isa.cpu_info(), "probe_isas": list(_core._probe_isas())}
    if json_output:
        print(json.dumps(info, indent=2))
        return 0
    features = ", ".join(name for name, present in info["features"].items() if present)
    print(f"pyrnn {info['version']}")
    print(f"CPU features: {features or 'none detected'}")
    print(f"kernels compiled: {', '.join(info['compiled'])}")
    print(f"kernels available: {', '.join(info['available'])}")
    print(f"kernels active: {info['active']}")
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .benchmarking import BenchOptions, run_bench
    from .benchmarking.report import format_report, write_json, write_png
    from .io import FormatError

    options = BenchOptions(model=args.model, quick=args.quick, repeats=args.repeats)
    if args.workloads is not None:
        options.workloads = args.workloads
    options.compare = args.compare or args.workloads is not None

    def progress(message: str) -> None:
        print(f"[pyrnn bench] {message}", file=sys.stderr, flush=True)

    try:
        report = run_bench(options, progress)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        parser.error(f"--model: cannot read {args.model!r}: {error.strerror or error}")
    except FormatError as error:
        parser.error(f"--model: {error}")
    print(format_report(report), end="")
    if args.json:
        write_json(report, args.json)
        progress(f"wrote {args.json}")
    if args.png:
        if write_png(report, args.png):
            progress(f"wrote {args.png}")
        else:
            print(
                "pyrnn bench: --png: matplotlib is not installed; no chart written", file=sys.stderr
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pyrnn` console script; returns the exit status."""
    parser, bench_parser = _parsers()
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info(args.json)
    return _bench(args, bench_parser)


if __name__ == "__main__":
    sys.exit(main())
