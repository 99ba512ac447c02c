"""What the comparison times, and the arithmetic that turns a time into GFLOP/s and a bound.

Workloads are registered by category: "sequence" (whole-sequence forward, this file) now; the
streaming workloads of the streaming issue (per-step latency of LSTM/GRU 64 and an audio-sized
LSTM 1->32, step with and without out=) are to be added as another dataclass with category
"stream" plus a runner registered in runner.RUNNERS, without touching the sequence ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._base import Module
from .._spec import Spec
from ..modules import GRU, LSTM, RNN

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


WORKLOADS: dict[str, SequenceWorkload] = {
    w.name: w
    for w in (
        SequenceWorkload("seq-lstm-256", "lstm", 256, 256, batch=1, steps=1000),
        SequenceWorkload("seq-gru-256", "gru", 256, 256, batch=1, steps=1000),
        SequenceWorkload("seq-lstm-1024", "lstm", 1024, 1024, batch=1, steps=200),
        SequenceWorkload("batch-lstm-256", "lstm", 256, 256, batch=64, steps=100),
        SequenceWorkload(
            "stack-bilstm", "lstm", 64, 128, batch=8, steps=500, num_layers=2, bidirectional=True
        ),
    )
}


def _spec(config: dict[str, Any]) -> Spec:
    return Spec.from_config(config)


def flops_per_step(config: dict[str, Any], rows: int = 1) -> float:
    """FLOPs of one time step over `rows` batch rows: per layer and direction 2*G*H*(I_l + P)
    for the input and recurrent matmuls, plus 2*P*H for an LSTM projection. Activations and the
    elementwise gate update are left out (they are O(G*H), not O(G*H*(I+H)))."""
    spec = _spec(config)
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
    direction, float32): the input projection can be done for all steps at once, these cannot."""
    spec = _spec(config)
    per_direction = spec.gates * spec.hidden_size * spec.output_size
    if spec.proj_size:
        per_direction += spec.proj_size * spec.hidden_size
    return 4 * per_direction * spec.directions * spec.num_layers
