"""What the comparison times (the arithmetic that turns a time into GFLOP/s and a bound is
pyrnn.bench's flops_per_step and recurrent_weight_bytes).

Workloads are registered by category, each category with its runner in runner.RUNNERS:
"sequence" (one whole-sequence forward, timed on every engine), "stream" (one step per call
from Python, timed on pyrnn streams, torch cells and per-step ONNX Runtime runs; streaming.py)
"model" (a whole torch model converted with pyrnn.from_torch, streamed or run over a
sequence, against its recurrent layer alone and the peers; models.py) and "quantized" (one
LSTM with its weights stored in each type of pyrnn.quantize, and the peers' own reduced-precision
LSTMs; quantized.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from pyrnn import GRU, LSTM, RNN, Module
from pyrnn.bench import flops_per_step, recurrent_weight_bytes

__all__ = [
    "WEIGHT_SIZES",
    "WEIGHT_TYPES",
    "WORKLOADS",
    "ModelWorkload",
    "QuantWorkload",
    "SequenceWorkload",
    "StreamWorkload",
    "Workload",
    "flops_per_step",
    "recurrent_weight_bytes",
]

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_CLASSES: dict[str, type[Module]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass(frozen=True)
class SequenceWorkload:
    """One whole-sequence forward: `batch` rows of `steps` steps through a fresh seeded module."""

    category: ClassVar[str] = "sequence"

    name: str
    kind: str  # "rnn", "lstm" or "gru"
    input_size: int
    hidden_size: int
    batch: int
    steps: int
    num_layers: int = 1
    bidirectional: bool = False

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
        }

    def module(self, seed: int = 0) -> Module:
        config = self.config()
        cls = _CLASSES[config.pop("kind")]
        return cls(**config, seed=seed)  # type: ignore[call-arg]

    def inputs(self, steps: int, seed: int = 0) -> np.ndarray:
        """A (T, N, I) float32 input of standard normal values."""
        rng = np.random.default_rng(seed)
        return rng.standard_normal((steps, self.batch, self.input_size), dtype=np.float32)

    def describe(self, steps: int | None = None) -> str:
        """One line for the report; `steps` overrides T (quick runs use fewer)."""
        layers = f", {self.num_layers} layers" if self.num_layers > 1 else ""
        bi = ", bidirectional" if self.bidirectional else ""
        return (
            f"{self.kind.upper()} I={self.input_size} H={self.hidden_size}{layers}{bi}, "
            f"B={self.batch}, T={steps or self.steps}"
        )


@dataclass(frozen=True)
class StreamWorkload:
    """Steps of a fresh seeded unidirectional 1-layer module fed one at a time from Python.

    measure="latency": batch-1 step time of every engine, and a `batch`-row stream against
    `batch` separate streams. measure="overhead": the Python cost of s.step(x, out=y), the step
    timed from Python minus the same steps in a C++ loop (on a tiny model, so that arithmetic
    does not hide it). measure="tiny": an audio-rate model (a stream of the tiny kernels), in
    ns per sample of s.step(x, out=y), of the same steps in C++, and of feeds of 64- and
    256-sample blocks, with the headroom at 48 kHz (one second of audio over the time it takes)."""

    category: ClassVar[str] = "stream"

    name: str
    label: str  # a short name of the model for the table, e.g. "LSTM 64"
    kind: str  # "lstm" or "gru"
    input_size: int
    hidden_size: int
    batch: int = 64
    measure: Literal["latency", "overhead", "tiny"] = "latency"
    num_layers: int = 1

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": False,
        }

    def module(self, seed: int = 0) -> Module:
        config = self.config()
        cls = _CLASSES[config.pop("kind")]
        return cls(**config, seed=seed)  # type: ignore[call-arg]

    def describe(self, steps: int | None = None) -> str:
        shape = f"{self.kind.upper()} I={self.input_size} H={self.hidden_size}"
        if self.measure == "overhead":
            return f"{shape}: Python overhead of s.step(x, out=y)"
        if self.measure == "tiny":
            layers = f" x{self.num_layers} layers" if self.num_layers > 1 else ""
            return f"{shape}{layers}: ns per sample of step and of feeds of 64 and 256 samples"
        return (
            f"{shape}: one step per call, batch 1; and batch={self.batch} vs {self.batch} streams"
        )


@dataclass(frozen=True)
class ModelWorkload:
    """A torch model of an LSTM between linear layers, converted with pyrnn.from_torch:
    [Linear(I -> I)] -> LSTM(I, H, num_layers) -> Linear(H -> output_size) [-> LogSoftmax].

    mode="stream": one frame per call, batch 1, from a ModelStream, timed against the bare
    pyrnn LSTM's stream step and the peers run frame by frame with the state fed back.
    mode="sequence": model(x) over `steps` frames, batch 1, against the LSTM alone and the
    peers running the whole model."""

    category: ClassVar[str] = "model"

    name: str
    label: str  # a short name of the model for the table, e.g. "head LSTM 64"
    mode: Literal["stream", "sequence"]
    input_size: int
    hidden_size: int
    output_size: int
    num_layers: int = 1
    input_linear: bool = False  # a Linear(I -> I) before the LSTM
    log_softmax: bool = False  # a LogSoftmax over the head's outputs
    steps: int = 1000  # frames of a sequence workload

    def lstm_config(self) -> dict[str, Any]:
        """The configuration of the model's LSTM (also the bare LSTM it is timed against)."""
        return {
            "kind": "lstm",
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": False,
        }

    def flops_per_step(self) -> float:
        """The LSTM's FLOPs of one frame plus the linear layers' 2*in*out each."""
        linear = 2 * self.hidden_size * self.output_size
        if self.input_linear:
            linear += 2 * self.input_size * self.input_size
        return flops_per_step(self.lstm_config()) + linear

    def layers(self) -> str:
        """The model's layers, e.g. "Linear(64->64) -> LSTM(64, 64) -> Linear(64->10)"."""
        parts = [f"Linear({self.input_size}->{self.input_size})"] if self.input_linear else []
        layers = f", {self.num_layers} layers" if self.num_layers > 1 else ""
        parts.append(f"LSTM({self.input_size}, {self.hidden_size}{layers})")
        parts.append(f"Linear({self.hidden_size}->{self.output_size})")
        if self.log_softmax:
            parts.append("LogSoftmax")
        return " -> ".join(parts)

    def describe(self, steps: int | None = None) -> str:
        if self.mode == "stream":
            return f"{self.layers()}: one frame per call, batch 1"
        return f"{self.layers()}: whole sequence, B=1, T={steps or self.steps}"


# The weight types of pyrnn.quantize, and the bytes one weight takes in each (int8 adds a float32
# scale per output row).
WEIGHT_TYPES = ("fp32", "fp16", "bf16", "int8")
WEIGHT_SIZES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class QuantWorkload:
    """A fresh seeded 1-layer LSTM (I, H) timed with its weights in every type of
    pyrnn.quantize, batch 1, one thread.

    mode="sequence": lstm(x) over `steps` steps. mode="stream": s.step(x, out=y), one step per
    call from Python. peers=True (sequence only) adds the peers' own reduced-precision LSTMs
    with the same weights: torch's dynamic int8 LSTM, torch's LSTM in bfloat16 and ONNX
    Runtime's DynamicQuantizeLSTM."""

    category: ClassVar[str] = "quantized"

    name: str
    label: str  # a short name of the model for the table, e.g. "LSTM 1024"
    mode: Literal["sequence", "stream"]
    input_size: int
    hidden_size: int
    steps: int = 1000  # steps of a sequence workload
    peers: bool = False

    def config(self) -> dict[str, Any]:
        return {
            "kind": "lstm",
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": 1,
            "bidirectional": False,
        }

    def module(self, seed: int = 0) -> Module:
        """The float32 LSTM (quantise it for the other types)."""
        return LSTM(self.input_size, self.hidden_size, seed=seed)

    def step_weight_bytes(self, weights: str) -> int:
        """Bytes of the weights every step reads in type `weights`: W_hh alone over a sequence
        (the input projection is one GEMM over all steps), W_ih and W_hh on a stream step. int8
        counts a float32 scale per row of each matrix read."""
        rows, size = 4 * self.hidden_size, WEIGHT_SIZES[weights]
        columns = self.hidden_size + (self.input_size if self.mode == "stream" else 0)
        matrices = 1 if self.mode == "sequence" else 2
        scales = 4 * rows * matrices if weights == "int8" else 0
        return rows * columns * size + scales

    def describe(self, steps: int | None = None) -> str:
        shape = f"LSTM I={self.input_size} H={self.hidden_size}"
        if self.mode == "stream":
            return f"{shape}: s.step(x, out=y), one step per call, batch 1"
        return f"{shape}: whole sequence, B=1, T={steps or self.steps}"


@dataclass(frozen=True)
class PackedWorkload:
    """A batch of sequences of uneven lengths (uniform in [1, max_length], seeded) through one
    LSTM, 1 thread: run packed, run fully padded, and run packed by torch
    (benchmarks/harness/packed.py)."""

    category: ClassVar[str] = "packed"

    name: str
    input_size: int
    hidden_size: int
    batch: int
    max_length: int

    def config(self) -> dict[str, Any]:
        return {
            "kind": "lstm",
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": 1,
            "bidirectional": False,
        }

    def lengths(self, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(1, self.max_length + 1, self.batch)

    def describe(self) -> str:
        return (
            f"LSTM I={self.input_size} H={self.hidden_size}, {self.batch} sequences of lengths "
            f"uniform in [1, {self.max_length}], 1 thread"
        )


Workload = SequenceWorkload | StreamWorkload | ModelWorkload | QuantWorkload | PackedWorkload

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        SequenceWorkload("seq-lstm-256", "lstm", 256, 256, batch=1, steps=1000),
        SequenceWorkload("seq-gru-256", "gru", 256, 256, batch=1, steps=1000),
        SequenceWorkload("seq-lstm-1024", "lstm", 1024, 1024, batch=1, steps=200),
        SequenceWorkload("batch-lstm-256", "lstm", 256, 256, batch=64, steps=100),
        SequenceWorkload(
            "stack-bilstm", "lstm", 64, 128, batch=8, steps=500, num_layers=2, bidirectional=True
        ),
        StreamWorkload("stream-lstm-64", "LSTM 64", "lstm", 64, 64),
        StreamWorkload("stream-gru-64", "GRU 64", "gru", 64, 64),
        StreamWorkload("stream-lstm-1x32", "LSTM I=1 H=32", "lstm", 1, 32),
        StreamWorkload("stream-lstm-1024", "LSTM 1024", "lstm", 1024, 1024, batch=1),
        StreamWorkload("stream-overhead", "1-unit LSTM", "lstm", 1, 1, measure="overhead"),
        StreamWorkload("tiny-lstm-1x8", "LSTM I=1 H=8", "lstm", 1, 8, measure="tiny"),
        StreamWorkload("tiny-lstm-1x16", "LSTM I=1 H=16", "lstm", 1, 16, measure="tiny"),
        StreamWorkload("tiny-lstm-1x32", "LSTM I=1 H=32", "lstm", 1, 32, measure="tiny"),
        StreamWorkload("tiny-gru-1x32", "GRU I=1 H=32", "gru", 1, 32, measure="tiny"),
        StreamWorkload(
            "tiny-lstm-1x16x2", "LSTM I=1 H=16 x2", "lstm", 1, 16, measure="tiny", num_layers=2
        ),
        ModelWorkload(
            "model-stream-head",
            "head LSTM 64",
            "stream",
            64,
            64,
            10,
            input_linear=True,
            log_softmax=True,
        ),
        ModelWorkload("model-seq-head", "LSTM 256 x2 + head", "sequence", 256, 256, 32, 2),
        PackedWorkload("packed-lstm", 64, 128, batch=64, max_length=1000),
        QuantWorkload("quant-seq-lstm-1024", "LSTM 1024", "sequence", 1024, 1024, steps=200),
        QuantWorkload("quant-stream-lstm-512", "LSTM 512", "stream", 512, 512),
        QuantWorkload("quant-peers-lstm-512", "LSTM 512", "sequence", 512, 512, peers=True),
    )
}
