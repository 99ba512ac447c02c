"""The hardware scale for every benchmark figure: single-core FMA peak, read bandwidth of L2-,
L3- and DRAM-sized buffers (probes in C++, cpp/probe/), the lower bound on a step's time that
follows from them, and a module's FLOPs and recurrent weight bytes per step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import _core
from .._spec import Spec

# Used when the OS does not say (non-Linux): sizes of the AMD EPYC cores this was written on.
_FALLBACK_CACHES = {"L1d": 32 << 10, "L2": 1 << 20, "L3": 32 << 20}


def cache_sizes() -> dict[str, int]:
    """Bytes of the L1d, L2 and L3 caches of CPU 0 from Linux's sysfs, else typical sizes."""
    sizes: dict[str, int] = {}
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(root.glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        number = text.rstrip("KMG")
        if not number.isdigit():
            continue
        sizes["L1d" if level == "1" else f"L{level}"] = int(number) * scale
    return {key: sizes.get(key, fallback) for key, fallback in _FALLBACK_CACHES.items()}


def measure_peak(seconds: float = 0.3) -> dict[str, Any]:
    """The part of measure_machine that lower_bound_us needs when the bandwidth is probed for
    the weights' own size: the FMA peak per ISA (each probe for about `seconds`) and the cache
    sizes."""
    peaks = {isa: _core._probe_fma_peak(seconds, isa)["gflops"] for isa in _core._probe_isas()}
    best_isa = max(peaks, key=lambda isa: peaks[isa])
    return {
        "fma_peak_gflops": peaks[best_isa],
        "fma_peak_isa": best_isa,
        "fma_peak_by_isa": peaks,
        "caches": cache_sizes(),
    }


def measure_machine(seconds: float = 0.3) -> dict[str, Any]:
    """Measures (each probe for about `seconds`, single thread, best short trial kept):
    FMA peak per ISA the CPU runs, and read bandwidth of buffers sized to sit in L2 (half of it),
    in L3 (a quarter of it, as the L3 is shared) and in DRAM (4x the L3)."""
    peak = measure_peak(seconds)
    caches = peak["caches"]
    buffers = {
        "L2": caches["L2"] // 2,
        "L3": caches["L3"] // 4,
        "DRAM": max(4 * caches["L3"], 64 << 20),
    }
    bandwidth = {}
    for level, size in buffers.items():
        result = _core._probe_read_bandwidth(size, seconds)
        bandwidth[level] = {"bytes": int(result["bytes"]), "gbytes_per_s": result["gbytes_per_s"]}
    return {
        **peak,
        "read_bandwidth": bandwidth,
        "probe_seconds": seconds,
    }


def weights_bandwidth(weight_bytes: int, seconds: float) -> float:
    """GB/s of reading a buffer exactly as large as a workload's recurrent weights, again and
    again (what every step does), rather than guessing it from the cache level sizes."""
    return float(_core._probe_read_bandwidth(max(weight_bytes, 1), seconds)["gbytes_per_s"])


def lower_bound_us(
    flops: float,
    weight_bytes: int,
    machine: dict[str, Any],
    bandwidth_gbytes_per_s: float | None = None,
) -> dict[str, Any]:
    """A single-core lower bound on one step: the larger of the FLOPs at the FMA peak and the
    recurrent weights read once (they must be read again every step) at
    `bandwidth_gbytes_per_s`, by default the measured bandwidth of the smallest cache level
    holding them (3/4 of a level counts as fitting; the rest goes to other data)."""
    caches = machine["caches"]
    if weight_bytes <= caches["L2"] * 3 // 4:
        level = "L2"
    elif weight_bytes <= caches["L3"] * 3 // 4:
        level = "L3"
    else:
        level = "DRAM"
    if bandwidth_gbytes_per_s is None:
        bandwidth_gbytes_per_s = machine["read_bandwidth"][level]["gbytes_per_s"]
    compute_us = flops / (machine["fma_peak_gflops"] * 1e3)
    memory_us = weight_bytes / (bandwidth_gbytes_per_s * 1e3)
    return {
        "us": max(compute_us, memory_us),
        "compute_us": compute_us,
        "memory_us": memory_us,
        "weight_bytes": weight_bytes,
        "weights_level": level,
        "weights_gbytes_per_s": bandwidth_gbytes_per_s,
        "limit": "compute" if compute_us >= memory_us else f"{level} bandwidth",
    }


def flops_per_step(config: dict[str, Any], rows: int = 1) -> float:
    """FLOPs of one time step over `rows` batch rows of a module with `config` (module.config):
    per layer and direction 2*G*H*(I_l + P) for the input and recurrent matmuls, plus 2*P*H for
    an LSTM projection. Activations and the elementwise gate update are left out (they are
    O(G*H), not O(G*H*(I+H)))."""
    spec = Spec.from_config(config)
    total = 0
    for layer in range(spec.num_layers):
        per_direction = (
            2 * spec.gates * spec.hidden_size * (spec.layer_input_size(layer) + spec.output_size)
        )
        if spec.proj_size:
            per_direction += 2 * spec.proj_size * spec.hidden_size
        total += per_direction * spec.directions
    return float(total * rows)


def recurrent_weight_bytes(config: dict[str, Any]) -> int:
    """Bytes of the weights every step must read again (W_hh and W_hr of every layer and
    direction, float32) of a module with `config`: the input projection can be done for all
    steps at once, these cannot."""
    spec = Spec.from_config(config)
    per_direction = spec.gates * spec.hidden_size * spec.output_size
    if spec.proj_size:
        per_direction += spec.proj_size * spec.hidden_size
    return 4 * per_direction * spec.directions * spec.num_layers
