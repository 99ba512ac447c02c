"""The `pyrnn` command: `pyrnn bench` (timings against the measured hardware, and with --compare
against PyTorch and ONNX Runtime) and `pyrnn info` (version, CPU features, kernels)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence

from . import __version__, isa
from ._spec import KINDS

_EPILOG = """\
examples:
  pyrnn bench                         the bundled model, whole sequence and streamed
  pyrnn bench --compare --json r.json every workload against PyTorch and ONNX Runtime
  pyrnn bench --quick --workloads seq-lstm-256,seq-gru-256
  pyrnn bench --workloads stream-lstm-64,stream-overhead   streaming latency from Python
  pyrnn bench --workloads model-stream-head,model-seq-head whole models converted from torch
  pyrnn bench --workloads quant-seq-lstm-1024,quant-stream-lstm-512,quant-peers-lstm-512
                                      weights in fp32, fp16, bf16 and int8 (pyrnn.quantize)
  pyrnn bench --model model.safetensors --kind lstm --prefix encoder.rnn.
                                      an LSTM inside a PyTorch model's state_dict
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


def _output_path(text: str) -> str:
    """A file the report can be written to, checked before minutes of benchmarking."""
    directory = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected a file name")
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {directory!r} {what}")
    if os.path.exists(text):
        if not os.access(text, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: permission denied")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: no permission to create files in {directory!r}"
        )
    return text


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
        "--compare runs the benchmark workloads (whole sequences, streaming, whole models\n"
        "converted from torch, and weights in each type of pyrnn.quantize) on pyrnn, PyTorch\n"
        "and ONNX Runtime in one run.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "--model",
        metavar="PATH",
        help="a pyrnn .safetensors model, or a PyTorch state_dict (safetensors or torch.save) "
        "with --kind (default: the bundled LSTM)",
    )
    bench.add_argument(
        "--kind", choices=KINDS, help="what a plain PyTorch state_dict given as --model holds"
    )
    bench.add_argument(
        "--prefix",
        default="",
        metavar="KEYS",
        help="with --kind: the common start of the module's keys, e.g. encoder.rnn.",
    )
    bench.add_argument(
        "--nonlinearity",
        choices=("tanh", "relu"),
        help="with --kind rnn or rnn_cell (default tanh): not inferable from the weights",
    )
    bench.add_argument(
        "--batch-first",
        action="store_const",
        const=True,
        help="with --kind rnn, lstm or gru: inputs are (batch, time, features)",
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
    bench.add_argument(
        "--json", metavar="PATH", type=_output_path, help="write every measurement as JSON"
    )
    bench.add_argument(
        "--png", metavar="PATH", type=_output_path, help="write a bar chart (needs matplotlib)"
    )

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
    from .benchmarking.runner import load_model
    from .io import FormatError, _argument_advice

    given = [
        flag
        for flag, value in (
            ("--kind", args.kind),
            ("--prefix", args.prefix),
            ("--nonlinearity", args.nonlinearity),
            ("--batch-first", args.batch_first),
        )
        if value
    ]
    if given and args.model is None:
        parser.error(f"{', '.join(given)}: describe the file given as --model; pass --model")
    options = BenchOptions(
        model=args.model,
        kind=args.kind,
        prefix=args.prefix,
        nonlinearity=args.nonlinearity,
        batch_first=args.batch_first,
        quick=args.quick,
        repeats=args.repeats,
    )
    if args.workloads is not None:
        options.workloads = args.workloads
    options.compare = args.compare or args.workloads is not None

    def progress(message: str) -> None:
        print(f"[pyrnn bench] {message}", file=sys.stderr, flush=True)

    if args.png and importlib.util.find_spec("matplotlib") is None:
        # Said now, not after the benchmark.
        print(
            "pyrnn bench: --png: matplotlib is not installed; no chart will be written",
            file=sys.stderr,
        )
        args.png = None
    try:
        model = load_model(options)
    except FormatError as error:
        advice = _argument_advice(error.needs, "--kind {}", "--prefix {}")
        parser.error(f"--model: {error.problem}{advice}")
    except OSError as error:
        parser.error(f"--model: cannot read {args.model!r}: {error.strerror or error}")
    except (TypeError, ValueError) as error:  # options that contradict the file
        parser.error(f"--model: {error}")
    report = run_bench(options, progress, model)
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
