"""What a module is: its kind and constructor arguments, and the PyTorch parameter names and
shapes that follow from them. The one place that knows torch.nn's key naming."""

from __future__ import annotations

import numbers
import operator
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

SEQUENCE_KINDS = ("rnn", "lstm", "gru")
CELL_KINDS = ("rnn_cell", "lstm_cell", "gru_cell")
KINDS = SEQUENCE_KINDS + CELL_KINDS
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_NONLINEARITIES = ("tanh", "relu")
# The C++ core indexes with int: every size and derived width must fit in 32 bits.
_INT32_MAX = 2**31 - 1
_UNIT_BLOCK = 16  # kUnitBlock in cpp/core/dims.h: hidden units are padded to multiples of it


def physical_memory_bytes() -> int | None:
    """This machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _require_int(name: str, value: Any, minimum: int) -> int:
    # operator.index accepts int and numpy integers but rejects floats; bool is refused too.
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {number}")
    return number


def _require_bool(name: str, value: Any) -> bool:
    # numpy.bool_ (a flag read from an array or a .npz config) is not a Python bool subclass.
    if isinstance(value, bool | np.bool_) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")


def _require_fraction(name: str, value: Any) -> float:
    # Any real number (numpy.float32 included, as torch takes) but not a bool.
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float in [0, 1], got {value!r}")
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name}: expected a float in [0, 1], got {value}")
    return number


@dataclass(frozen=True)
class Spec:
    """Constructor arguments of one module, validated. Cells use only the fields they accept."""

    kind: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    nonlinearity: str = "tanh"
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        set_ = object.__setattr__
        set_(self, "input_size", _require_int("input_size", self.input_size, 1))
        set_(self, "hidden_size", _require_int("hidden_size", self.hidden_size, 1))
        set_(self, "num_layers", _require_int("num_layers", self.num_layers, 1))
        set_(self, "proj_size", _require_int("proj_size", self.proj_size, 0))
        for name in ("bias", "batch_first", "bidirectional"):
            set_(self, name, _require_bool(name, getattr(self, name)))
        if self.nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {self.nonlinearity!r}")
        if self.base_kind != "rnn" and self.nonlinearity != "tanh":
            raise ValueError(f"nonlinearity: only RNN and RNNCell take it, not {self.kind}")
        set_(self, "dropout", _require_fraction("dropout", self.dropout))
        if self.proj_size and self.kind != "lstm":
            raise ValueError(f"proj_size: only LSTM supports a projection, not {self.kind}")
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size: expected 0 or less than hidden_size={self.hidden_size}, "
                f"got {self.proj_size}"
            )
        if self.is_cell and (
            self.num_layers != 1 or self.batch_first or self.bidirectional or self.dropout
        ):
            raise ValueError(
                f"{self.kind} takes no num_layers, batch_first, dropout or bidirectional"
            )
        self._check_resources()

    def _check_resources(self) -> None:
        # Computed with Python ints from the sizes alone, before anything is allocated (and
        # without enumerating layers, so num_layers=10**12 is refused at once).
        padded_h = -(-self.hidden_size // _UNIT_BLOCK) * _UNIT_BLOCK
        widths = {
            "input_size": self.input_size,
            "gates * padded hidden_size": self.gates * padded_h,
            "directions * padded output size": self.directions
            * (-(-self.output_size // _UNIT_BLOCK) * _UNIT_BLOCK),
            "num_layers * directions": self.num_layers * self.directions,
        }
        for name, value in widths.items():
            if value > _INT32_MAX:
                raise ValueError(
                    f"{self.kind}: {name} = {value} exceeds the core's limit of 2**31-1; "
                    "use smaller sizes"
                )
        # float32 weights + their packed float32 copy, plus ~1 KiB of bookkeeping per (layer,
        # direction): array objects, dict entries, padded C++ buffers (which matters when
        # num_layers is huge and sizes tiny).
        needed = 8 * self.parameter_count + 1024 * self.num_layers * self.directions
        memory = physical_memory_bytes()
        if memory is not None and needed > memory:
            raise ValueError(
                f"{self.kind}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"num_layers={self.num_layers}, ...): its {self.parameter_count} weights need "
                f"about {needed / 2**30:.1f} GiB, more than this machine's physical memory "
                f"({memory / 2**30:.1f} GiB); nothing was allocated"
            )

    # -- derived facts ------------------------------------------------------------------------
    @property
    def is_cell(self) -> bool:
        return self.kind in CELL_KINDS

    @property
    def base_kind(self) -> str:
        """'rnn', 'lstm' or 'gru', for sequences and cells alike."""
        return self.kind.removesuffix("_cell")

    @property
    def core_kind(self) -> str:
        """The C++ core's cell kind: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'."""
        if self.base_kind == "rnn":
            return f"rnn_{self.nonlinearity}"
        return self.base_kind

    @property
    def gates(self) -> int:
        return _GATES[self.base_kind]

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of h: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def parameter_count(self) -> int:
        """Weights and biases in total, by formula (no per-layer loop)."""
        gh, out, dirs = self.gates * self.hidden_size, self.output_size, self.directions
        per_direction = gh * out + (2 * gh if self.bias else 0)
        per_direction += self.proj_size * self.hidden_size
        first = gh * self.input_size
        rest = gh * out * dirs * (self.num_layers - 1)
        return dirs * (first + self.num_layers * per_direction) + dirs * rest

    @property
    def parameter_key_count(self) -> int:
        """How many tensors parameter_shapes() lists, by formula (no per-layer loop)."""
        per_direction = 2 + (2 if self.bias else 0) + (1 if self.proj_size else 0)
        return self.num_layers * self.directions * per_direction

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.output_size * self.directions

    # -- parameters ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, tuple[str, tuple[int, ...]]]]:
        """Per (layer, direction), layer-major: role -> (PyTorch key, shape). Roles are w_ih,
        w_hh, b_ih, b_hh, w_hr; absent roles (no bias, no projection) are left out."""
        gh = self.gates * self.hidden_size
        groups = []
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                if self.is_cell:
                    suffix = ""
                else:
                    suffix = f"_l{layer}" + ("_reverse" if direction else "")
                group: dict[str, tuple[str, tuple[int, ...]]] = {
                    "w_ih": (f"weight_ih{suffix}", (gh, self.layer_input_size(layer))),
                    "w_hh": (f"weight_hh{suffix}", (gh, self.output_size)),
                }
                if self.bias:
                    group["b_ih"] = (f"bias_ih{suffix}", (gh,))
                    group["b_hh"] = (f"bias_hh{suffix}", (gh,))
                if self.proj_size:
                    group["w_hr"] = (f"weight_hr{suffix}", (self.proj_size, self.hidden_size))
                groups.append(group)
        return groups

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """PyTorch key -> shape, in torch.nn's order."""
        return {key: shape for group in self.parameter_groups() for key, shape in group.values()}

    # -- serialisation ------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """The constructor arguments this kind accepts, plus 'kind' (the file format's config)."""
        config = asdict(self)
        keep = {"kind", "input_size", "hidden_size", "bias"}
        if self.base_kind == "rnn":
            keep.add("nonlinearity")
        if not self.is_cell:
            keep |= {"num_layers", "batch_first", "dropout", "bidirectional"}
        if self.kind == "lstm":
            keep.add("proj_size")
        return {key: value for key, value in config.items() if key in keep}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Spec:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}; expected some of {sorted(known)}")
        missing = [name for name in ("kind", "input_size", "hidden_size") if name not in config]
        if missing:
            raise ValueError(f"config: missing required fields {missing}")
        return cls(**config)
