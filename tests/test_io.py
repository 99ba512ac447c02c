"""pyrnn.save / pyrnn.load: round trips of all six kinds, the exact header metadata, atomic
writes, and plain PyTorch state_dicts (whole models included) loaded by kind and prefix."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file as torch_save_file

import pyrnn

MODULES = {
    "rnn": lambda: pyrnn.RNN(
        5, 7, num_layers=2, nonlinearity="relu", bias=False, batch_first=True, seed=1
    ),
    "lstm": lambda: pyrnn.LSTM(
        5, 7, num_layers=3, bidirectional=True, proj_size=3, dropout=0.25, seed=2
    ),
    "gru": lambda: pyrnn.GRU(5, 7, bidirectional=True, batch_first=True, seed=3),
    "rnn_cell": lambda: pyrnn.RNNCell(5, 7, nonlinearity="relu", seed=4),
    "lstm_cell": lambda: pyrnn.LSTMCell(5, 7, bias=False, seed=5),
    "gru_cell": lambda: pyrnn.GRUCell(5, 7, seed=6),
}


def _outputs(module: pyrnn.Module) -> list[np.ndarray]:
    cell = module.config["kind"].endswith("_cell")
    x = np.random.default_rng(0).standard_normal((3, 5) if cell else (4, 3, 5))
    result = module(x.astype(np.float32))
    flat: list[np.ndarray] = []
    stack = [result]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(item)
        else:
            flat.append(item)
    return flat


@pytest.mark.parametrize("kind", list(MODULES))
def test_round_trip(tmp_path: Path, kind: str) -> None:
    module = MODULES[kind]()
    path = tmp_path / f"{kind}.safetensors"
    pyrnn.save(module, path)
    loaded = pyrnn.load(path)
    assert type(loaded) is type(module)
    assert loaded.config == module.config
    assert loaded.config["kind"] == kind
    original, restored = module.state_dict(), loaded.state_dict()
    assert list(restored) == list(original)
    for key, value in original.items():
        assert restored[key].dtype == np.float32
        assert restored[key].tobytes() == value.tobytes()  # bit-identical
    for a, b in zip(_outputs(loaded), _outputs(module), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", list(MODULES))
def test_header_metadata_is_exactly_the_format(tmp_path: Path, kind: str) -> None:
    module = MODULES[kind]()
    path = tmp_path / "m.safetensors"
    pyrnn.save(module, str(path))  # str and Path both accepted
    with safe_open(path, framework="np") as file:
        metadata = file.metadata()
        keys = set(file.keys())
        dtypes = {file.get_slice(k).get_dtype() for k in keys}
    assert set(metadata) == {"format", "version", "config"}
    assert metadata["format"] == "pyrnn"
    assert metadata["version"] == "1"
    assert json.loads(metadata["config"]) == module.config
    assert keys == set(module.state_dict())  # PyTorch's key names, nothing else
    assert dtypes == {"F32"}
    # read the raw header too: exactly the tensors plus __metadata__
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert header.pop("__metadata__") == metadata
    assert set(header) == keys


def test_config_holds_exactly_the_constructor_arguments() -> None:
    assert MODULES["lstm"]().config == {
        "kind": "lstm",
        "input_size": 5,
        "hidden_size": 7,
        "num_layers": 3,
        "bias": True,
        "batch_first": False,
        "dropout": 0.25,
        "bidirectional": True,
        "proj_size": 3,
    }
    assert MODULES["rnn_cell"]().config == {
        "kind": "rnn_cell",
        "input_size": 5,
        "hidden_size": 7,
        "bias": True,
        "nonlinearity": "relu",
    }
    assert set(MODULES["gru"]().config) == {
        "kind",
        "input_size",
        "hidden_size",
        "num_layers",
        "bias",
        "batch_first",
        "dropout",
        "bidirectional",
    }


def test_saved_file_loads_into_torch(tmp_path: Path) -> None:
    """A pyrnn file is an ordinary safetensors state_dict that torch modules accept."""
    from safetensors.torch import load_file

    module = MODULES["lstm"]()
    path = tmp_path / "m.safetensors"
    pyrnn.save(module, path)
    config = dict(module.config)
    del config["kind"]
    reference = torch.nn.LSTM(**config)
    reference.load_state_dict(load_file(path))
    reference.eval()  # dropout=0.25 acts in torch's training mode; pyrnn is inference
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x))
    np.testing.assert_allclose(module(x)[0], expected.numpy(), rtol=0, atol=1e-5)


# -- atomic writes ----------------------------------------------------------------------------
@pytest.mark.parametrize("failure", ["replace", "write", "fsync"])
def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    path = tmp_path / "model.safetensors"
    old = pyrnn.GRU(3, 4, seed=0)
    pyrnn.save(old, path)
    old_bytes = path.read_bytes()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device (simulated)")

    if failure == "replace":
        monkeypatch.setattr(os, "replace", fail)
    elif failure == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        real_fdopen = os.fdopen

        class HalfWriter:
            """Writes half of the payload, then fails: a crash mid-write."""

            def __init__(self, file: Any) -> None:
                self.file = file

            def __enter__(self) -> HalfWriter:
                return self

            def __exit__(self, *exc: object) -> None:
                self.file.close()

            def write(self, data: bytes) -> int:
                self.file.write(data[: len(data) // 2])
                self.file.flush()
                raise OSError(28, "No space left on device (simulated)")

            def __getattr__(self, name: str) -> Any:
                return getattr(self.file, name)

        monkeypatch.setattr(os, "fdopen", lambda *a, **k: HalfWriter(real_fdopen(*a, **k)))

    with pytest.raises(OSError, match="simulated"):
        pyrnn.save(pyrnn.GRU(3, 4, seed=1), path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temp left
    assert path.read_bytes() == old_bytes  # the old model is intact
    restored = pyrnn.load(path)
    for key, value in old.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[key], value)


def test_failed_first_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> None:
        raise OSError(5, "I/O error (simulated)")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        pyrnn.save(pyrnn.LSTM(2, 3), tmp_path / "new.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(3, 4), path)
    pyrnn.save(pyrnn.LSTMCell(2, 5), path)
    assert pyrnn.load(path).config["kind"] == "lstm_cell"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


# -- plain PyTorch state_dicts by prefix ------------------------------------------------------
class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(6, 8)
        self.rnn = torch.nn.LSTM(8, 12, num_layers=2, bidirectional=True, proj_size=5)


class Model(torch.nn.Module):
    """A whole model: the recurrent part is one submodule among others."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.head = torch.nn.Linear(10, 3)
        self.decoder = torch.nn.GRU(10, 4)  # same key names under another prefix


def test_whole_model_state_dict_by_prefix(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Model()
    path = tmp_path / "model.safetensors"
    torch_save_file(model.state_dict(), path)

    lstm = pyrnn.load(path, kind="lstm", prefix="encoder.rnn.")
    assert isinstance(lstm, pyrnn.LSTM)
    assert lstm.config == {
        "kind": "lstm",
        "input_size": 8,
        "hidden_size": 12,
        "num_layers": 2,
        "bias": True,
        "batch_first": False,
        "dropout": 0.0,
        "bidirectional": True,
        "proj_size": 5,
    }
    for key, value in model.encoder.rnn.state_dict().items():
        assert lstm.state_dict()[key].tobytes() == value.numpy().tobytes()
    x = np.random.default_rng(1).standard_normal((6, 2, 8)).astype(np.float32)
    with torch.no_grad():
        expected, (h, c) = model.encoder.rnn(torch.from_numpy(x))
    out, (hn, cn) = lstm(x)
    for actual, wanted in ((out, expected), (hn, h), (cn, c)):
        assert np.abs(actual - wanted.numpy()).max() <= 1e-5

    gru = pyrnn.load(path, kind="gru", prefix="decoder.", batch_first=True)
    assert gru.config["batch_first"] is True and gru.config["input_size"] == 10
    # the whole state_dict without a prefix is not one LSTM: the stray keys are named
    with pytest.raises(pyrnn.FormatError, match=r"no 'weight_ih_l0' under the prefix"):
        pyrnn.load(path, kind="lstm")
    with pytest.raises(pyrnn.FormatError, match=r"no 'weight_ih_l0' .* found \['embed.bias'"):
        pyrnn.load(path, kind="lstm", prefix="encoder.")


TORCH_KINDS = [
    ("rnn", lambda: torch.nn.RNN(4, 6, 3, nonlinearity="relu"), {"nonlinearity": "relu"}),
    ("rnn", lambda: torch.nn.RNN(4, 6, bias=False, bidirectional=True), {}),
    ("lstm", lambda: torch.nn.LSTM(4, 6, num_layers=2, proj_size=1), {}),
    ("lstm", lambda: torch.nn.LSTM(1, 1, bias=False), {}),
    ("gru", lambda: torch.nn.GRU(4, 6, num_layers=3, bidirectional=True), {}),
    ("rnn_cell", lambda: torch.nn.RNNCell(4, 6, nonlinearity="relu"), {"nonlinearity": "relu"}),
    ("lstm_cell", lambda: torch.nn.LSTMCell(4, 6, bias=False), {}),
    ("gru_cell", lambda: torch.nn.GRUCell(4, 6), {}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "make", "options"), TORCH_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_every_kind_by_prefix(
    tmp_path: Path, kind: str, make: Any, options: dict[str, Any], dtype: torch.dtype
) -> None:
    torch.manual_seed(1)
    reference = make()
    state = {f"net.{k}": v.to(dtype) for k, v in reference.state_dict().items()}
    state["other.weight"] = torch.ones(2, 2)
    path = tmp_path / "plain.safetensors"
    torch_save_file(state, path)
    module = pyrnn.load(path, kind=kind, prefix="net.", **options)
    expected_config = {"kind": kind, "input_size": reference.input_size}
    expected_config |= {"hidden_size": reference.hidden_size, "bias": reference.bias}
    if kind.startswith("rnn"):
        expected_config["nonlinearity"] = reference.nonlinearity
    if not kind.endswith("_cell"):
        expected_config |= {
            "num_layers": reference.num_layers,
            "bidirectional": reference.bidirectional,
            "batch_first": False,
            "dropout": 0.0,
        }
    if kind == "lstm":
        expected_config["proj_size"] = reference.proj_size
    assert module.config == expected_config
    for key, value in reference.state_dict().items():  # the file's values, made float32
        np.testing.assert_array_equal(module.state_dict()[key], value.to(dtype).float().numpy())


def test_pyrnn_file_accepts_arguments_that_repeat_what_it_holds(tmp_path: Path) -> None:
    """A file with pyrnn metadata describes itself; kind, nonlinearity and batch_first may
    repeat it (code that passes them for every file keeps working)."""
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.RNN(3, 4, nonlinearity="relu", batch_first=True), path)
    loaded = pyrnn.load(path, kind="rnn", nonlinearity="relu", batch_first=True)
    assert loaded.config["nonlinearity"] == "relu" and loaded.config["batch_first"] is True
    pyrnn.save(pyrnn.LSTMCell(3, 4), path)
    assert pyrnn.load(path, "lstm_cell", "", nonlinearity="tanh", batch_first=False)


@pytest.mark.parametrize(
    ("module", "arguments", "message"),
    [
        (pyrnn.GRUCell(3, 4), {"kind": "lstm"}, "kind: .* holds a gru_cell .*got kind='lstm'"),
        (pyrnn.GRU(3, 4), {"kind": "gru_cell"}, "kind: .* holds a gru .*got kind='gru_cell'"),
        (pyrnn.GRU(3, 4), {"prefix": "rnn."}, "prefix: applies only to plain PyTorch state_"),
        (
            pyrnn.RNN(3, 4, nonlinearity="relu"),
            {"nonlinearity": "tanh"},
            "nonlinearity: .* holds a rnn with nonlinearity='relu', got nonlinearity='tanh'",
        ),
        (
            pyrnn.LSTM(3, 4),
            {"nonlinearity": "relu"},
            "nonlinearity: .* holds a lstm with nonlinearity='tanh', got nonlinearity='relu'",
        ),
        (
            pyrnn.GRU(3, 4),
            {"batch_first": True},
            "batch_first: .* holds a gru with batch_first=False, got batch_first=True",
        ),
        (pyrnn.GRU(3, 4), {"kind": "transformer"}, "kind: expected one of rnn, lstm"),
    ],
)
def test_pyrnn_file_refuses_arguments_that_contradict_it(
    tmp_path: Path, module: pyrnn.Module, arguments: dict[str, Any], message: str
) -> None:
    path = tmp_path / "m.safetensors"
    pyrnn.save(module, path)
    with pytest.raises(ValueError, match=message) as error:
        pyrnn.load(path, **arguments)
    assert not isinstance(error.value, pyrnn.FormatError)  # the argument is wrong, not the file


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"kind": "lstm", "nonlinearity": "relu"}, ValueError, "only rnn and rnn_cell take"),
        ({"kind": "gru_cell", "batch_first": True}, ValueError, "a gru_cell takes one step"),
        ({"kind": "rnn", "nonlinearity": "sigmoid"}, ValueError, "nonlinearity: expected 'tanh'"),
        ({"kind": "rnn", "batch_first": 1}, TypeError, "batch_first: expected a bool, got int"),
        ({"kind": "rnn", "prefix": None}, TypeError, "prefix: expected a str, got NoneType"),
    ],
)
def test_state_dict_options_a_kind_cannot_honour_are_refused(
    tmp_path: Path, arguments: dict[str, Any], error: type, message: str
) -> None:
    path = tmp_path / "plain.safetensors"
    torch_save_file(torch.nn.LSTMCell(2, 3).state_dict(), path)
    with pytest.raises(error, match=message):
        pyrnn.load(path, **arguments)


def test_state_dict_options_keep_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    torch_save_file(torch.nn.RNN(2, 3).state_dict(), path)
    config = pyrnn.load(path, kind="rnn").config
    assert config["nonlinearity"] == "tanh" and config["batch_first"] is False
    torch_save_file(torch.nn.LSTMCell(2, 3).state_dict(), path)
    assert pyrnn.load(path, kind="lstm_cell", nonlinearity="tanh", batch_first=False)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_file_has_ordinary_permissions(tmp_path: Path) -> None:
    """Like open() or torch.save: 0666 minus the umask (a private 0600 temp file renamed into
    place would make models unreadable to other users, e.g. a serving account)."""
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(2, 3), path)
    reference = tmp_path / "reference.bin"
    reference.write_bytes(b"")
    assert path.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
