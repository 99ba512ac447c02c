"""Turning the comparison's dict (runner.run_bench) into the printed tables, the JSON file and
the PNG bar chart. The machine and model sections and the JSON file are pyrnn.bench's."""

from __future__ import annotations

import os
from typing import Any

from pyrnn.bench import format_bytes as _mib
from pyrnn.bench import format_machine, format_model, write_json
from pyrnn.bench import format_table as _table

__all__ = [
    "format_comparison",
    "format_machine",
    "format_model",
    "format_models",
    "format_quantized",
    "format_report",
    "format_streaming",
    "write_json",
    "write_png",
]


def _sequence_workloads(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in report["workloads"] if w.get("category", "sequence") == "sequence"]


def _stream_workloads(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in report["workloads"] if w.get("category") == "stream"]


def _model_workloads(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in report["workloads"] if w.get("category") == "model"]


def _quant_workloads(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in report["workloads"] if w.get("category") == "quantized"]


def format_comparison(report: dict[str, Any]) -> list[str]:
    workloads = _sequence_workloads(report)
    if not workloads:
        return []
    tolerance = report["tolerance"]
    timing = report["timing"]
    lines = [
        f"Comparison (median of {timing['repeats']} runs after {timing['warmup']} warm-up; "
        "engines timed round-robin, one call each per round).",
        "Every output is checked against pyrnn's scalar path: "
        f"|err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|.",
        "% peak is of ONE core's FMA peak (default-thread engines may use every core).",
        "x pyrnn = engine time / pyrnn time: > 1 means pyrnn is faster.",
    ]
    header = ["workload", "engine", "threads", "us/step", "GFLOP/s", "% peak", "x pyrnn", "max err"]
    rows = []
    for workload in workloads:
        bound = workload["bound"]
        rows.append(
            [
                workload["name"],
                "bound",
                "1",
                f"{bound['us']:.2f}",
                f"{workload['flops_per_step'] / (bound['us'] * 1e3):.1f}",
                "",
                "",
                bound["limit"],
            ]
        )
        for result in workload["results"]:
            if result["status"] == "ok":
                rows.append(
                    [
                        "",
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
                rows.append(
                    [
                        "",
                        result["engine"],
                        result.get("threads", "-"),
                        result["status"],
                        "",
                        "",
                        "",
                        "",
                    ]
                )
    lines += _table(header, rows, {3, 4, 5, 6})
    notes = [
        f"  {w['name']}: {w['description']}; recurrent weights {_mib(w['bound']['weight_bytes'])} "
        f"({w['bound']['weights_level']}) read at {w['bound']['weights_gbytes_per_s']:.1f} GB/s"
        for w in workloads
    ]
    lines += [
        "Workloads. bound = a lower bound for one core: max(FLOPs at the FMA peak, recurrent",
        "weights read once at the bandwidth measured for a buffer of their size):",
        *notes,
    ]
    return lines + _not_timed(workloads)


def _not_timed(workloads: list[dict[str, Any]]) -> list[str]:
    """Lines naming every engine that was not timed and why (none when all were)."""
    problems = [
        f"  {workload['name']} / {result['engine']}: {result['status']}: {result['reason']}"
        for workload in workloads
        for result in workload["results"]
        if result["status"] != "ok"
    ]
    return ["Not timed:", *problems] if problems else []


def format_streaming(report: dict[str, Any]) -> list[str]:
    """The streaming table: per-step latency from Python, many streams in one call, and the
    Python overhead of a step."""
    workloads = _stream_workloads(report)
    if not workloads:
        return []
    first = workloads[0]
    tolerance, timing = first["tolerance"], first["timing"]
    lines = [
        "Streaming: one step per call from Python, batch 1 (best of "
        f"{timing['loops']} loops of ~{timing['seconds_per_engine'] / timing['loops']:.2g} s "
        "per engine, engines alternating).",
        f"Every engine's output after {tolerance['steps_checked']} steps is checked against "
        f"pyrnn's scalar path: |err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|.",
        "x out= = engine time / s.step(x, out=y) time: > 1 means pyrnn is faster.",
    ]
    header = ["workload", "engine", "threads", "us/step", "x out=", "max err", "call"]
    rows = []
    for workload in workloads:
        name = workload["name"]
        for result in workload["results"]:
            if result["status"] == "ok":
                ratio = result.get("ratio_vs_pyrnn_out")
                rows.append(
                    [
                        name,
                        result["engine"],
                        result["threads"],
                        f"{result['us_per_step']:.3f}",
                        "-" if ratio is None else f"{ratio:.2f}",
                        f"{result['max_abs_err']:.1e}",
                        result["call"],
                    ]
                )
            else:
                rows.append([name, result["engine"], result.get("threads", "-"), result["status"]])
                rows[-1] += ["", "", ""]
            name = ""
    lines += _table(header, rows, {3, 4})
    for workload in workloads:
        batch = workload.get("batch")
        if batch:
            if batch["status"] == "ok":
                lines.append(
                    f"{workload['label']}: batch={batch['rows']} step {batch['batch_us']:.2f} us "
                    f"vs {batch['rows']} separate streams {batch['separate_us']:.2f} us -> "
                    f"{batch['batch_stream_steps_per_s'] / 1e6:.2f} vs "
                    f"{batch['separate_stream_steps_per_s'] / 1e6:.2f} M stream-steps/s, "
                    f"{batch['ratio']:.1f}x"
                )
            else:
                lines.append(
                    f"{workload['label']}: batch={batch['rows']}: {batch['status']}: "
                    f"{batch['reason']}"
                )
        overhead = workload.get("overhead")
        if overhead:
            lines.append(
                f"Python overhead of s.step(x, out=y), {workload['label']}: "
                f"{overhead['overhead_us']:.3f} us ({overhead['step_us']:.3f} us from Python - "
                f"{overhead['cpp_us']:.3f} us in the C++ loop)"
            )
        tiny = workload.get("tiny")
        if tiny:
            lines.append(
                f"{workload['label']} at audio rate, ns per sample: feed(64) "
                f"{tiny['feed64_ns']:.1f}, feed(256) {tiny['feed256_ns']:.1f}, step(x, out=y) "
                f"{tiny['step_ns']:.1f} (C++ loop {tiny['cpp_step_ns']:.1f}); at 48 kHz "
                f"{tiny['x_realtime_48k']:.0f}x real time fed, {tiny['x_realtime_48k_step']:.0f}x "
                "stepped"
            )
    return lines + _not_timed(workloads)


def format_models(report: dict[str, Any]) -> list[str]:
    """The whole-model table: per-frame time of each engine on each model workload, relative to
    the pyrnn model, and what the model costs against its bare LSTM."""
    workloads = _model_workloads(report)
    if not workloads:
        return []
    lines = ["Whole models converted with pyrnn.from_torch, batch 1:"]
    for workload in workloads:
        timing, tolerance = workload.get("timing"), workload.get("tolerance")
        if timing is None or tolerance is None:  # nothing could run
            continue
        check = f"|err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|"
        if workload["mode"] == "stream":
            lines.append(
                f"  {workload['name']}: one frame per call from Python; best of "
                f"{timing['loops']} loops of ~{timing['seconds_per_engine'] / timing['loops']:.2g}"
                f" s per engine, engines alternating; outputs after {tolerance['steps_checked']} "
                f"frames checked against pyrnn's scalar path: {check}"
            )
        else:
            lines.append(
                f"  {workload['name']}: whole sequence; median of {timing['repeats']} calls after "
                f"{timing['warmup']} warm-up, engines taking turns; outputs checked against "
                f"pyrnn's scalar path: {check}"
            )
    lines.append(
        "x model = engine time / the pyrnn model's time (s.step(x, out=y) streamed, model(x) "
        "over a sequence): > 1 means the pyrnn model is faster."
    )
    header = ["workload", "engine", "threads", "us/step", "x model", "max err", "call"]
    rows = []
    for workload in workloads:
        name = workload["name"]
        for result in workload["results"]:
            if result["status"] == "ok":
                ratio = result.get("ratio_vs_model")
                rows.append(
                    [
                        name,
                        result["engine"],
                        result["threads"],
                        f"{result['us_per_step']:.3f}",
                        "-" if ratio is None else f"{ratio:.2f}",
                        f"{result['max_abs_err']:.1e}",
                        result.get("call", ""),
                    ]
                )
            else:
                rows.append([name, result["engine"], result.get("threads", "-"), result["status"]])
                rows[-1] += ["", "", ""]
            name = ""
    lines += _table(header, rows, {3, 4})
    for workload in workloads:
        versus = workload["vs_lstm"]
        if versus["status"] != "ok":
            continue
        what = "s.step(x, out=y)" if workload["mode"] == "stream" else "model(x)"
        lines.append(
            f"{workload['name']} ({workload['label']}): the model's {what} takes "
            f"{versus['ratio']:.2f}x the bare LSTM's time ({versus['model_us']:.3f} vs "
            f"{versus['lstm_us']:.3f} us per frame, {versus['extra_us']:+.3f} us for the rest of "
            "the model)"
        )
    return lines + _not_timed(workloads)


def _weight_bytes(bound: dict[str, Any], weights: str, workload: dict[str, Any]) -> str:
    """The bytes one step reads in `weights`, e.g. "4 MiB + 16 KiB scales"."""
    size = bound["weight_bytes"]
    if weights != "int8":
        return _mib(size)
    described = workload["workload"]
    rows = 4 * described["hidden_size"]
    scales = 4 * rows * (2 if workload["mode"] == "stream" else 1)
    return f"{_mib(size - scales)} + {_mib(scales)} scales"


def format_quantized(report: dict[str, Any]) -> list[str]:
    """The reduced-precision table: each weight type's time per step, its % of that type's
    bound, its speed-up over fp32 weights, the peers against pyrnn with the same weight type,
    and each output's error (its check, and against the fp32 model)."""
    workloads = _quant_workloads(report)
    if not workloads:
        return []
    lines = ["Weights in each type of pyrnn.quantize, batch 1, 1 thread:"]
    peer_tolerances: dict[str, Any] = {}
    for workload in workloads:
        timing, tolerance = workload["timing"], workload["tolerance"]["pyrnn"]
        check = f"|err| <= {tolerance['atol']:g} + {tolerance['rtol']:g}*|ref|"
        if workload["mode"] == "stream":
            lines.append(
                f"  {workload['name']}: {workload['description']}; best of {timing['loops']} "
                f"loops of ~{timing['seconds_per_engine'] / timing['loops']:.2g} s per engine, "
                f"engines alternating; output after {tolerance['steps_checked']} steps checked "
                f"against pyrnn's scalar kernels on the same quantised model: {check}"
            )
        else:
            lines.append(
                f"  {workload['name']}: {workload['description']}; median of "
                f"{timing['repeats']} calls after {timing['warmup']} warm-up, engines taking "
                f"turns; output checked against pyrnn's scalar kernels on the same quantised "
                f"model: {check}"
            )
        peer_tolerances.update(workload["tolerance"].get("peers", {}))
    if peer_tolerances:
        checks = ", ".join(
            f"{weights} |err| <= {entry['atol']:g} + {entry['rtol']:g}*|ref|"
            for weights, entry in peer_tolerances.items()
        )
        lines.append(
            "  peers quantise differently (activations too): checked against the fp32 model, "
            f"{checks}"
        )
    lines += [
        "% bound = the bound of the engine's weight type / its time. x fp32 = pyrnn fp32 time / "
        "engine time (> 1: faster than fp32 weights).",
        "x pyrnn = engine time / pyrnn's time with the same weight type (> 1: pyrnn is faster). "
        "err vs fp32 = max |output - the fp32 model's| (accuracy).",
    ]
    header = [
        "workload", "engine", "weights", "us/step", "% bound", "x fp32", "x pyrnn", "check err",
        "err vs fp32", "call",
    ]  # fmt: skip
    rows = []
    for workload in workloads:
        name = workload["name"]
        for result in workload["results"]:
            row = [name, result["engine"], result["weights"]]
            if result["status"] == "ok":

                def ratio(key: str, entry: dict[str, Any] = result) -> str:
                    return f"{entry[key]:.2f}" if key in entry else "-"

                row += [
                    f"{result['us_per_step']:.2f}",
                    f"{result['pct_bound']:.1f}",
                    ratio("speedup_vs_fp32"),
                    ratio("ratio_vs_pyrnn"),
                    f"{result['max_abs_err']:.1e}",
                    f"{result['err_vs_fp32']:.1e}" if "err_vs_fp32" in result else "-",
                    result.get("call", ""),
                ]
            else:
                row += [result["status"], "", "", "", "", "", ""]
            rows.append(row)
            name = ""
    lines += _table(header, rows, {3, 4, 5, 6, 7, 8})
    lines.append(
        "bound = a lower bound for one core: max(FLOPs at the FMA peak, the weights every step "
        "reads, in their stored type, at the bandwidth measured for a buffer of their size):"
    )
    for workload in workloads:
        what = "W_ih and W_hh" if workload["mode"] == "stream" else "W_hh"
        parts = [
            f"{weights} {_weight_bytes(bound, weights, workload)} ({bound['weights_level']}, "
            f"{bound['weights_gbytes_per_s']:.1f} GB/s) {bound['us']:.2f} us, {bound['limit']}"
            for weights, bound in workload["bounds"].items()
        ]
        lines.append(
            f"  {workload['name']} ({workload['flops_per_step'] / 1e6:.1f} MFLOP/step, "
            f"{what} per step): {'; '.join(parts)}"
        )
    return lines + _not_timed(workloads)


def format_packed(report: dict[str, Any]) -> list[str]:
    """The variable-length table: each engine's time per sequence step it was asked for (S for
    a packed batch, N * T_max for the padded one) and the call's time."""
    workloads = [w for w in report["workloads"] if w.get("category") == "packed"]
    if not workloads:
        return []
    lines = ["Variable-length batches (us per sequence step asked for: S packed, N*T padded):"]
    for workload in workloads:
        timing = workload["timing"]
        lines.append(
            f"  {workload['name']}: {workload['description']}; S = {workload['rows']} of "
            f"{workload['padded_rows']} padded steps; median of {timing['repeats']} calls after "
            f"{timing['warmup']} warm-up, engines taking turns"
        )
    rows = []
    for workload in workloads:
        for result in workload["results"]:
            if result["status"] == "ok":
                rows.append(
                    [
                        workload["name"],
                        result["engine"],
                        f"{result['median_s'] * 1e3:.1f}",
                        f"{result['us_per_step']:.3f}",
                    ]
                )
            else:
                rows.append([workload["name"], result["engine"], result["status"], ""])
    return lines + _table(["workload", "engine", "ms/call", "us/seq-step"], rows, {2, 3})


def format_report(report: dict[str, Any]) -> str:
    sections = [
        format_machine(report),
        format_model(report),
        format_comparison(report),
        format_streaming(report),
        format_models(report),
        format_quantized(report),
        format_packed(report),
    ]
    return "\n\n".join("\n".join(section) for section in sections if section) + "\n"


def write_png(report: dict[str, Any], path: str) -> bool:
    """A bar chart of us/step per engine, one panel per workload (and the model's modes); stream
    panels add a batch stream's and separate streams' time per stream-step, reduced-precision
    panels mark each bar's bound.
    Returns False, writing nothing, when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    # (title, bar labels, us per step, the bound: one line, one per bar, or none)
    panels: list[tuple[str, list[str], list[float], float | list[float] | None]] = []
    model = report["model"]
    panels.append(
        (
            f"model {os.path.basename(model['path'])}",
            list(model["modes"]),
            [entry["us_per_step"] for entry in model["modes"].values()],
            None,
        )
    )
    for workload in _sequence_workloads(report):
        ok = [r for r in workload["results"] if r["status"] == "ok"]
        panels.append(
            (
                workload["name"],
                [f"{r['engine']}" for r in ok],
                [r["us_per_step"] for r in ok],
                workload["bound"]["us"],
            )
        )
    for workload in _stream_workloads(report):
        ok = [r for r in workload["results"] if r["status"] == "ok"]
        labels, values = [r["engine"] for r in ok], [r["us_per_step"] for r in ok]
        batch = workload.get("batch")
        if batch and batch["status"] == "ok":
            rows = batch["rows"]
            labels += [f"batch={rows}, per row", f"{rows} streams, per stream"]
            values += [batch["batch_us"] / rows, batch["separate_us"] / rows]
        panels.append((f"{workload['name']} ({workload['label']})", labels, values, None))
    for workload in _model_workloads(report):
        ok = [r for r in workload["results"] if r["status"] == "ok"]
        if ok:
            labels, values = [r["engine"] for r in ok], [r["us_per_step"] for r in ok]
            panels.append((f"{workload['name']} ({workload['label']})", labels, values, None))
    for workload in _quant_workloads(report):
        ok = [r for r in workload["results"] if r["status"] == "ok"]
        if ok:
            labels, values = [r["engine"] for r in ok], [r["us_per_step"] for r in ok]
            bounds = [workload["bounds"][r["weights"]]["us"] for r in ok]
            panels.append((f"{workload['name']} ({workload['label']})", labels, values, bounds))
    height = 1.2 + 1.6 * len(panels)
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, height), squeeze=False)
    for axis, (title, labels, values, bound) in zip(axes[:, 0], panels, strict=True):
        peer = ("torch", "ort")  # every other bar is pyrnn's
        colors = ["tab:blue" if label.startswith(peer) else "tab:orange" for label in labels]
        axis.barh(labels, values, color=colors)
        axis.invert_yaxis()
        if isinstance(bound, list):  # each bar's own bound (its weight type's)
            axis.scatter(bound, labels, marker="|", s=60, color="black", label="bound")
            axis.legend(loc="lower right", fontsize=7)
        elif bound is not None:
            axis.axvline(bound, color="black", linestyle="--", linewidth=1, label="bound")
            axis.legend(loc="lower right", fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("us per step (lower is better)", fontsize=8)
        axis.tick_params(labelsize=8)
    figure.suptitle(
        f"pyrnn {report['versions']['pyrnn']} ({report['cpu_info']['active']}), "
        f"FMA peak {report['machine']['fma_peak_gflops']:.0f} GFLOP/s",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / height))  # 0.4 in. on top for the suptitle
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
