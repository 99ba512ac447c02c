"""pyrnn's file format: a .safetensors file with the weights under PyTorch's key names and, in
the header metadata, {"format": "pyrnn", "version": "1", "config": <JSON constructor args>}.
Plain PyTorch state_dicts saved by safetensors load too, by kind and key prefix. Neither torch
nor onnx is imported here, and no loader ever unpickles."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import secrets
import struct
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
    header = read_header(path)
    metadata = header.pop("__metadata__", {})
    if metadata.get("format") == FORMAT_NAME:
        spec = _spec_from_metadata(path, metadata)
        keys = list(header)
        rename = {key: key for key in keys}
    else:
        if kind is None:
            raise FormatError(
                f"{path}: no pyrnn metadata (format={metadata.get('format')!r}); to load a plain "
                "PyTorch state_dict pass kind='lstm' (or rnn, gru, *_cell) and prefix='...'"
            )
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        rename = {key[len(prefix) :]: key for key in header if key.startswith(prefix)}
        if not rename:
            raise FormatError(
                f"{path}: no tensor key starts with prefix {prefix!r}; keys begin "
                f"{sorted(header)[:5]}"
            )
        shapes = {short: tuple(header[full]["shape"]) for short, full in rename.items()}
        spec = _infer_spec(path, kind, shapes, nonlinearity=nonlinearity, batch_first=batch_first)
    tensors = _read_tensors(path, list(rename.values()))
    try:
        return Module._from_state_dict(
            spec, {short: tensors[full] for short, full in rename.items()}
        )
    except ValueError as error:
        raise FormatError(f"{path}: {error}") from None


# -- reading ---------------------------------------------------------------------------------
def read_header(path: str) -> dict[str, Any]:
    """The validated JSON header of a safetensors file. Every offset and size is checked against
    the real file size before any tensor is read, so a lying header cannot cause a huge read."""
    try:
        size = os.stat(path).st_size
        with open(path, "rb") as file:
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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
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
    spans.sort()
    for (_, end, key), (begin, _, next_key) in itertools.pairwise(spans):
        if begin < end:
            raise FormatError(f"{path}: tensors {key!r} and {next_key!r} overlap")
    return header


def _check_entry(path: str, key: str, entry: Any, data_size: int) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise FormatError(f"{path}: tensor {key!r}: expected an object, got {entry!r:.80}")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in _DTYPES:
        raise FormatError(
            f"{path}: tensor {key!r}: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise FormatError(f"{path}: tensor {key!r}: shape must be non-negative ints, got {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise FormatError(f"{path}: tensor {key!r}: data_offsets must be [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise FormatError(
            f"{path}: tensor {key!r}: data_offsets {offsets} outside the {data_size}-byte data "
            "section (reversed, or past the end: truncated file?)"
        )
    # Exact, no overflow. (mypy joins the three dtypes of _DTYPES to object, hence the ignore.)
    expected = int(np.prod(shape, dtype=object)) * _DTYPES[dtype].itemsize  # type: ignore[attr-defined]
    if expected != end - begin:
        raise FormatError(
            f"{path}: tensor {key!r}: shape {shape} of {dtype} needs {expected} bytes, "
            f"data_offsets give {end - begin}"
        )
    return begin, end


def _read_tensors(path: str, keys: list[str]) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as file:
            return {key: file.get_tensor(key) for key in keys}
    except (SafetensorError, OSError) as error:
        raise FormatError(f"{path}: cannot read tensors ({error})") from None


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
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as error:
        raise FormatError(f"{path}: metadata 'config' is not JSON ({error})") from None
    if not isinstance(config, dict):
        raise FormatError(f"{path}: metadata 'config' must be a JSON object, got {config!r:.80}")
    try:
        return Spec.from_config(config)
    except (TypeError, ValueError) as error:
        raise FormatError(f"{path}: invalid config: {error}") from None


_LAYER_KEY = re.compile(r"weight_ih_l(\d+)(_reverse)?$")


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
            args["proj_size"] = shapes["weight_hr_l0"][0]
    try:
        return Spec.from_config(args)
    except (TypeError, ValueError) as error:
        raise FormatError(f"{path}: inferred an invalid {kind}: {error}") from None
