"""Turning `run_bench`'s dict into the printed tables and the JSON file."""

from __future__ import annotations

import json
import os
from typing import Any


def format_bytes(size: int) -> str:
    """A size in KiB or MiB, e.g. "512 KiB", "1.5 MiB"."""
    return f"{size / (1 << 20):g} MiB" if size >= 1 << 20 else f"{size / (1 << 10):g} KiB"


def format_table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """The lines of a plain-text table: the header, a rule, the rows; the columns whose index is
    in `right` aligned to the right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * width for width in widths]), *map(line, rows)]


def format_machine(report: dict[str, Any]) -> list[str]:
    machine, info = report["machine"], report["cpu_info"]
    features = ", ".join(name for name, present in info["features"].items() if present)
    peaks = ", ".join(f"{isa} {value:.1f}" for isa, value in machine["fma_peak_by_isa"].items())
    lines = [
        f"pyrnn {report['versions']['pyrnn']}: kernels '{info['active']}' "
        f"(available: {', '.join(info['available'])}; CPU features: {features or 'none'})",
        f"Machine, one core: FMA peak {machine['fma_peak_gflops']:.1f} GFLOP/s "
        f"({machine['fma_peak_isa']}; per ISA: {peaks})",
    ]
    bandwidth = ", ".join(
        f"{level} ({format_bytes(entry['bytes'])}) {entry['gbytes_per_s']:.1f} GB/s"
        for level, entry in machine["read_bandwidth"].items()
    )
    lines.append(f"  read bandwidth: {bandwidth}")
    return lines


def _model_name(model: dict[str, Any]) -> str:
    config = model["config"]
    shape = f"{config['kind']} I={config['input_size']} H={config['hidden_size']}"
    if "num_layers" in config:
        shape += f" layers={config['num_layers']}"
    return f"{os.path.basename(model['path'])} ({shape})"


def format_model(report: dict[str, Any]) -> list[str]:
    model = report["model"]
    lines = [
        f"Model {_model_name(model)}, batch 1, T={model['steps']}, "
        f"{model['flops_per_step'] / 1e6:.3f} MFLOP/step:"
    ]
    names = {"sequence": "whole sequence", "step": "stream step, s.step(x, out=y)"}
    rows = [
        [
            names[mode],
            f"{entry['us_per_step']:.2f}",
            f"{entry['gflops']:.2f}",
            f"{entry['pct_peak']:.1f}",
        ]
        for mode, entry in model["modes"].items()
    ]
    lines += format_table(["mode", "us/step", "GFLOP/s", "% peak"], rows, {1, 2, 3})
    return lines


def _not_timed(section: str, results: list[dict[str, Any]]) -> list[str]:
    return [
        f"  {section} / {result['engine']}: {result['status']}: {result['reason']}"
        for result in results
        if result["status"] != "ok"
    ]


def format_compare(report: dict[str, Any]) -> list[str]:
    """The model on every engine: its whole sequence, then one step per call from Python."""
    compare = report.get("compare")
    if not compare:
        return []
    lines: list[str] = []
    problems: list[str] = []
    sequence, step = compare.get("sequence"), compare.get("step")
    if sequence:
        tolerance, timing = report["tolerance"], report["timing"]
        lines += [
            f"Whole sequence of {_model_name(report['model'])}, batch 1, T={sequence['steps']} "
            f"(median of {timing['repeats']} runs after {timing['warmup']} warm-up; engines "
            "timed round-robin, one call each per round).",
            "Every output is checked against pyrnn's scalar path: "
            f"|err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|.",
            "% peak is of ONE core's FMA peak (default-thread engines may use every core).",
            "x pyrnn = engine time / pyrnn time: > 1 means pyrnn is faster.",
        ]
        rows = []
        for result in sequence["results"]:
            if result["status"] == "ok":
                rows.append(
                    [
                        result["engine"],
                        result["threads"],
                        f"{result['us_per_step']:.2f}",
                        f"{result['gflops']:.1f}",
                        f"{result['pct_peak']:.1f}",
                        f"{result['ratio_vs_pyrnn']:.2f}" if "ratio_vs_pyrnn" in result else "-",
                        f"{result['max_abs_err']:.1e}",
                    ]
                )
            else:
                rows.append([result["engine"], result.get("threads", "-"), result["status"]])
                rows[-1] += ["", "", "", ""]
        header = ["engine", "threads", "us/step", "GFLOP/s", "% peak", "x pyrnn", "max err"]
        lines += format_table(header, rows, {2, 3, 4, 5})
        problems += _not_timed("whole sequence", sequence["results"])
    if step:
        if lines:
            lines.append("")
        tolerance, timing = step["tolerance"], step["timing"]
        lines += [
            "Stream: one step per call from Python, batch 1 (best of "
            f"{timing['loops']} loops of ~{timing['seconds_per_engine'] / timing['loops']:.2g} s "
            "per engine, engines alternating).",
            f"Every engine's output after {tolerance['steps_checked']} steps is checked against "
            f"pyrnn's scalar path: |err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|.",
            "x out= = engine time / s.step(x, out=y) time: > 1 means pyrnn is faster.",
        ]
        rows = []
        for result in step["results"]:
            if result["status"] == "ok":
                ratio = result.get("ratio_vs_pyrnn_out")
                rows.append(
                    [
                        result["engine"],
                        result["threads"],
                        f"{result['us_per_step']:.3f}",
                        "-" if ratio is None else f"{ratio:.2f}",
                        f"{result['max_abs_err']:.1e}",
                        result["call"],
                    ]
                )
            else:
                rows.append([result["engine"], result.get("threads", "-"), result["status"]])
                rows[-1] += ["", "", ""]
        header = ["engine", "threads", "us/step", "x out=", "max err", "call"]
        lines += format_table(header, rows, {2, 3})
        problems += _not_timed("stream step", step["results"])
    return lines + (["Not timed:", *problems] if problems else [])


def format_report(report: dict[str, Any]) -> str:
    sections = [format_machine(report), format_model(report), format_compare(report)]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def write_json(report: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(report, file, indent=2)
        file.write("\n")
