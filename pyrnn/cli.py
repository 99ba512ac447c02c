"""The `pyrnn` command: `pyrnn bench` (a model's timings against the measured hardware, and with
--compare the same model on PyTorch and ONNX Runtime) and `pyrnn info` (version, CPU features,
kernels)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__, isa
from ._spec import KINDS
from .bench.arguments import output_path as _output_path
from .bench.arguments import positive_int as _positive_int

_EPILOG = """\
examples:
  pyrnn bench                         the bundled model, whole sequence and streamed
  pyrnn bench --model model.safetensors
                                      your model (saved with pyrnn.save)
  pyrnn bench --model model.safetensors --kind lstm --prefix encoder.rnn.
                                      an LSTM inside a PyTorch model's state_dict
  pyrnn bench --compare --json r.json the same model on PyTorch and ONNX Runtime too
"""


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level parser and its bench subparser (for bench's own error messages)."""
    parser = argparse.ArgumentParser(
        prog="pyrnn", description="pyrnn: exact, fast CPU inference for RNN, LSTM and GRU."
    )
    parser.add_argument("--version", action="version", version=f"pyrnn {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = commands.add_parser(
        "bench",
        help="time a model on pyrnn (and with --compare, PyTorch and ONNX Runtime) against "
        "the hardware",
        description="Measures this core's FMA peak and read bandwidth, times a model in\n"
        "whole-sequence use and streamed one step per call (s.step(x, out=y)), and with\n"
        "--compare times the same model on pyrnn, PyTorch and ONNX Runtime in one run (its\n"
        "whole sequence, and one step per call), each output checked against pyrnn first.",
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
        "--compare",
        action="store_true",
        help="also time the model on PyTorch and ONNX Runtime (those installed)",
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
    from . import bench
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
    options = bench.BenchOptions(
        model=args.model,
        kind=args.kind,
        prefix=args.prefix,
        nonlinearity=args.nonlinearity,
        batch_first=args.batch_first,
        compare=args.compare,
        quick=args.quick,
        repeats=args.repeats,
    )

    def progress(message: str) -> None:
        print(f"[pyrnn bench] {message}", file=sys.stderr, flush=True)

    try:
        model = bench.load_model(options)
    except FormatError as error:
        advice = _argument_advice(error.needs, "--kind {}", "--prefix {}")
        parser.error(f"--model: {error.problem}{advice}")
    except OSError as error:
        parser.error(f"--model: cannot read {args.model!r}: {error.strerror or error}")
    except (TypeError, ValueError) as error:  # options that contradict the file
        parser.error(f"--model: {error}")
    report = bench.run_bench(options, progress, model)
    print(bench.format_report(report), end="")
    if args.json:
        bench.write_json(report, args.json)
        progress(f"wrote {args.json}")
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
