"""pyrnn's file format: a .safetensors file with the weights under PyTorch's key names and, in
the header metadata, {"format": "pyrnn", "version": "1", "config": <JSON constructor args>} for
the six recurrent modules, or {"format": "pyrnn", "version": "2", "graph": <JSON graph>} for a
pyrnn.Model (a converted graph: pyrnn.graph describes the JSON; its constants are the tensors).
Plain PyTorch state_dicts saved by safetensors or by torch.save load too, by kind and key prefix.
torch is imported only for torch.save files (recognised by their content: a zip archive holding
a data.pkl, or the legacy pickle, or any file named .pt/.pth), which are read only through
torch.load(weights_only=True): no loader ever runs arbitrary unpickling.

Reading: the file is opened once and everything comes from that one descriptor with ordinary
reads (never a memory map, so a file truncated meanwhile cannot kill the process with SIGBUS).
Every read must return its full count, and after the last one the header, the size and the
change time are compared with what they were: a file rewritten in place while it loads raises
FormatError("file changed while loading") instead of giving weights of two versions mixed. (A
rewrite keeping size and header shows only in the change time, which a coarse file system clock
may not tell apart; replacing by rename, as save() does, is what makes a reader safe.)

What is refused, always with FormatError naming the file and the problem: anything that is not a
well-formed safetensors file (bad header length, header not a UTF-8 JSON object, duplicate JSON
keys, NaN/Infinity literals, unknown fields in a tensor entry, offsets reversed / overlapping /
leaving gaps / past the end, a byte count that does not match the shape), tensors whose dtype is
not F16/F32/F64 (BF16, integers and BOOL are refused: numpy has no bfloat16, and integer weights
would only load by guessing a scale; convert to float32 first; a version 2 file may also hold
I64 constants, which its graph uses as indices or sizes; a quantised model's file, which
declares its weight_dtype, holds its matrices as F16, BF16 or I8, int8 ones with F32 scales in
'<key>_scale', and nothing else narrow), and metadata or shapes that do not
describe a valid module or a graph that can run. Files of other formats (numpy .npz/.npy, HDF5,
other zips and pickles) are named for what they are. Errors of the operating system about the
path itself (no such file, a directory, no permission) propagate as OSError subclasses
(FileNotFoundError, IsADirectoryError, PermissionError); a FIFO, device or socket is refused
with OSError without being read (opening a FIFO would block)."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import re
import secrets
import stat
import struct
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any, overload

import numpy as np

from ._base import Module
from ._spec import KINDS, SEQUENCE_KINDS, Spec, physical_memory_bytes
from ._weights import FILE_DTYPES, SCALE_SUFFIX
from .graph import Graph, GraphError
from .model import Model

__all__ = ["FormatError", "load", "save"]

FORMAT_NAME = "pyrnn"
FORMAT_VERSION = "1"  # the six recurrent modules: a config and their weights
GRAPH_FORMAT_VERSION = "2"  # pyrnn.Model: a graph and its constants
# A header larger than this is refused before reading it (safetensors itself caps at 100 MB).
MAX_HEADER_BYTES = 100_000_000
_DTYPES: dict[str, np.dtype[Any]] = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
}
# A graph's integer constants (indices, sizes) are int64; only version 2 files may hold them.
_GRAPH_DTYPES = {**_DTYPES, "I64": np.dtype("<i8")}
# A quantised model's matrices (pyrnn files only, where the file declares them): bfloat16 as
# the uint16 of its bits, int8 with float32 scales in '<key>_scale'.
_NARROW_DTYPES: dict[str, np.dtype[Any]] = {"BF16": np.dtype("<u2"), "I8": np.dtype("i1")}
_ALL_DTYPES = {**_GRAPH_DTYPES, **_NARROW_DTYPES}
# Free input dims are set to these sizes (or an input's lower bound, if larger) to check at load
# that a graph's shapes fit together: a graph that infers at neither size cannot run.
_PROBE_SIZES = (8, 64)
_ENTRY_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_INT64_MAX = 2**63 - 1
# Files always read with torch.load(weights_only=True), whatever their content looks like (so
# a damaged checkpoint gets torch's diagnosis). Others are recognised by their first bytes.
TORCH_SUFFIXES = (".pt", ".pth")
# What torch.save's legacy (non-zip) format starts with: its magic number, pickled (protocol 2).
_TORCH_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
_NONLINEARITIES = ("tanh", "relu")

PathArgument = str | bytes | os.PathLike[str] | os.PathLike[bytes]


class FormatError(ValueError):
    """A file is not a model pyrnn can load; the message names the file and the problem.

    `needs` names the load() arguments that would let the file load ('kind', 'prefix'), and
    `problem` is the message without the advice on them, for callers (such as the `pyrnn`
    command) that spell those arguments their own way."""

    def __init__(self, problem: str, *, needs: tuple[str, ...] = ()) -> None:
        super().__init__(problem + _argument_advice(needs, "kind='{}'", "prefix='{}'"))
        self.problem = problem
        self.needs = needs


def _argument_advice(needs: tuple[str, ...], kind: str, prefix: str) -> str:
    """How to pass the arguments `needs` names, spelt by the templates `kind` and `prefix`
    ("kind='{}'" in Python, "--kind {}" on the command line)."""
    if "kind" in needs:
        others = ", ".join(k for k in KINDS if k != "lstm")
        return (
            f"; to load a plain PyTorch state_dict pass {kind.format('lstm')} (or {others}), "
            f"and {prefix.format('encoder.rnn.')} when it is one module of a larger model"
        )
    if "prefix" in needs:
        return f"; choose the module's keys with {prefix.format('<their common start>')}"
    return ""


def _path_argument(path: Any) -> str:
    """`path` as a str, accepting what open() accepts for a file name (str, bytes, os.PathLike;
    bytes decoded as the OS does, so the name round-trips) but not open()'s integer descriptors,
    which would read or replace whatever the caller has open."""
    if isinstance(path, bool | int) or not isinstance(path, str | bytes | os.PathLike):
        raise TypeError(
            f"path: expected a str, bytes or os.PathLike file name, got {type(path).__name__} "
            f"{path!r:.80}"
        )
    return os.fsdecode(os.fspath(path))


_SPECIAL_FILES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_regular_file(path: str, mode: int, refusal: str) -> OSError:
    if stat.S_ISDIR(mode):
        return IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    what = next((name for test, name in _SPECIAL_FILES if test(mode)), "a special file")
    return OSError(errno.EINVAL, f"{what}, not a regular file: {refusal}", path)


# -- saving ----------------------------------------------------------------------------------
def save(module: Module | Model, path: PathArgument) -> None:
    """Writes `module` (one of the six recurrent modules, format version 1, or a pyrnn.Model,
    version 2) to `path` atomically: the file appears complete or not at all.

    The model is written to a new file in the destination's directory and renamed over it, so
    a reader never sees a partial file. A symlink is followed and its target replaced (a
    dangling one gets its target created, as open() would); the replaced file keeps its
    permission bits (a new file gets 0666 minus the umask, as with open()); owner, group, ACLs
    and other hard links are not carried over. A path that exists but is not a regular file
    (directory, FIFO, device, socket) is refused with OSError and left untouched."""
    tensors: Mapping[str, np.ndarray]
    if isinstance(module, Model):
        tensors, metadata = _graph_contents(module)
        bf16 = set(module.graph.quantized) if module.weight_dtype == "bf16" else set()
    elif isinstance(module, Module):
        tensors = module._parameters  # each matrix read back when written
        metadata = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "config": json.dumps(module.config, sort_keys=True),
        }
        bf16 = set(module._spec.matrix_keys()) if module.weight_dtype == "bf16" else set()
    else:
        raise TypeError(
            f"module: expected a pyrnn module or pyrnn.Model, got {type(module).__name__}"
        )
    shown = _path_argument(path)
    header, order = _layout(tensors, metadata, bf16)
    try:
        existing = os.stat(shown)  # follows symlinks, as the kernel resolves them
    except FileNotFoundError:
        existing = None  # a new file, or a dangling symlink whose target is created
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise _not_a_regular_file(shown, existing.st_mode, "pyrnn.save would replace it")
    target = os.path.realpath(shown)  # symlink chains and relative links resolved
    directory = os.path.dirname(target)
    temporary = os.path.join(directory, _temporary_name(directory))
    try:
        # Not tempfile.mkstemp: its files are mode 0600, and the rename would keep that. Mode
        # 0666 filtered by the umask gives the permissions open() and torch.save give.
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
        )
    except OSError as error:
        # The hidden name means nothing to the caller; the directory's permissions do.
        raise _renamed(error, shown, f" (saving creates a new file in {directory} first)") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(header)
            # One tensor at a time, read back from the packed copy, written and let go: saving
            # holds at most one tensor beside the model.
            for key, dtype in order:
                array = np.ascontiguousarray(tensors[key], dtype=_ALL_DTYPES[dtype])
                if array.nbytes:
                    file.write(array.reshape(-1).view(np.uint8).data)
                del array
            file.flush()
            if existing is not None and hasattr(os, "fchmod"):
                os.fchmod(file.fileno(), stat.S_IMODE(existing.st_mode) & 0o777)
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise _renamed(error, shown) from None
        raise


def _layout(
    tensors: Mapping[str, np.ndarray], metadata: dict[str, str], bf16: set[str]
) -> tuple[bytes, list[tuple[str, str]]]:
    """The start of a safetensors file holding `tensors` (those named in `bf16` are uint16
    arrays of bfloat16 bits, stored as BF16, which numpy has no dtype for): an 8-byte
    little-endian header length and the JSON header padded with spaces to a multiple of 8; and
    the order in which the tensors' little-endian bytes follow it (key, file dtype), widest
    elements first so that each is aligned to its own size. Each tensor is read once here, for
    its dtype and shape, and let go."""
    names = {np.dtype(t): name for name, t in _ALL_DTYPES.items() if name != "BF16"}
    described = {}
    for key in tensors:
        array = tensors[key]
        dtype = "BF16" if key in bf16 else names[array.dtype.newbyteorder("<")]
        described[key] = (dtype, list(array.shape))
        del array
    order = sorted(described, key=lambda key: (-_ALL_DTYPES[described[key][0]].itemsize, key))
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key in order:
        dtype, shape = described[key]
        size = int(np.prod(shape, dtype=np.int64)) * _ALL_DTYPES[dtype].itemsize
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, [(key, described[key][0]) for key in order]


def _graph_contents(model: Model) -> tuple[Mapping[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a version 2 file. The graph is checked as load will read it,
    so a model whose file could not load is refused here, before anything is written."""
    try:
        text = json.dumps(model.graph.to_json(), separators=(",", ":"), allow_nan=False)
        Graph.from_json(json.loads(text))
    except (TypeError, ValueError) as error:  # GraphError is a ValueError
        raise ValueError(f"module: the model's graph cannot be saved: {error}") from None
    tensors = model._constants  # each read back from the packed copy when written
    if "__metadata__" in tensors:
        raise ValueError(
            "module: a constant named '__metadata__' cannot be stored (safetensors reserves the "
            "name); rename that buffer or parameter"
        )
    return tensors, {"format": FORMAT_NAME, "version": GRAPH_FORMAT_VERSION, "graph": text}


def _temporary_name(directory: str) -> str:
    """A hidden name for the file written before the rename: short and independent of the
    destination's name, so a destination near the file system's name limit can be saved."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):
        limit = -1
    if limit <= 0:  # unknown, or no limit
        limit = 255
    return f".pyrnn-{secrets.token_hex(8)}.tmp"[:limit]  # 27 characters; POSIX allows >= 14


def _renamed(error: OSError, path: str, note: str = "") -> OSError:
    """`error` about the hidden temporary file, restated about the caller's `path`."""
    if error.errno is None:
        return OSError(f"{path}: {error}{note}")
    return OSError(error.errno, f"{error.strerror}{note}", path)


# -- loading ---------------------------------------------------------------------------------
@overload
def load(
    path: PathArgument,
    kind: str,
    prefix: str = "",
    *,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
) -> Module: ...  # a kind is a recurrent module's, never a graph file's
@overload
def load(
    path: PathArgument,
    kind: None = None,
    prefix: str = "",
    *,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
) -> Module | Model: ...
def load(
    path: PathArgument,
    kind: str | None = None,
    prefix: str = "",
    *,
    nonlinearity: str | None = None,
    batch_first: bool | None = None,
) -> Module | Model:
    """Loads a module from a pyrnn file, or from a plain PyTorch state_dict saved with
    safetensors or torch.save: then `kind` ('rnn', 'lstm', 'gru', 'rnn_cell', 'lstm_cell',
    'gru_cell') says what it is, `prefix` selects its keys (e.g. 'encoder.rnn.'), and sizes,
    layers, bidirectionality and proj_size are inferred from the shapes. `nonlinearity` and
    `batch_first` cannot be inferred from weights and are taken as given (default 'tanh' and
    False). A pyrnn file describes itself: `kind`, `nonlinearity` and `batch_first` may repeat
    what it holds but a contradiction raises ValueError, as does any `prefix`. A file saved
    from a pyrnn.Model (format version 2) loads as a pyrnn.Model, and takes none of them."""
    name = _path_argument(path)
    _check_arguments(kind, prefix, nonlinearity, batch_first)
    with _open_for_reading(name) as file:
        before = os.fstat(file.fileno())
        try:
            module = _load_from(file, name, before.st_size, kind, prefix, nonlinearity, batch_first)
        except FormatError:
            if _changed(file, before):
                raise _changed_error(name) from None
            raise
        if _changed(file, before):
            raise _changed_error(name)
    return module


def _check_arguments(kind: Any, prefix: Any, nonlinearity: Any, batch_first: Any) -> None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix: expected a str, got {type(prefix).__name__} {prefix!r:.80}")
    if nonlinearity is not None and nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first: expected a bool, got {type(batch_first).__name__}")
    if kind is not None:
        _check_options_fit(kind, nonlinearity, batch_first, f"kind={kind!r}")


def _check_options_fit(
    kind: str, nonlinearity: str | None, batch_first: bool | None, what: str
) -> None:
    """Options a module of `kind` cannot honour are refused rather than dropped."""
    if nonlinearity not in (None, "tanh") and not kind.startswith("rnn"):
        raise ValueError(
            f"nonlinearity: only rnn and rnn_cell take a nonlinearity, {what} is a {kind}; "
            f"got nonlinearity={nonlinearity!r}"
        )
    if batch_first and kind not in SEQUENCE_KINDS:
        raise ValueError(
            f"batch_first: a {kind} takes one step, it has no time axis ({what}); "
            "got batch_first=True"
        )


def _open_for_reading(path: str) -> io.FileIO:
    """`path` opened unbuffered for reading, or OSError if it is not a regular file. Opened
    non-blocking, so a FIFO is refused rather than waited on."""
    refusal = "pyrnn.load reads model files only"
    mode = os.stat(path).st_mode  # OSError about the path itself propagates (see the top)
    if not stat.S_ISREG(mode):  # named before opening: a socket cannot even be opened
        raise _not_a_regular_file(path, mode, refusal)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode  # what was opened, if the path changed meanwhile
        if not stat.S_ISREG(mode):
            raise _not_a_regular_file(path, mode, refusal)
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return open(fd, "rb", buffering=0)  # takes over the descriptor
    except BaseException:
        os.close(fd)
        raise


def _changed(file: io.FileIO, before: os.stat_result) -> bool:
    # The change time cannot be set by a writer (unlike the modification time, which cp -p
    # restores), and Linux makes it fine-grained once queried, as it was here.
    after = os.fstat(file.fileno())
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )


def _changed_error(path: str) -> FormatError:
    return FormatError(
        f"{path}: file changed while loading (rewritten in place?); load it again once it is "
        "complete. To replace a model that others read, write a new file and rename it over "
        "the old one, as pyrnn.save does"
    )


def _read_exact(file: io.FileIO, count: int) -> bytes:
    """Up to `count` bytes from the current position: fewer only at the end of the file."""
    chunks, remaining = [], count
    while remaining:
        chunk = file.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_into(file: io.FileIO, buffer: memoryview) -> int:
    """Fills `buffer` from the current position; the count read (short only at end of file)."""
    done = 0
    while done < len(buffer):
        count = file.readinto(buffer[done:])
        if not count:
            break
        done += count
    return done


def _load_from(
    file: io.FileIO,
    path: str,
    size: int,
    kind: str | None,
    prefix: str,
    nonlinearity: str | None,
    batch_first: bool | None,
) -> Module | Model:
    reader = _reader_for(file, path, size)
    header: dict[str, Any] | None = None
    tensors: dict[str, np.ndarray] | None = None
    if reader == "torch":
        if kind is None:  # a torch.save file never says what it holds: ask before reading it
            raise FormatError(
                f"{path}: a PyTorch checkpoint (torch.save file), which has no pyrnn metadata",
                needs=("kind", "prefix"),
            )
        tensors = _read_torch(file, path)
        metadata: dict[str, str] = {}
        shapes = {key: array.shape for key, array in tensors.items()}
    else:
        header, raw = _read_header(file, path, size)
        metadata = header.pop("__metadata__", {})
        if _is_graph_file(metadata):
            _refuse_module_arguments(path, kind, prefix, nonlinearity, batch_first)
            return _load_graph(file, path, header, raw, metadata)
        shapes = {key: tuple(entry["shape"]) for key, entry in header.items()}
    if metadata.get("format") == FORMAT_NAME:
        spec = _spec_from_metadata(path, metadata)
        _check_against_file(path, spec, kind, prefix, nonlinearity, batch_first)
        # int8 scales are checked with the dtypes, once the keys and shapes are known good.
        rename = {key: key for key in shapes}
        shapes = {key: shape for key, shape in shapes.items() if not key.endswith(SCALE_SUFFIX)}
    else:
        if kind is None:
            raise FormatError(
                f"{path}: no pyrnn metadata (format={metadata.get('format')!r})",
                needs=("kind", "prefix"),
            )
        rename = {key[len(prefix) :]: key for key in shapes if key.startswith(prefix)}
        if not rename:
            raise FormatError(
                f"{path}: no tensor key starts with prefix {prefix!r}; keys begin "
                f"{sorted(shapes)[:5]}",
                needs=("prefix",),
            )
        spec = _infer_spec(
            path,
            kind,
            {short: shapes[full] for short, full in rename.items()},
            nonlinearity="tanh" if nonlinearity is None else nonlinearity,
            batch_first=bool(batch_first),
        )
    _check_shapes(
        path, spec, {short: shapes[full] for short, full in rename.items() if full in shapes}
    )
    if header is not None and metadata.get("format") == FORMAT_NAME:
        _check_module_dtypes(path, spec, header)
    if tensors is not None:
        return _module(path, spec, {short: tensors[full] for short, full in rename.items()})
    assert header is not None
    # One tensor at a time, each copied by the module before the next is read: a file's weights
    # are never all held twice.
    module = _module(path, spec, _FileTensors(file, path, header, len(raw), rename))
    _check_header_unchanged(file, path, raw)
    return module


def _module(path: str, spec: Spec, state_dict: Mapping[str, Any]) -> Module:
    try:
        return Module._from_state_dict(spec, state_dict)
    except FormatError:
        raise
    except ValueError as error:
        raise FormatError(f"{path}: {error}") from None


def _check_against_file(
    path: str,
    spec: Spec,
    kind: str | None,
    prefix: str,
    nonlinearity: str | None,
    batch_first: bool | None,
) -> None:
    """Arguments given for a pyrnn file may repeat what it holds, never contradict it."""
    holds = f"{path} holds a {spec.kind}"
    if kind is not None and kind != spec.kind:
        raise ValueError(
            f"kind: {holds} (its pyrnn metadata says so), got kind={kind!r}; omit kind for "
            "pyrnn files"
        )
    if prefix:
        raise ValueError(
            f"prefix: applies only to plain PyTorch state_dicts; {path} is a pyrnn file "
            f"holding one {spec.kind}, got prefix={prefix!r}"
        )
    if nonlinearity is not None and nonlinearity != spec.nonlinearity:
        raise ValueError(
            f"nonlinearity: {holds} with nonlinearity={spec.nonlinearity!r}, got "
            f"nonlinearity={nonlinearity!r}"
        )
    if batch_first is not None and batch_first != spec.batch_first:
        raise ValueError(
            f"batch_first: {holds} with batch_first={spec.batch_first}, got "
            f"batch_first={batch_first}"
        )


# -- recognising the file --------------------------------------------------------------------
def _reader_for(file: io.FileIO, path: str, size: int) -> str:
    """'safetensors' or 'torch' for the file's content; FormatError naming any other format."""
    file.seek(0)
    start = _read_exact(file, len(_TORCH_LEGACY_MAGIC))
    framed = len(start) >= 8 and struct.unpack("<Q", start[:8])[0] <= min(
        MAX_HEADER_BYTES, size - 8
    )
    if path.lower().endswith(TORCH_SUFFIXES):
        return "safetensors" if framed and start[8:9] == b"{" else "torch"
    if framed or len(start) < 8:
        return "safetensors"  # its reader names what is wrong (too short, bad JSON, ...)
    if start.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if start.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        members = _zip_members(file)
        if members is None:
            raise FormatError(
                f"{path}: starts like a zip archive but its directory cannot be read "
                "(truncated?); not a safetensors file"
            )
        if any(member == "data.pkl" or member.endswith("/data.pkl") for member in members):
            return "torch"
        if members and all(member.endswith(".npy") for member in members):
            raise FormatError(
                f"{path}: a numpy .npz archive, not a safetensors file; load it with np.load "
                "and pass the arrays to a module's load_state_dict, e.g. "
                "pyrnn.LSTM(...).load_state_dict(dict(np.load(path)))"
            )
        raise FormatError(
            f"{path}: a zip archive holding {members[:3]}, neither a PyTorch checkpoint nor "
            "a safetensors file"
        )
    if start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise FormatError(
            f"{path}: a Python pickle (protocol {start[1]}), not a safetensors file; pyrnn "
            "does not unpickle arbitrary files. Convert a pickled state_dict with "
            "safetensors.torch.save_file(state_dict, path)"
        )
    if start.startswith(b"\x89HDF\r\n\x1a\n"):
        raise FormatError(
            f"{path}: an HDF5 file (such as a Keras .h5), not a safetensors file; save the "
            "weights in PyTorch's layout with safetensors"
        )
    if start.startswith(b"\x93NUMPY"):
        raise FormatError(
            f"{path}: a numpy .npy array, not a safetensors file; load it with np.load and "
            "pass it to a module's load_state_dict"
        )
    return "safetensors"


def _zip_members(file: io.FileIO) -> list[str] | None:
    """The member names of a zip archive, or None if its directory cannot be read."""
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return archive.namelist()
    except MemoryError:
        raise
    except Exception:  # BadZipFile, EOFError, OSError, ValueError on a damaged directory
        return None


# -- reading ---------------------------------------------------------------------------------
def read_header(path: PathArgument) -> dict[str, Any]:
    """The validated JSON header of the safetensors file at `path`."""
    name = _path_argument(path)
    with _open_for_reading(name) as file:
        return _read_header(file, name, os.fstat(file.fileno()).st_size)[0]


def _read_header(file: io.FileIO, path: str, size: int) -> tuple[dict[str, Any], bytes]:
    """The validated JSON header of a safetensors file of `size` bytes, and its raw bytes
    (length prefix included). Every offset and size is checked against the file size before
    any tensor is read, so a lying header cannot cause a huge read."""
    file.seek(0)
    try:
        prefix = _read_exact(file, 8)
        if len(prefix) < 8:
            raise FormatError(f"{path}: {size} bytes is too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise FormatError(
                f"{path}: header length {length} exceeds the file ({size} bytes) "
                f"or the {MAX_HEADER_BYTES}-byte limit: not a safetensors file or truncated"
            )
        raw = _read_exact(file, length)
    except OSError as error:
        raise FormatError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(raw) != length:
        raise _changed_error(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(f"{path}: header is not valid JSON ({error})") from None
    header = _parse_json(text, f"{path}: header is not valid JSON")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError(f"{path}: __metadata__ must map strings to strings")
    dtypes = _GRAPH_DTYPES if _is_graph_file(metadata) else _DTYPES
    if metadata.get("format") == FORMAT_NAME:  # what each tensor may be is checked later
        dtypes = {**dtypes, **_NARROW_DTYPES}
    data_size = size - 8 - length
    spans = []
    for key, entry in header.items():
        if key != "__metadata__":
            spans.append((*_check_entry(path, key, entry, data_size, dtypes), key))
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
    return header, prefix + raw


class _JsonRefused(ValueError):
    pass


def _parse_json(text: str, failure: str) -> Any:
    """`text` parsed as strict JSON (no duplicate keys, no NaN/Infinity), or FormatError
    starting with `failure`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_refuse_constant)
    except RecursionError:  # nested deeper than the parser's stack
        raise FormatError(f"{failure} (nested too deeply)") from None
    except ValueError as error:
        # JSONDecodeError, _JsonRefused, and an int of more digits than int() converts (whose
        # advice after the ';' is about raising Python's limit, not about the file).
        raise FormatError(f"{failure} ({str(error).split(';')[0]})") from None


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


def _check_entry(
    path: str, key: str, entry: Any, data_size: int, dtypes: dict[str, np.dtype[Any]]
) -> tuple[int, int]:
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
    if not isinstance(dtype, str) or dtype not in dtypes:
        raise FormatError(
            f"{path}: tensor {key!r}: dtype must be one of {sorted(dtypes)}, got {dtype!r:.40} "
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
    expected = int(np.prod(shape, dtype=object)) * dtypes[dtype].itemsize  # exact: no overflow
    if expected != end - begin:
        raise FormatError(
            f"{path}: tensor {key!r}: shape {shape!r:.80} of {dtype} needs {expected} bytes, "
            f"data_offsets give {end - begin}"
        )
    return begin, end


def _read_tensor(
    file: io.FileIO, path: str, header: dict[str, Any], data_start: int, key: str
) -> np.ndarray:
    """Tensor `key`, read with ordinary reads into a new array of its dtype and shape (little
    endian as the format says; numpy converts on big-endian hosts)."""
    entry = header[key]
    array = np.empty(entry["shape"], _ALL_DTYPES[entry["dtype"]])  # validated already
    if array.nbytes:
        try:
            file.seek(data_start + entry["data_offsets"][0])
            count = _read_into(file, array.reshape(-1).view(np.uint8).data)
        except OSError as error:
            raise FormatError(
                f"{path}: cannot read tensor {key!r} ({error.strerror or error})"
            ) from None
        if count != array.nbytes:
            raise _changed_error(path)  # the header said these bytes were there
    return array


def _check_header_unchanged(file: io.FileIO, path: str, raw: bytes) -> None:
    """`raw` is the header as first read (length prefix included), read again after the
    tensors: a file rewritten meanwhile (even to the same size) is refused."""
    try:
        file.seek(0)
        again = _read_exact(file, len(raw))
    except OSError as error:
        raise FormatError(f"{path}: cannot read ({error.strerror or error})") from None
    if again != raw:
        raise _changed_error(path)


def _read_tensors(
    file: io.FileIO, path: str, header: dict[str, Any], raw: bytes, keys: list[str]
) -> dict[str, np.ndarray]:
    """The tensors `keys`, read in one forward pass, then the header checked unchanged."""
    order = sorted(keys, key=lambda k: header[k]["data_offsets"][0])
    tensors = {key: _read_tensor(file, path, header, len(raw), key) for key in order}
    _check_header_unchanged(file, path, raw)
    return tensors


class _FileTensors(Mapping[str, np.ndarray]):
    """The tensors of an open safetensors file by module key, each read when asked for."""

    def __init__(
        self,
        file: io.FileIO,
        path: str,
        header: dict[str, Any],
        data_start: int,
        rename: dict[str, str],
    ) -> None:
        self._file, self._path, self._header, self._data_start = file, path, header, data_start
        self._rename = rename  # module key -> key in the file

    def __getitem__(self, key: str) -> np.ndarray:
        return _read_tensor(
            self._file, self._path, self._header, self._data_start, self._rename[key]
        )

    def __contains__(self, key: object) -> bool:
        return key in self._rename

    def __iter__(self) -> Iterator[str]:
        return iter(self._rename)

    def __len__(self) -> int:
        return len(self._rename)


_TORCH_DTYPES = ("torch.float16", "torch.float32", "torch.float64")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _read_torch(file: io.FileIO, path: str) -> dict[str, np.ndarray]:
    """A flat state_dict saved by torch.save, read from the open `file` with
    torch.load(weights_only=True), whose restricted unpickler refuses anything but tensors and
    plain containers: a pickle that would run code is refused, not executed. Never mapped:
    torch.load gets the file object, with mmap=False (torch's default is configurable)."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{path}: reading PyTorch checkpoints (torch.save files) needs torch (pip install "
            "torch), or save the state_dict with safetensors instead"
        ) from None
    import inspect

    options: dict[str, Any] = {"map_location": "cpu", "weights_only": True}
    if "mmap" in inspect.signature(torch.load).parameters:
        options["mmap"] = False
    file.seek(0)
    buffered = io.BufferedReader(file)
    try:
        with warnings.catch_warnings():
            # e.g. "pickle protocol 5 ... might not support": the load either works or fails.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(buffered, **options)
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
    finally:
        buffered.detach()  # the caller still owns (and closes) `file`
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


def _check_module_dtypes(path: str, spec: Spec, header: dict[str, Any]) -> None:
    """The dtype of every tensor of a version 1 file, from the header alone: an fp32 module's
    tensors are F16, F32 or F64 (converted to float32); a quantised module's matrices are
    exactly its weight type's (F16, BF16 or I8, each int8 one with its F32 '<key>_scale' of
    one value per row) and its biases F32."""
    dtype = spec.weight_dtype
    matrices = set(spec.matrix_keys())
    shapes = spec.parameter_shapes()
    for key, entry in header.items():
        found = entry["dtype"]
        if key.endswith(SCALE_SUFFIX) and key not in shapes:
            weight = key[: -len(SCALE_SUFFIX)]
            if dtype != "int8" or weight not in matrices:
                why = f"{weight!r} is no weight matrix" if weight in shapes else "no such weight"
                raise FormatError(
                    f"{path}: tensor {key!r}: a scale with no int8 tensor (the file's "
                    f"weight_dtype is {dtype!r}; {why if weight not in matrices else 'not int8'})"
                )
            rows = shapes[weight][0]
            if found != "F32" or entry["shape"] != [rows]:
                raise FormatError(
                    f"{path}: tensor {key!r}: int8 scales must be F32 of shape [{rows}] (one "
                    f"per row of {weight!r}), got {found} {entry['shape']!r:.80}"
                )
            continue
        if key not in shapes:
            continue  # named by _check_shapes
        if dtype != "fp32" and key in matrices:
            allowed = [FILE_DTYPES[dtype]]
            what = f"weight_dtype {dtype!r} stores its weight matrices as {allowed[0]}"
        elif dtype != "fp32":
            allowed = ["F32"]
            what = f"biases stay float32 with weight_dtype {dtype!r}"
        else:
            allowed = sorted(_DTYPES)
            what = "the file's weight_dtype is fp32 (convert the weights to float32 first)"
        if found not in allowed:
            raise FormatError(
                f"{path}: tensor {key!r}: dtype must be {' or '.join(allowed)} ({what}), "
                f"got {found!r}"
            )
    if dtype == "int8":
        for key in matrices:
            if key in header and key + SCALE_SUFFIX not in header:
                raise FormatError(
                    f"{path}: int8 tensor {key!r} has no scale tensor {key + SCALE_SUFFIX!r}"
                )


# -- what the file holds ---------------------------------------------------------------------
def _spec_from_metadata(path: str, metadata: dict[str, str]) -> Spec:
    version = metadata.get("version")
    if version != FORMAT_VERSION:  # version 2 files were sent to _load_graph already
        raise FormatError(
            f"{path}: pyrnn format version {version!r:.40} is not supported (expected "
            f"{FORMAT_VERSION!r} or {GRAPH_FORMAT_VERSION!r}); upgrade pyrnn"
        )
    if "config" not in metadata:
        raise FormatError(f"{path}: pyrnn metadata lacks 'config'")
    config = _parse_json(metadata["config"], f"{path}: metadata 'config' is not JSON")
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
        raise FormatError(
            f"{path}: no {first!r} under the prefix; found {sorted(shapes)[:8]}", needs=("prefix",)
        )
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


# -- graph files (format version 2) ------------------------------------------------------------
def _is_graph_file(metadata: dict[str, str]) -> bool:
    return metadata.get("format") == FORMAT_NAME and metadata.get("version") == GRAPH_FORMAT_VERSION


def _refuse_module_arguments(
    path: str, kind: str | None, prefix: str, nonlinearity: str | None, batch_first: bool | None
) -> None:
    """A graph file describes itself; the arguments that describe a recurrent module's weights
    have nothing to say about it."""
    given = [
        f"{name}={value!r}"
        for name, value in (
            ("kind", kind),
            ("prefix", prefix or None),
            ("nonlinearity", nonlinearity),
            ("batch_first", batch_first),
        )
        if value is not None
    ]
    if given:
        raise ValueError(
            f"{given[0].split('=')[0]}: {path} holds a pyrnn.Model (a graph, pyrnn format "
            f"version 2), which describes itself; kind, prefix, nonlinearity and batch_first "
            f"apply to recurrent modules only, got {', '.join(given)}"
        )


def _load_graph(
    file: io.FileIO, path: str, header: dict[str, Any], raw: bytes, metadata: dict[str, str]
) -> Model:
    """A pyrnn.Model from a version 2 file whose header (without __metadata__) is `header`.
    Every check that the header alone allows comes before any tensor is read; whatever the
    graph or the core refuse becomes FormatError naming the file."""
    if "graph" not in metadata:
        raise FormatError(f"{path}: pyrnn metadata of version 2 lacks 'graph'")
    data = _parse_json(metadata["graph"], f"{path}: metadata 'graph' is not JSON")
    try:
        graph = Graph.from_json(data)
    except GraphError as error:
        raise FormatError(f"{path}: invalid graph: {error}") from None
    scales = (
        {name + SCALE_SUFFIX: name for name in graph.quantized}
        if graph.weight_dtype == "int8"
        else {}
    )
    missing = [name for name in graph.constants if name not in header]
    missing += [scale for scale in scales if scale not in header]
    unexpected = sorted(set(header) - set(graph.constants) - set(scales))
    if missing or unexpected:
        lacking = [scale for scale in scales if scale not in header]
        stray = [key for key in unexpected if key.endswith(SCALE_SUFFIX)]
        note = (
            f" (int8 tensors with no scale: {[scales[k] for k in lacking][:8]})" if lacking else ""
        )
        note += f" (a scale with no int8 tensor: {stray[:8]})" if stray else ""
        raise FormatError(
            f"{path}: the graph's constants and the file's tensors differ: missing "
            f"{missing[:8]}, unexpected {unexpected[:8]}{note}"
        )
    _check_graph_dtypes(path, graph, header, scales)
    for name in graph.constants:
        rank = len(header[name]["shape"])
        if rank > _MAX_RANK:
            raise FormatError(
                f"{path}: tensor {name!r} has rank {rank}; graph constants have at most {_MAX_RANK}"
            )
    _check_build_memory(path, graph, header)
    # The scales are small; every other tensor is read when the core packs or copies it, and
    # let go before the next is read: a file's weights are never all held twice.
    read_scales = _read_tensors(file, path, header, raw, list(scales))
    shapes = {
        name: (
            "int64" if header[name]["dtype"] == "I64" else "float32",
            tuple(header[name]["shape"]),
        )
        for name in graph.constants
    }
    try:
        model = Model._streamed(
            graph,
            shapes,
            lambda name: _read_tensor(file, path, header, len(raw), name),
            read_scales,
        )
    except FormatError:
        raise
    except (TypeError, ValueError) as error:  # GraphError is a ValueError
        raise FormatError(f"{path}: the graph does not build: {error}") from None
    _check_header_unchanged(file, path, raw)
    _probe_shapes(path, model)
    return model


def _check_graph_dtypes(
    path: str, graph: Graph, header: dict[str, Any], scales: dict[str, str]
) -> None:
    """The dtype of every tensor of a version 2 file, from the header alone: the graph's
    quantized constants exactly its weight type's, each int8 one with F32 scales of one value
    per row; every other constant F16, F32, F64 or I64."""
    quantized = set(graph.quantized)
    for name in graph.constants:
        found = header[name]["dtype"]
        if name in quantized:
            expected = FILE_DTYPES[graph.weight_dtype]
            if found != expected:
                raise FormatError(
                    f"{path}: tensor {name!r}: the graph's weight_dtype {graph.weight_dtype!r} "
                    f"stores it as {expected}, got {found!r}"
                )
            if len(header[name]["shape"]) < 2:
                raise FormatError(
                    f"{path}: tensor {name!r}: a quantized constant is a weight matrix, got "
                    f"shape {header[name]['shape']!r:.80}"
                )
        elif found not in _GRAPH_DTYPES:
            raise FormatError(
                f"{path}: tensor {name!r}: dtype must be one of {sorted(_GRAPH_DTYPES)} (only "
                f"the graph's quantized weight matrices are stored narrow), got {found!r}"
            )
    for scale, name in scales.items():
        rows = header[name]["shape"][0]
        entry = header[scale]
        if entry["dtype"] != "F32" or entry["shape"] != [rows]:
            raise FormatError(
                f"{path}: tensor {scale!r}: int8 scales must be F32 of shape [{rows}] (one per "
                f"row of {name!r}), got {entry['dtype']} {entry['shape']!r:.80}"
            )


_MAX_RANK = 8  # the core's kMaxRank
_UNIT_BLOCK = 16  # kUnitBlock in cpp/core/dims.h: packed weights pad rows to multiples of it


def _check_build_memory(path: str, graph: Graph, header: dict[str, Any]) -> None:
    """Refuses, from the header alone, a graph whose building would need more than physical
    memory. A small file can ask for much: the core packs a weight once per node that uses it,
    so one tensor named by 10**6 operands is packed 10**6 times. The bound counts each constant
    as read, converted and copied by the core (more than it takes: a matrix only packed is
    read one at a time and never copied), and per use its packed copy:
    at most twice its bytes plus a 16-row block of padding per gate (4 gates at most) and per
    convolution group, and ~1 KiB of bookkeeping per use (packed arrays, layer states)."""
    memory = physical_memory_bytes()
    if memory is None:
        return
    sizes = {}  # constant -> (float32 or int64 bytes, bytes of one row)
    needed = 0
    for name in graph.constants:
        shape = header[name]["shape"]
        count = int(np.prod(shape, dtype=object))
        item = 8 if header[name]["dtype"] == "I64" else 4
        row = count // shape[0] if shape and shape[0] else count
        sizes[name] = (count * item, row * item)
        needed += count * _ALL_DTYPES[header[name]["dtype"]].itemsize + 2 * count * item
    uses = 0
    for node in graph.nodes:
        groups = node.attrs.get("groups", 1) if node.op == "conv1d" else 1
        for operand in node.inputs:
            if isinstance(operand, str) and operand in sizes:
                nbytes, row = sizes[operand]
                needed += 2 * nbytes + (4 + groups) * _UNIT_BLOCK * row + 1024 * groups
                uses += 1
    if needed > memory:
        raise FormatError(
            f"{path}: building the graph would need about {needed / 2**30:.1f} GiB (its "
            f"{len(sizes)} constants are used {uses} times by its nodes, each use packed "
            f"anew), more than this machine's physical memory ({memory / 2**30:.1f} GiB); "
            "nothing was allocated"
        )


def _probe_shapes(path: str, model: Model) -> None:
    """Shape inference (nothing allocated or run) with every free input dim at a plausible
    size: the input's lower bound where that is larger, its upper bound where that is smaller.
    A graph whose shapes contradict each other fails at every size; one that needs larger
    inputs than the first probe passes at the second. Only a graph failing at every probe is
    refused, each failure named."""
    inputs = model.graph.inputs
    probes: list[list[list[int]]] = []
    for size in _PROBE_SIZES:
        dims = [_probe_dims(spec.shape, spec.ranges, size) for spec in inputs]
        if dims not in probes:  # no free dim, or bounds that allow one size only
            probes.append(dims)
    failures = []
    for dims in probes:
        try:
            model._core.infer([(spec.dtype, d) for spec, d in zip(inputs, dims, strict=True)])
            return
        except ValueError as error:
            shown = ", ".join(
                f"{spec.name} {tuple(d)}" for spec, d in zip(inputs, dims, strict=True)
            )
            failures.append(f"with inputs {shown or '(none)'}: {error}")
    raise FormatError(f"{path}: the graph cannot run: {'; '.join(failures)}")


def _probe_dims(
    shape: list[int | None], ranges: list[tuple[int, int, int | None]], size: int
) -> list[int]:
    bounds = {dim: (low, high) for dim, low, high in ranges}
    dims = []
    for axis, fixed in enumerate(shape):
        if fixed is not None:
            dims.append(fixed)
            continue
        low, high = bounds.get(axis, (0, None))
        probe = max(size, low)
        dims.append(probe if high is None else min(probe, high))
    return dims
