"""pyrnn's file format: a .safetensors file with the weights under PyTorch's key names and, in
the header metadata, {"format": "pyrnn", "version": "1", "config": <JSON constructor args>}.
Plain PyTorch state_dicts saved by safetensors, or by torch.save as .pt/.pth, load too, by kind
and key prefix. torch is imported only for .pt/.pth files, which are read only through
torch.load(weights_only=True): no loader ever runs arbitrary unpickling.

What is refused, always with FormatError naming the file and the problem: anything that is not a
well-formed safetensors file (bad header length, header not a UTF-8 JSON object, duplicate JSON
keys, NaN/Infinity literals, unknown fields in a tensor entry, offsets reversed / overlapping /
leaving gaps / past the end, a byte count that does not match the shape), tensors whose dtype is
not F16/F32/F64 (BF16, integers and BOOL are refused: numpy has no bfloat16, and integer weights
would only load by guessing a scale; convert to float32 first), and metadata or shapes that do not
describe a valid module. Errors of the operating system about the path itself (no such file, a
directory, no permission) propagate unchanged as OSError subclasses (FileNotFoundError,
IsADirectoryError, PermissionError): they are not about the file's content."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import struct
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ._base import Module
from ._spec import KINDS, Spec

__all__ = ["FormatError", "load", "save"]

FORMAT_NAME = "pyrnn"
FORMAT_VERSION = "1"
# A header larger than this is refused before reading it (safetensors itself caps at 100 MB).
MAX_HEADER_BYTES = 100_000_000
_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
_ENTRY_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_INT64_MAX = 2**63 - 1
# Files read with torch.load(weights_only=True) rather than as safetensors.
TORCH_SUFFIXES = (".pt", ".pth")


class FormatError(ValueError):
    """A file is not a model pyrnn can load; the message names the file and the problem."""


def save(module: Module, path: str | os.PathLike[str]) -> None:
    """Writes `module` to `path` atomically: the file appears complete or not at all."""
    if not isinstance(module, Module):
        raise TypeError(f"module: expected a pyrnn module, got {type(module).__name__}")
    from safetensors.numpy import save as serialize

    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "config": json.dumps(module.config, sort_keys=True),
    }
    payload = serialize(module.state_dict(), metadata=metadata)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp: its files are mode 0600, and the rename would keep that. Mode 0666
    # filtered by the umask gives the permissions open() and torch.save give (0644 usually).
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load(
    path: str | os.PathLike[str],
    kind: str | None = None,
    prefix: str = "",
    *,
    nonlinearity: str = "tanh",
    batch_first: bool = False,
) -> Module:
    """Loads a module from a pyrnn file, or from a plain PyTorch state_dict saved with
    safetensors: then `kind` ('rnn', 'lstm', 'gru', 'rnn_cell', 'lstm_cell', 'gru_cell') says
    what it is, `prefix` selects its keys (e.g. 'encoder.rnn.'), and sizes, layers,
    bidirectionality and proj_size are inferred from the shapes. `nonlinearity` and
    `batch_first` cannot be inferred from weights and are taken as given."""
    path = os.fspath(path)
    if path.lower().endswith(TORCH_SUFFIXES):
        tensors = _read_torch(path)
        metadata: dict[str, str] = {}
        shapes = {key: array.shape for key, array in tensors.items()}
    else:
        header = read_header(path)
        metadata = header.pop("__metadata__", {})
        shapes = {key: tuple(entry["shape"]) for key, entry in header.items()}
        del header  # its per-tensor dicts are not needed while the weights are packed
        tensors = None
    if metadata.get("format") == FORMAT_NAME:
        spec = _spec_from_metadata(path, metadata)
        rename = {key: key for key in shapes}
    else:
        if kind is None:
            raise FormatError(
                f"{path}: no pyrnn metadata (format={metadata.get('format')!r}); to load a plain "
                "PyTorch state_dict pass kind='lstm' (or rnn, gru, *_cell) and prefix='...'"
            )
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        rename = {key[len(prefix) :]: key for key in shapes if key.startswith(prefix)}
        if not rename:
            raise FormatError(
                f"{path}: no tensor key starts with prefix {prefix!r}; keys begin "
                f"{sorted(shapes)[:5]}"
            )
        spec = _infer_spec(
            path,
            kind,
            {short: shapes[full] for short, full in rename.items()},
            nonlinearity=nonlinearity,
            batch_first=batch_first,
        )
    _check_shapes(path, spec, {short: shapes[full] for short, full in rename.items()})
    del shapes
    if tensors is not None:
        return _module(path, spec, {short: tensors[full] for short, full in rename.items()})
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as file:
            return _module(path, spec, _FileTensors(file, rename))
    except (SafetensorError, OSError) as error:
        raise FormatError(f"{path}: cannot read tensors ({error})") from None


def _module(path: str, spec: Spec, state_dict: Mapping[str, Any]) -> Module:
    try:
        return Module._from_state_dict(spec, state_dict)
    except FormatError:
        raise
    except ValueError as error:
        raise FormatError(f"{path}: {error}") from None


class _FileTensors(Mapping[str, np.ndarray]):
    """The tensors of an open safetensors file by module key, each read when asked for: the
    module copies one tensor at a time, so a file's weights are never all held twice."""

    def __init__(self, file: Any, rename: dict[str, str]) -> None:
        self._file = file
        self._rename = rename  # module key -> key in the file

    def __getitem__(self, key: str) -> np.ndarray:
        array: np.ndarray = self._file.get_tensor(self._rename[key])
        return array

    def __contains__(self, key: object) -> bool:
        return key in self._rename

    def __iter__(self) -> Iterator[str]:
        return iter(self._rename)

    def __len__(self) -> int:
        return len(self._rename)


# -- reading ---------------------------------------------------------------------------------
def read_header(path: str) -> dict[str, Any]:
    """The validated JSON header of a safetensors file. Every offset and size is checked against
    the real file size before any tensor is read, so a lying header cannot cause a huge read."""
    with open(path, "rb") as file:  # OSError about the path itself propagates (see the top)
        size = os.fstat(file.fileno()).st_size
        try:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise FormatError(f"{path}: {size} bytes is too short for a safetensors header")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise FormatError(
                    f"{path}: header length {length} exceeds the file ({size} bytes) "
                    f"or the {MAX_HEADER_BYTES}-byte limit: not a safetensors file or truncated"
                )
            raw = file.read(length)
        except OSError as error:
            raise FormatError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(raw) != length:
        raise FormatError(f"{path}: file shrank while reading the header")
    try:
        header = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_unique_object,
            parse_constant=_refuse_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, _JsonRefused, RecursionError) as error:
        raise FormatError(f"{path}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    data_size = size - 8 - length
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
            ):
                raise FormatError(f"{path}: __metadata__ must map strings to strings")
            continue
        spans.append((*_check_entry(path, key, entry, data_size), key))
    # The tensors must tile the data section exactly, as the safetensors format requires:
    # sorted by offset, each starts where the previous ends, the last ends at the end of file.
    spans.sort()
    position, previous = 0, None
    for begin, end, key in spans:
        if begin < position:
            raise FormatError(f"{path}: tensors {previous!r} and {key!r} overlap")
        if begin > position:
            raise FormatError(
                f"{path}: {begin - position} bytes before tensor {key!r} belong to no tensor "
                f"(data_offsets must be contiguous)"
            )
        position, previous = end, key
    if position != data_size:
        raise FormatError(
            f"{path}: the data section has {data_size} bytes but the tensors cover {position} "
            "(trailing bytes belong to no tensor)"
        )
    return header


class _JsonRefused(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of duplicate keys; two readers could then disagree on
    # what a file holds, so duplicates are refused.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonRefused(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise _JsonRefused(f"{name} is not JSON")


def _check_entry(path: str, key: str, entry: Any, data_size: int) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise FormatError(f"{path}: tensor {key!r}: expected an object, got {entry!r:.80}")
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    missing = sorted(_ENTRY_FIELDS - set(entry))
    if unknown or missing:
        raise FormatError(
            f"{path}: tensor {key!r}: expected fields {sorted(_ENTRY_FIELDS)}, "
            f"missing {missing}, unknown {unknown}"
        )
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise FormatError(
            f"{path}: tensor {key!r}: dtype must be one of {sorted(_DTYPES)}, got {dtype!r:.40} "
            "(convert the weights to float32 first)"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise FormatError(
            f"{path}: tensor {key!r}: shape must be a list of non-negative ints, got {shape!r:.80}"
        )
    nonzero = int(np.prod([d for d in shape if d], dtype=object))  # exact: Python ints
    if nonzero > _INT64_MAX:
        raise FormatError(
            f"{path}: tensor {key!r}: shape {shape!r:.80} has more than 2**63-1 elements"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise FormatError(
            f"{path}: tensor {key!r}: data_offsets must be two ints [begin, end], "
            f"got {offsets!r:.80}"
        )
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise FormatError(
            f"{path}: tensor {key!r}: data_offsets {offsets!r:.80} outside the "
            f"{data_size}-byte data section (reversed, or past the end: truncated file?)"
        )
    # Exact, no overflow. (mypy joins the three dtypes of _DTYPES to object, hence the ignore.)
    expected = int(np.prod(shape, dtype=object)) * _DTYPES[dtype].itemsize  # type: ignore[attr-defined]
    if expected != end - begin:
        raise FormatError(
            f"{path}: tensor {key!r}: shape {shape!r:.80} of {dtype} needs {expected} bytes, "
            f"data_offsets give {end - begin}"
        )
    return begin, end


_TORCH_DTYPES = ("torch.float16", "torch.float32", "torch.float64")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_torch(path: str) -> dict[str, np.ndarray]:
    """A flat state_dict saved by torch.save, read with torch.load(weights_only=True), whose
    restricted unpickler refuses anything but tensors and plain containers: a pickle that would
    run code is refused, not executed."""
    with open(path, "rb"):  # OSError about the path itself propagates, as for safetensors
        pass
    import pickle

    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{path}: reading .pt/.pth files needs torch (pip install torch), or save the "
            "state_dict with safetensors instead"
        ) from None

    try:
        with warnings.catch_warnings():
            # e.g. "pickle protocol 5 ... might not support": the load either works or fails.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as error:
        # torch's text is long advice on loading unsafely; keep the line naming what was found.
        lines = [line for line in str(error).splitlines() if "Unsupported" in line]
        found = _ANSI.sub("", (lines or [str(error)])[0]).strip()
        raise FormatError(
            f"{path}: refused by torch.load(weights_only=True): the pickle holds more than "
            f"tensors, which pyrnn never unpickles ({found:.300})"
        ) from None
    except Exception as error:
        # RuntimeError: not a torch zip archive; EOFError: truncated; others on corrupt records.
        message = _ANSI.sub("", str(error).split(". ")[0].strip()) or type(error).__name__
        raise FormatError(
            f"{path}: cannot read as a torch file ({type(error).__name__}: {message:.300})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise FormatError(
            f"{path}: expected a flat state_dict (str -> tensor), got {type(state).__name__}"
        )
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise FormatError(
                f"{path}: {key!r}: expected a tensor, got {type(value).__name__} (pass the "
                "module's state_dict(), not a checkpoint holding it)"
            )
        if str(value.dtype) not in _TORCH_DTYPES:
            raise FormatError(
                f"{path}: tensor {key!r}: dtype must be float16, float32 or float64, got "
                f"{value.dtype} (convert the weights to float32 first)"
            )
        arrays[key] = value.detach().cpu().contiguous().numpy()
    return arrays


def _check_shapes(path: str, spec: Spec, shapes: dict[str, tuple[int, ...]]) -> None:
    """Every expected key is present with its exact shape and nothing else is there, checked
    from the header alone so a lying config fails before any tensor is read."""
    # Counted first: a config claiming 10**8 layers must not make us list 10**8 expected keys.
    if spec.parameter_key_count > len(shapes) + 64:
        raise FormatError(
            f"{path}: {spec.kind} with config {spec.to_config()} has "
            f"{spec.parameter_key_count} tensors, the file only {len(shapes)}"
        )
    expected = spec.parameter_shapes()
    missing = [key for key in expected if key not in shapes]
    unexpected = [key for key in shapes if key not in expected]
    if missing or unexpected:
        raise FormatError(
            f"{path}: tensors do not match {spec.kind}: missing {missing}, "
            f"unexpected {unexpected[:8]}"
        )
    for key, shape in expected.items():
        if tuple(shapes[key]) != shape:
            raise FormatError(
                f"{path}: tensor {key!r} has shape {tuple(shapes[key])!r:.80}, "
                f"{spec.kind} with config {spec.to_config()} needs {shape}"
            )


# -- what the file holds ---------------------------------------------------------------------
def _spec_from_metadata(path: str, metadata: dict[str, str]) -> Spec:
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{path}: pyrnn format version {version!r} is not supported (expected "
            f"{FORMAT_VERSION!r}); upgrade pyrnn"
        )
    if "config" not in metadata:
        raise FormatError(f"{path}: pyrnn metadata lacks 'config'")
    try:
        config = json.loads(
            metadata["config"], object_pairs_hook=_unique_object, parse_constant=_refuse_constant
        )
    except (json.JSONDecodeError, _JsonRefused, RecursionError) as error:
        raise FormatError(f"{path}: metadata 'config' is not JSON ({error})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: metadata 'config' must be a JSON object, got {config!r:.80}")
    try:
        return Spec.from_config(config)
    except (TypeError, ValueError) as error:
        raise FormatError(f"{path}: invalid config: {error}") from None


# At most 9 digits: int() of a longer digit string is refused by Python (or absurd anyway).
_LAYER_KEY = re.compile(r"weight_ih_l([0-9]{1,9})(_reverse)?$")


def _infer_spec(path: str, kind: str, shapes: dict[str, tuple[int, ...]], **fixed: Any) -> Spec:
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind.removesuffix("_cell")]
    is_cell = kind.endswith("_cell")
    first = "weight_ih" if is_cell else "weight_ih_l0"
    if first not in shapes:
        raise FormatError(f"{path}: no {first!r} under the prefix; found {sorted(shapes)[:8]}")
    w_ih = shapes[first]
    if len(w_ih) != 2 or w_ih[0] % gates or w_ih[0] == 0:
        raise FormatError(
            f"{path}: {first!r} has shape {w_ih}; a {kind} needs ({gates}*hidden_size, input_size)"
        )
    args: dict[str, Any] = {
        "kind": kind,
        "input_size": w_ih[1],
        "hidden_size": w_ih[0] // gates,
        "bias": ("bias_ih" if is_cell else "bias_ih_l0") in shapes,
    }
    if kind.startswith("rnn"):
        args["nonlinearity"] = fixed["nonlinearity"]
    if not is_cell:
        layers = [_LAYER_KEY.match(key) for key in shapes]
        args["num_layers"] = 1 + max(int(m.group(1)) for m in layers if m)
        args["bidirectional"] = any(m.group(2) for m in layers if m)
        args["batch_first"] = fixed["batch_first"]
        if kind == "lstm" and "weight_hr_l0" in shapes:
            w_hr = shapes["weight_hr_l0"]
            if len(w_hr) != 2:
                raise FormatError(
                    f"{path}: 'weight_hr_l0' has shape {w_hr}; expected (proj, hidden)"
                )
            args["proj_size"] = w_hr[0]
    try:
        return Spec.from_config(args)
    except (TypeError, ValueError) as error:
        raise FormatError(f"{path}: inferred an invalid {kind}: {error}") from None
