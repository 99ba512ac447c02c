"""What a module is: its kind and constructor arguments, and the PyTorch parameter names and
shapes that follow from them. The one place that knows torch.nn's key naming."""

from __future__ import annotations

import functools
import numbers
import operator
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ._weights import check_weight_dtype

SEQUENCE_KINDS = ("rnn", "lstm", "gru")
CELL_KINDS = ("rnn_cell", "lstm_cell", "gru_cell")
KINDS = SEQUENCE_KINDS + CELL_KINDS
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_NONLINEARITIES = ("tanh", "relu")
# The C++ core indexes with int: every size and derived width must fit in 32 bits.
_INT32_MAX = 2**31 - 1
_UNIT_BLOCK = 16  # kUnitBlock in cpp/core/dims.h: hidden units are padded to multiples of it


# -- memory model ------------------------------------------------------------------------------
# Upper bounds, in bytes, of what building and running a module allocates, computed from the
# sizes alone (Python ints, no per-layer loop). The overheads below were measured on CPython
# 3.11 with numpy 2 and glibc, then rounded up; tests/test_memory.py holds the whole estimate
# against the peak resident memory of real modules.
_MALLOC_HEADER = 16  # glibc: a block is its size plus a 16-byte header, in 16-byte steps
_MMAP_THRESHOLD = 128 * 1024  # from this size on a block may be whole 4 KiB pages of its own
_PAGE = 4096
# AlignedBuffer: aligned_alloc(64, n) asks malloc for n + 64 + 32 bytes to align within, and the
# slack it gives back often fits nothing else.
_ALIGNMENT = 64
_ALIGNED_SLACK = 64 + 32
# Per weight tensor besides its data: the numpy array object and its shape/strides block
# (~150), its key string (~80) in the parameters dict (a slot, up to ~100 after a resize), and
# the transient copies of both while a module is made: parameter_groups' (key, shape) pairs
# when built, the header's per-tensor dict and lists and several key -> key maps when loaded.
_TENSOR_OVERHEAD = 1536
# Per (layer, direction): the C++ PackedLayer (128), the bindings' weight tuple (64) and raw
# pointers (40), the Python 5-tuple handed over (~100).
_LAYER_OVERHEAD = 512
# Per (layer, direction) of a forward or stream: the C++ LayerState object (88).
_STATE_OVERHEAD = 192
# Per allocation of f floats: at most 33/32 * 4f bytes + _ALLOCATION_SLACK, whatever its size
# (64-byte rounding and aligning, the header, and 4 KiB page rounding from 128 KiB on).
_FLOAT_BOUND_NUMERATOR, _FLOAT_BOUND_DENOMINATOR = 33, 8
_ALLOCATION_SLACK = 256
# Per module, forward or stream: a fresh 64 KiB pool of Python objects or heap growth (measured
# up to 66 KiB for RNN(1, 1)), array objects, the Workspace object and its vectors.
_FIXED_OVERHEAD = 256 * 1024


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _malloc(nbytes: int) -> int:
    """What one malloc of `nbytes` can take from the system."""
    if nbytes <= 0:
        return 0
    return _round_up(nbytes + _MALLOC_HEADER, _PAGE if nbytes >= _MMAP_THRESHOLD else 16)


def _aligned(floats: int) -> int:
    """What one AlignedBuffer of `floats` floats can take from the system."""
    if floats <= 0:
        return 0
    return _malloc(_round_up(4 * floats, _ALIGNMENT) + _ALIGNED_SLACK)


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


@functools.cache
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
    # How the weight matrices are stored (pyrnn.quantize): 'fp32', 'fp16', 'bf16' or 'int8'.
    weight_dtype: str = "fp32"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")
        check_weight_dtype(self.weight_dtype, "weight_dtype")
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
        memory = physical_memory_bytes()
        needed, entries = self.module_bytes, self.num_layers * self.directions
        if memory is not None and needed > memory:
            raise ValueError(
                f"{self.kind}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"num_layers={self.num_layers}, ...): its {self.parameter_count} weights in "
                f"{entries} (layer, direction) entries need about {_gib(needed)} to build and "
                f"run ({needed // entries} bytes per entry), more than this machine's physical "
                f"memory ({_gib(memory)}); nothing was allocated. Use fewer layers or smaller "
                "sizes."
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
    def core_network(self) -> tuple[str, int, int, int, bool, int]:
        """The C++ core's description of the network: (kind, input_size, hidden_size,
        num_layers, bidirectional, proj_size), as its Network builder and oracle take them."""
        return (
            self.core_kind,
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bidirectional,
            self.proj_size,
        )

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

    # -- memory -------------------------------------------------------------------------------
    def _tensor_classes(self) -> list[tuple[int, int]]:
        """(count, elements) of every kind of weight tensor, by formula."""
        gh, out, dirs, layers = (
            self.gates * self.hidden_size,
            self.output_size,
            self.directions,
            self.num_layers,
        )
        classes = [
            (dirs, gh * self.input_size),  # w_ih of layer 0
            ((layers - 1) * dirs, gh * out * dirs),  # w_ih of the layers above
            (layers * dirs, gh * out),  # w_hh
        ]
        if self.bias:
            classes.append((2 * layers * dirs, gh))  # b_ih, b_hh
        if self.proj_size:
            classes.append((layers * dirs, self.proj_size * self.hidden_size))  # w_hr
        return classes

    @functools.cached_property
    def module_bytes(self) -> int:
        """Upper bound of the memory that making this module takes -- by random init, from a
        file or by unpickling -- plus the per-layer state of one unbatched forward or stream:
        the packed C++ panels (the one copy of the matrices), the source weights where they
        all exist at once (an unpickled state), one tensor in flight while it is packed, and
        the bookkeeping of every tensor and (layer, direction)."""
        gates, hidden, entries = self.gates, self.hidden_size, self.num_layers * self.directions
        padded_h = _round_up(hidden, _UNIT_BLOCK)
        padded_out = _round_up(self.output_size, _UNIT_BLOCK)
        classes = self._tensor_classes()
        largest = max(elements for _, elements in classes)
        # Float32 numpy arrays of every weight: the biases a module keeps, and all the
        # matrices while an unpickled state is packed (random init and files bring one at a
        # time). In flight while one tensor is packed: random init's float64 draw and its
        # float32 copy, or a file's tensor and a float32 conversion of it.
        numpy_bytes = sum(count * _malloc(4 * elements) for count, elements in classes)
        source_bytes = _malloc(8 * largest) + 2 * _malloc(4 * largest)
        # The packed panels (packed_panels.cpp): each gate matrix padded to blocks of 16 hidden
        # units, K rows each; the folded biases in the same column order.
        gate_width = gates * padded_h
        upper_inputs = self.output_size * self.directions
        packed = self.directions * _aligned(self.input_size * gate_width)
        packed += (self.num_layers - 1) * self.directions * _aligned(upper_inputs * gate_width)
        packed += entries * (_aligned(self.output_size * gate_width) + _aligned(gate_width))
        if self.base_kind == "gru":  # b_hn apart, and the folded bias built on the way
            packed += entries * _aligned(padded_h) + _malloc(4 * gates * hidden)
        if self.proj_size:
            packed += entries * _aligned(hidden * padded_out)
        bookkeeping = self.parameter_key_count * _TENSOR_OVERHEAD + entries * _LAYER_OVERHEAD
        # The state of one row (LayerState in sequence.cpp): h twice, and c for LSTM.
        state = 2 * _aligned(padded_out) + _STATE_OVERHEAD
        if self.base_kind == "lstm":
            state += _aligned(padded_h)
        return numpy_bytes + source_bytes + packed + bookkeeping + entries * state + _FIXED_OVERHEAD

    @functools.cached_property
    def _run_terms(self) -> tuple[int, int, int, int, int]:
        """The terms of run_bytes: fixed bytes, fixed floats, floats per row, more floats per
        row of a forward, floats per row and step of a forward.

        What a forward or a stream allocates, in floats (C++: sequence.cpp, forward()):
        per (layer, direction) a LayerState (h twice and LSTM's c, each padded to 16 units);
        a Workspace of chunk_rows rows (input rows, projected gates, two layer outputs for
        stacked unidirectional networks) and the LSTM-P cell output; the whole sequence between
        the layers of a bidirectional stack. Python: out, a float32 copy of the input, hn and cn
        and float32 copies of h0 and c0. chunk_rows <= rows + 127 (default_chunk_steps aims at
        128 GEMM rows), which keeps the whole bound linear in rows and steps."""
        padded_h = _round_up(self.hidden_size, _UNIT_BLOCK)
        padded_out = _round_up(self.output_size, _UNIT_BLOCK)
        entries = self.num_layers * self.directions
        lstm = self.base_kind == "lstm"
        features = self.output_size * self.directions
        chunk_row = max(self.input_size, features) + self.gates * padded_h
        if self.num_layers > 1 and not self.bidirectional:
            chunk_row += 2 * features
        per_row = chunk_row + entries * (2 * padded_out + (padded_h if lstm else 0))
        per_row += padded_h if self.proj_size else 0
        per_forward_row = 2 * entries * (self.output_size + (self.hidden_size if lstm else 0))
        between = 0
        if self.bidirectional and self.num_layers > 1:
            between = 1 if self.num_layers == 2 else 2
        per_row_step = features + self.input_size + between * features
        allocations = entries * 3 + 12
        fixed = allocations * _ALLOCATION_SLACK + entries * _STATE_OVERHEAD + _FIXED_OVERHEAD
        return fixed, 127 * chunk_row, per_row, per_forward_row, per_row_step

    def run_bytes(self, rows: int, steps: int | None) -> int:
        """Upper bound of what a forward over `steps` steps of `rows` rows allocates besides the
        module (outputs, state, scratch, float32 copies of the inputs), or with steps=None what
        a stream of `rows` rows allocates when made. Linear in rows and steps, so cheap enough
        to check on every call."""
        fixed, fixed_floats, per_row, per_forward_row, per_row_step = self._run_terms
        floats = fixed_floats + rows * per_row
        if steps is not None:
            floats += rows * (per_forward_row + steps * per_row_step)
        return fixed + _FLOAT_BOUND_NUMERATOR * floats // _FLOAT_BOUND_DENOMINATOR

    def check_run(self, rows: int, steps: int | None, name: str) -> None:
        """Refuses, naming the argument `name`, a forward or stream that with the module would
        need more than this machine's physical memory, before anything is allocated."""
        memory = physical_memory_bytes()
        if memory is None:
            return
        run = self.run_bytes(rows, steps)
        if run + self.module_bytes <= memory:
            return
        what, parts, hint = f"a stream of batch={rows}", "state and scratch", "a smaller batch"
        if steps is not None:
            what, parts = f"a forward of (T={steps}, N={rows})", "outputs, state and scratch"
            hint = "fewer rows or steps per call (a stream carries the state between calls)"
        raise ValueError(
            f"{name}: {what} needs about {_gib(run)} ({parts}) besides the module's "
            f"{_gib(self.module_bytes)}, more than this machine's physical memory "
            f"({_gib(memory)}); nothing was allocated. Use {hint}."
        )

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

    def matrix_keys(self) -> list[str]:
        """The keys of the weight matrices (W_ih, W_hh, W_hr): what a weight type narrows;
        biases stay float32."""
        return [
            key
            for group in self.parameter_groups()
            for role, (key, _) in group.items()
            if role.startswith("w_")
        ]

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
        if self.weight_dtype != "fp32":  # absent means fp32: fp32 configs are as they were
            keep.add("weight_dtype")
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
