"""pyrnn.load and pyrnn.save against what happens to files in real use: a file rewritten in
place while it loads (a cp, scp or download over the model), symlinks, special files and
permission bits under save, paths given as str, bytes or os.PathLike, and files of other formats
(torch zip checkpoints, numpy .npz, HDF5, bare pickles) named for what they are."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from unprivileged import can_drop_privileges, run_python, scratch_folder

import pyrnn

# Seconds the loader runs against a writer rewriting the file in place.
RACE_SECONDS = 3.0

# Rewrites argv[1] in place (truncate, then write: what cp or a download over the file does),
# cycling through the files named after it until killed, each left in place for a random
# 0-1 ms (seeded) so that loads both succeed and overlap rewrites.
_WRITER = """
import os, random, sys, time
path, *sources = sys.argv[1:]
payloads = [open(source, "rb").read() for source in sources]
pauses = random.Random(0)
print("ready", flush=True)
while True:
    for payload in payloads:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.close(fd)
        time.sleep(pauses.uniform(0, 0.001))
"""

# Loads argv[1] for argv[2] seconds; every load must give a model equal to one of the reference
# files (argv[5:]) or raise FormatError/OSError. Anything else propagates (exit status 1); a
# crash shows as death by a signal. Prints the counts as JSON.
_LOADER = """
import json, sys, time
import pyrnn
path, seconds, kind, torch_mmap, *references = sys.argv[1:]
kind = kind or None
if torch_mmap == "1":
    # torch's own default for torch.load(mmap=None) (torch >= 2.5): pyrnn must not map anyway.
    try:
        from torch.utils.serialization import config
        config.load.mmap = True
    except ImportError:
        pass
versions = [pyrnn.load(reference, kind=kind) for reference in references]

def same(a, b):
    if a.config != b.config:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(sa[k].tobytes() == sb[k].tobytes() for k in sa)

counts = {"loaded": [0] * len(versions), "refused": 0, "wrong": 0, "messages": {}}
deadline = time.monotonic() + float(seconds)
while time.monotonic() < deadline:
    try:
        module = pyrnn.load(path, kind=kind)
    except (pyrnn.FormatError, OSError) as error:
        counts["refused"] += 1
        text = str(error).replace(path, "<path>")[:120]
        counts["messages"][text] = counts["messages"].get(text, 0) + 1
        continue
    matches = [i for i, version in enumerate(versions) if same(module, version)]
    if matches:
        counts["loaded"][matches[0]] += 1
    else:
        counts["wrong"] += 1
print(json.dumps(counts))
"""


def _race(
    tmp_path: Path,
    versions: list[bytes],
    truncated: bytes,
    suffix: str,
    kind: str | None,
    torch_mmap: bool = False,
) -> dict:
    references = []
    for index, payload in enumerate(versions):
        reference = tmp_path / f"version{index}{suffix}"
        reference.write_bytes(payload)
        references.append(str(reference))
    cut = tmp_path / f"truncated{suffix}"
    cut.write_bytes(truncated)
    path = tmp_path / f"model{suffix}"
    path.write_bytes(versions[0])
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), *references, str(cut)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        loader = subprocess.run(
            [
                sys.executable,
                "-c",
                _LOADER,
                str(path),
                str(RACE_SECONDS),
                kind or "",
                "1" if torch_mmap else "0",
                *references,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
        )
    finally:
        writer.kill()
        writer.wait()
        assert writer.stdout is not None
        writer.stdout.close()
    if loader.returncode < 0:
        name = signal.Signals(-loader.returncode).name
        pytest.fail(f"the loading process died of {name}: {loader.stderr[-2000:]}")
    assert loader.returncode == 0, loader.stderr[-4000:]
    counts = json.loads(loader.stdout)
    assert counts["wrong"] == 0, f"a load returned a model that is none of the versions: {counts}"
    assert sum(counts["loaded"]) + counts["refused"] > 0, counts
    return counts


def _pyrnn_file(module: pyrnn.Module, tmp_path: Path) -> bytes:
    path = tmp_path / "scratch.safetensors"
    pyrnn.save(module, path)
    data = path.read_bytes()
    path.unlink()
    return data


def test_load_survives_the_file_being_rewritten_in_place(tmp_path: Path) -> None:
    small = _pyrnn_file(pyrnn.GRU(3, 4, seed=0), tmp_path)
    large = _pyrnn_file(pyrnn.LSTM(5, 7, num_layers=2, bidirectional=True, seed=1), tmp_path)
    _race(tmp_path, [small, large], large[: len(large) // 2], ".safetensors", None)


def test_pt_load_survives_the_file_being_rewritten_in_place(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    payloads = []
    for index, module in enumerate([torch.nn.GRU(3, 4), torch.nn.GRU(6, 9, num_layers=2)]):
        path = tmp_path / f"scratch{index}.pt"
        torch.save(module.state_dict(), path)
        payloads.append(path.read_bytes())
        path.unlink()
    _race(tmp_path, payloads, payloads[1][: len(payloads[1]) // 2], ".pt", "gru", torch_mmap=True)


@pytest.mark.parametrize("change", ["size", "header"])
def test_a_file_rewritten_between_header_and_tensors_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The rewrite lands exactly between reading the header and reading the tensors: the load
    must not combine one version's header with the other's bytes."""
    import pyrnn.io

    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(3, 4, seed=0), path)
    if change == "size":
        other = pyrnn.GRU(3, 5, seed=1)  # a larger file
    else:
        other = pyrnn.GRU(3, 4, batch_first=True, seed=1)  # same size, another header
    replacement = _pyrnn_file(other, tmp_path)
    assert (len(replacement) == path.stat().st_size) == (change == "header")
    check_shapes = pyrnn.io._check_shapes

    def rewrite_then_check(*args: object) -> None:
        check_shapes(*args)
        with open(path, "r+b") as file:  # in place: same inode, as cp does
            file.truncate(0)
            file.write(replacement)

    monkeypatch.setattr(pyrnn.io, "_check_shapes", rewrite_then_check)
    with pytest.raises(pyrnn.FormatError, match="file changed while loading"):
        pyrnn.load(path)
    monkeypatch.undo()
    assert pyrnn.load(path).config == other.config  # the new version loads once complete


def _legacy_pt(tmp_path: Path) -> tuple[Path, dict]:
    torch = pytest.importorskip("torch")
    state = torch.nn.GRU(3, 4).state_dict()
    path = tmp_path / "legacy.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path, {key: value.numpy() for key, value in state.items()}


def test_pt_load_does_not_follow_torch_mmap_default(tmp_path: Path) -> None:
    """torch.load maps the file when torch's default says so (torch.utils.serialization
    config.load.mmap); pyrnn reads through its own open file, never mapped, in every case."""
    config = pytest.importorskip("torch.utils.serialization").config  # torch >= 2.5

    path, state = _legacy_pt(tmp_path)  # the legacy format cannot be mapped at all
    previous = config.load.mmap
    config.load.mmap = True
    try:
        module = pyrnn.load(path, kind="gru")
    finally:
        config.load.mmap = previous
    for key, value in state.items():
        np.testing.assert_array_equal(module.state_dict()[key], value)


# -- pyrnn.save: links, special files, permissions, names ------------------------------------
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX links, FIFOs and mode bits")


def _same_model(path: Path, module: pyrnn.Module) -> bool:
    loaded = pyrnn.load(path)
    return loaded.config == module.config and all(
        np.array_equal(loaded.state_dict()[key], value)
        for key, value in module.state_dict().items()
    )


@posix_only
def test_save_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "models" / "v2.safetensors"
    target.parent.mkdir()
    pyrnn.save(pyrnn.GRU(2, 3, seed=0), target)
    link = tmp_path / "current.safetensors"
    link.symlink_to(target)
    module = pyrnn.LSTM(3, 4, seed=1)
    pyrnn.save(module, link)
    assert link.is_symlink() and os.readlink(link) == str(target)  # the link is kept
    assert _same_model(target, module)  # the target is replaced
    assert sorted(p.name for p in target.parent.iterdir()) == ["v2.safetensors"]  # no temp left


@posix_only
def test_save_through_a_chain_of_relative_symlinks(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    target = tmp_path / "b" / "model.safetensors"
    pyrnn.save(pyrnn.GRU(2, 3, seed=0), target)
    (tmp_path / "b" / "latest").symlink_to("model.safetensors")
    (tmp_path / "a" / "link").symlink_to("../b/latest")
    module = pyrnn.GRUCell(2, 5, seed=2)
    pyrnn.save(module, tmp_path / "a" / "link")
    assert os.readlink(tmp_path / "a" / "link") == "../b/latest"
    assert os.readlink(tmp_path / "b" / "latest") == "model.safetensors"
    assert _same_model(target, module)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["link"]


@posix_only
def test_save_through_a_dangling_symlink_creates_its_target(tmp_path: Path) -> None:
    link = tmp_path / "model.safetensors"
    link.symlink_to("releases/new.safetensors")
    (tmp_path / "releases").mkdir()
    module = pyrnn.RNN(2, 3, seed=0)
    pyrnn.save(module, link)  # what open(link, "w") and torch.save do
    assert link.is_symlink()
    assert _same_model(tmp_path / "releases" / "new.safetensors", module)


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return "FIFO"


def _directory(path: Path) -> str:
    path.mkdir()
    return "directory"


def _socket(path: Path) -> str:
    import socket

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays
    return "socket"


def _device(path: Path) -> str:
    import stat

    try:  # a private copy of /dev/null (needs privilege: otherwise the FIFO case stands in)
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(path)
        return "FIFO"
    return "character device"


@posix_only
@pytest.mark.parametrize("make", [_fifo, _directory, _socket, _device])
def test_save_refuses_what_is_not_a_regular_file_and_leaves_it(make: object) -> None:
    import stat
    import tempfile

    # A short folder: a unix socket's path must fit in about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="pyrnn-") as folder:
        path = Path(folder) / "m.safetensors"
        what = make(path)  # type: ignore[operator]
        before = os.lstat(path)
        with pytest.raises(OSError, match=what) as error:
            pyrnn.save(pyrnn.GRU(2, 3), path)  # returns at once: a FIFO is never opened
        assert error.value.filename == str(path)
        after = os.lstat(path)
        assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (
            before.st_ino,
            stat.S_IFMT(before.st_mode),
        )
        assert sorted(p.name for p in Path(folder).iterdir()) == ["m.safetensors"]


@posix_only
def test_save_to_dev_null_is_refused_and_dev_null_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    import stat

    before = os.stat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    real_replace = os.replace

    def guarded(source: object, destination: object) -> None:
        # A safety net for this machine: a regression would otherwise replace /dev/null when
        # the tests run as root.
        if os.path.realpath(os.fsdecode(destination)) == "/dev/null":  # type: ignore[arg-type]
            raise AssertionError("pyrnn.save tried to replace /dev/null")
        real_replace(source, destination)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", guarded)
    with pytest.raises(OSError, match="character device, not a regular file"):
        pyrnn.save(pyrnn.GRU(2, 3), "/dev/null")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert after.st_ino == before.st_ino


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_save_keeps_the_permission_bits_of_the_file_it_replaces(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(2, 3), path)
    path.chmod(mode)
    pyrnn.save(pyrnn.GRU(2, 4), path)
    assert path.stat().st_mode & 0o7777 == mode
    assert pyrnn.load(path).config["hidden_size"] == 4


@pytest.mark.parametrize("length", [234, 250, 255])
def test_save_to_a_name_near_the_file_system_limit(tmp_path: Path, length: int) -> None:
    limit = os.pathconf(tmp_path, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    name = "m" * (min(length, limit) - len(".safetensors")) + ".safetensors"
    module = pyrnn.GRU(2, 3, seed=0)
    pyrnn.save(module, tmp_path / name)
    pyrnn.save(module, tmp_path / name)  # and over an existing file
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert _same_model(tmp_path / name, module)


@pytest.mark.skipif(not can_drop_privileges(), reason="needs POSIX and, under root, setpriv")
def test_save_into_a_read_only_folder_names_the_callers_path() -> None:
    # As a user the file system can refuse (root writes into read-only folders anyway).
    code = """
import os, pyrnn
path = os.path.join(os.getcwd(), "ro", "m.safetensors")
os.mkdir("ro")
pyrnn.save(pyrnn.GRU(2, 3), path)
os.chmod("ro", 0o500)
try:
    pyrnn.save(pyrnn.GRU(2, 3), path)
except PermissionError as error:
    assert error.filename == path, error.filename
    assert ".tmp" not in str(error) and ".pyrnn-" not in str(error), str(error)
    assert f"saving creates a new file in {os.path.dirname(path)} first" in str(error)
    print("refused")
"""
    with scratch_folder() as folder:
        result = run_python(code, folder)
    assert result.returncode == 0 and result.stdout.strip() == "refused", result.stderr


@pytest.mark.parametrize("step", ["create", "write", "replace"])
def test_save_errors_name_the_callers_path_not_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "m.safetensors"

    def fail(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(args[0]))

    if step == "create":
        real_open = os.open
        monkeypatch.setattr(
            os, "open", lambda p, *a, **k: fail(p) if ".tmp" in str(p) else real_open(p, *a, **k)
        )
    elif step == "write":
        monkeypatch.setattr(os, "fsync", lambda fd: fail(f"/proc/self/fd/{fd}"))
    else:
        monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError) as error:
        pyrnn.save(pyrnn.GRU(2, 3), path)
    monkeypatch.undo()
    assert error.value.filename == str(path), error.value
    assert error.value.errno == 13 and "Permission denied" in str(error.value)
    assert ".tmp" not in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


# -- paths of every type ---------------------------------------------------------------------
class _BytesPath:
    """An os.PathLike whose __fspath__ gives bytes, as open() accepts."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> bytes:
        return os.fsencode(self.path)


@pytest.mark.parametrize(
    "spell", [str, Path, os.fsencode, _BytesPath], ids=["str", "Path", "bytes", "PathLike-bytes"]
)
def test_paths_are_accepted_as_open_accepts_them(tmp_path: Path, spell: object) -> None:
    path = tmp_path / "m.safetensors"
    module = pyrnn.GRU(2, 3, seed=0)
    pyrnn.save(module, spell(path))  # type: ignore[operator]
    assert _same_model(path, module)
    assert pyrnn.load(spell(path)).config == module.config  # type: ignore[operator]
    with pytest.raises(FileNotFoundError) as error:
        pyrnn.load(spell(tmp_path / "absent.safetensors"))  # type: ignore[operator]
    assert error.value.filename == str(tmp_path / "absent.safetensors")


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are arbitrary bytes")
def test_a_bytes_file_name_that_is_not_utf8_round_trips(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/caf\xe9.safetensors"  # Latin-1, invalid UTF-8
    module = pyrnn.GRU(2, 3, seed=0)
    pyrnn.save(module, name)
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9.safetensors"]
    assert pyrnn.load(name).config == module.config


@pytest.mark.parametrize("path", [3, True, None, 1.5, ["m.safetensors"]])
def test_a_path_that_is_not_a_file_name_is_refused(path: object) -> None:
    # open() would take 3 as a file descriptor: refused, not read or replaced.
    for call in (lambda: pyrnn.load(path), lambda: pyrnn.save(pyrnn.GRU(2, 3), path)):
        with pytest.raises(TypeError, match=r"path: expected a str, bytes or os\.PathLike"):
            call()  # type: ignore[no-untyped-call]


@posix_only
@pytest.mark.parametrize("make", [_fifo, _socket, _device])
def test_load_refuses_a_special_file_without_waiting_on_it(make: object) -> None:
    import tempfile

    def hung(*args: object) -> None:
        raise TimeoutError("pyrnn.load waited on a special file")

    # A FIFO without a writer blocks open() for ever: the alarm turns a hang into a failure.
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with tempfile.TemporaryDirectory(prefix="pyrnn-") as folder:
            path = Path(folder) / "m.safetensors"
            what = make(path)  # type: ignore[operator]
            with pytest.raises(OSError, match=what) as error:
                pyrnn.load(path)
            assert error.value.filename == str(path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- files of other formats ------------------------------------------------------------------
def _torch_zip(tmp_path: Path) -> tuple[bytes, dict]:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    state = torch.nn.LSTM(3, 4).state_dict()
    path = tmp_path / "scratch.pt"
    torch.save(state, path)
    payload = path.read_bytes()
    path.unlink()
    return payload, {key: value.numpy() for key, value in state.items()}


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors", "model.ckpt", "m"])
def test_a_torch_checkpoint_loads_whatever_its_name(tmp_path: Path, name: str) -> None:
    payload, state = _torch_zip(tmp_path)
    path = tmp_path / name
    path.write_bytes(payload)
    module = pyrnn.load(path, kind="lstm")
    for key, value in state.items():
        np.testing.assert_array_equal(module.state_dict()[key], value)
    with pytest.raises(pyrnn.FormatError, match=r"a PyTorch checkpoint .*pass kind='lstm'"):
        pyrnn.load(path)


def test_a_legacy_torch_file_loads_whatever_its_name(tmp_path: Path) -> None:
    legacy, state = _legacy_pt(tmp_path)
    path = tmp_path / "model.bin"
    legacy.rename(path)
    module = pyrnn.load(path, kind="gru")
    for key, value in state.items():
        np.testing.assert_array_equal(module.state_dict()[key], value)


def test_a_safetensors_file_named_pt_loads(tmp_path: Path) -> None:
    module = pyrnn.GRU(2, 3, seed=0)
    path = tmp_path / "model.pt"
    pyrnn.save(module, path)
    assert pyrnn.load(path).config == module.config


def _npz(tmp_path: Path) -> bytes:
    path = tmp_path / "scratch.npz"
    np.savez(path, **pyrnn.GRU(2, 3).state_dict())
    payload = path.read_bytes()
    path.unlink()
    return payload


def _zip(tmp_path: Path) -> bytes:
    import zipfile

    path = tmp_path / "scratch.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "not a model")
    payload = path.read_bytes()
    path.unlink()
    return payload


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_npz, r"a numpy \.npz archive, not a safetensors file; load it with np\.load"),
        (_zip, r"a zip archive holding \['README.txt'\], neither a PyTorch checkpoint"),
        (lambda tmp: b"PK\x03\x04" + bytes(60), "starts like a zip archive but its directory"),
        (lambda tmp: __import__("pickle").dumps({"w": [1.0]}, 2), "a Python pickle .protocol 2"),
        (
            lambda tmp: __import__("pickle").dumps({"w": [0.5] * 9}, 5),
            "a Python pickle .protocol 5",
        ),
        (lambda tmp: b"\x89HDF\r\n\x1a\n" + bytes(100), "an HDF5 file"),
        (lambda tmp: b"\x93NUMPY\x01\x00" + bytes(100), r"a numpy \.npy array"),
    ],
    ids=["npz", "zip", "broken-zip", "pickle", "pickle5", "hdf5", "npy"],
)
@pytest.mark.parametrize("kind", [None, "gru"])
def test_files_of_other_formats_are_named_for_what_they_are(
    tmp_path: Path, make: object, message: str, kind: str | None
) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(make(tmp_path))  # type: ignore[operator]
    with pytest.raises(pyrnn.FormatError, match=message) as error:
        pyrnn.load(path, kind=kind)
    assert str(error.value).startswith(f"{path}: ")
    assert "header length" not in str(error.value)
