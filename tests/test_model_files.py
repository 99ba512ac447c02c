"""Model files of format version 2: a converted pyrnn.Model saved by pyrnn.save (its graph as JSON
in the header metadata, its constants as tensors under the torch state_dict names) and loaded by
pyrnn.load, bit for bit, through the same reader as version 1 files (which keep loading as
before). Hostile graph files are refused with FormatError naming the file and the problem: the
committed corpus covers most (tests/test_hostile_files.py); here, what needs a file made on the
fly, the load-time shape probe, and save's own refusals and atomic replacement."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from test_capture import (
    AttentionPooling,
    BiGRUClassifier,
    Constants,
    ConvFrontEnd,
    LanguageModel,
    Positional,
    SpeakerEncoder,
    Structured,
    TokenArithmetic,
    features,
)
from torch import nn

import pyrnn
from pyrnn.graph import Graph, InputSpec, Node
from pyrnn.io import read_header

Make = Callable[[int, int], tuple[torch.Tensor, ...]]


def _tokens(vocabulary: int) -> Make:
    return lambda n, t: (torch.randint(0, vocabulary, (n, t)),)


# name -> (torch module factory, inputs for (batch, steps))
FAMILIES: dict[str, tuple[Callable[[], nn.Module], Make]] = {
    "speaker_encoder": (SpeakerEncoder, features(40)),
    "bidirectional_gru": (BiGRUClassifier, features(20)),
    "language_model": (LanguageModel, _tokens(50)),
    "conv_front_end": (
        lambda: ConvFrontEnd(nn.Conv1d(8, 10, 3, padding=1), nn.MaxPool1d(2)),
        lambda n, t: (torch.randn(n, 8, t),),
    ),
    "attention_pooling": (AttentionPooling, lambda n, t: (torch.randn(n, 5, t),)),
    "structured_outputs": (Structured, features(4)),
    "int64_arithmetic": (TokenArithmetic, _tokens(40)),
    "positional_table": (Positional, features(6)),
    "anonymous_constants": (Constants, lambda n, t: (torch.randn(n, 3),)),
}


def convert(name: str) -> tuple[pyrnn.Model, nn.Module, Make]:
    torch.manual_seed(0)
    factory, make = FAMILIES[name]
    module = factory().eval()
    model = pyrnn.from_torch(module, *make(4, 30))
    assert isinstance(model, pyrnn.Model)
    return model, module, make


def assert_identical(got: Any, want: Any) -> None:
    """Same structure, dtypes, shapes and bits."""
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_identical(got[key], want[key])
    elif isinstance(want, tuple | list):
        assert len(got) == len(want)
        for part, expected in zip(got, want, strict=True):
            assert_identical(part, expected)
    else:
        assert got is None and want is None


def metadata(path: Path) -> dict[str, str]:
    return dict(read_header(path)["__metadata__"])


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_converted_model_round_trips_bit_for_bit(tmp_path: Path, name: str) -> None:
    model, _, make = convert(name)
    path = tmp_path / "model.safetensors"
    pyrnn.save(model, path)
    loaded = pyrnn.load(path)
    assert isinstance(loaded, pyrnn.Model)
    assert loaded.graph == model.graph
    assert repr(loaded) == repr(model)
    saved, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(saved)
    for key, array in saved.items():
        assert_identical(restored[key], array)
    for batch, steps in [(3, 17), (1, 5), (4, 30)]:
        arrays = [x.numpy() for x in make(batch, steps)]
        assert_identical(loaded(*arrays), model(*arrays))

    meta = metadata(path)
    assert meta["format"] == "pyrnn" and meta["version"] == "2"
    assert json.loads(meta["graph"]) == model.graph.to_json()
    assert "config" not in meta


def test_tensors_are_stored_under_the_torch_state_dict_names(tmp_path: Path) -> None:
    model, module, _ = convert("speaker_encoder")
    pyrnn.save(model, tmp_path / "m.safetensors")
    header = read_header(tmp_path / "m.safetensors")
    torch_names = set(module.state_dict())
    assert set(header) - {"__metadata__"} == torch_names
    assert set(pyrnn.load(tmp_path / "m.safetensors").state_dict()) == torch_names
    assert {"lstm.weight_ih_l0", "lstm.bias_hh_l2", "fc.weight", "fc.bias"} <= torch_names


def test_integer_constants_are_stored_as_int64(tmp_path: Path) -> None:
    model, _, _ = convert("int64_arithmetic")
    pyrnn.save(model, tmp_path / "m.safetensors")
    header = read_header(tmp_path / "m.safetensors")
    dtypes = {key: entry["dtype"] for key, entry in header.items() if key != "__metadata__"}
    assert dtypes["embed.weight"] == "F32"
    integers = [key for key, dtype in dtypes.items() if dtype == "I64"]
    assert integers, dtypes
    loaded = pyrnn.load(tmp_path / "m.safetensors").state_dict()
    assert all(loaded[key].dtype == np.int64 for key in integers)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_float16_and_float64_tensors_load_as_float32(tmp_path: Path, dtype: str) -> None:
    model, _, make = convert("bidirectional_gru")
    path = tmp_path / "m.safetensors"
    pyrnn.save(model, path)
    wider = {key: value.astype(dtype) for key, value in model.state_dict().items()}
    save_file(wider, path, metadata=metadata(path))
    loaded = pyrnn.load(path)
    assert isinstance(loaded, pyrnn.Model)
    for key, value in loaded.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, wider[key].astype(np.float32))
    x = make(2, 9)[0].numpy()
    reference = pyrnn.Model(model.graph, {k: v.astype(np.float32) for k, v in wider.items()})
    assert_identical(loaded(x), reference(x))


def test_the_six_recurrent_modules_still_save_as_version_1(tmp_path: Path) -> None:
    module = pyrnn.LSTM(3, 4, num_layers=2, seed=0)
    pyrnn.save(module, tmp_path / "m.safetensors")
    meta = metadata(tmp_path / "m.safetensors")
    assert meta["version"] == "1" and "graph" not in meta
    assert json.loads(meta["config"]) == module.config
    assert isinstance(pyrnn.load(tmp_path / "m.safetensors"), pyrnn.LSTM)


def test_the_committed_default_model_is_a_version_1_file_that_loads() -> None:
    path = Path(pyrnn.__file__).parent / "models" / "default.safetensors"
    assert metadata(path)["version"] == "1"
    module = pyrnn.load(path)
    assert isinstance(module, pyrnn.LSTM)
    assert module.config["input_size"] == 40 and module.config["hidden_size"] == 128


# -- arguments that describe recurrent modules ---------------------------------------------
@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"kind": "lstm"}, "kind"),
        ({"prefix": "encoder."}, "prefix"),
        ({"nonlinearity": "tanh"}, "nonlinearity"),
        ({"batch_first": False}, "batch_first"),
        ({"kind": "gru", "batch_first": True}, "kind"),
    ],
)
def test_module_arguments_are_refused_for_a_graph_file(
    tmp_path: Path, arguments: dict[str, Any], name: str
) -> None:
    model, _, _ = convert("anonymous_constants")
    path = tmp_path / "m.safetensors"
    pyrnn.save(model, path)
    with pytest.raises(ValueError, match=f"^{name}: .* holds a pyrnn.Model") as error:
        pyrnn.load(path, **arguments)
    assert not isinstance(error.value, pyrnn.FormatError)
    assert str(path) in str(error.value)


# -- hostile files made on the fly -----------------------------------------------------------
def graph_file(path: Path, graph: dict[str, Any], tensors: dict[str, np.ndarray]) -> Path:
    """A version 2 file written by hand (not by pyrnn.save, which refuses bad graphs)."""
    text = json.dumps(graph, separators=(",", ":"))
    save_file(tensors, path, metadata={"format": "pyrnn", "version": "2", "graph": text})
    return path


def relu_chain(count: int) -> dict[str, Any]:
    nodes = [
        {
            "op": "relu",
            "inputs": ["x" if i == 0 else f"v{i - 1}"],
            "outputs": [f"v{i}"],
            "attrs": {},
            "source": "",
        }
        for i in range(count)
    ]
    return {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4]}],
        "outputs": {"tensor": f"v{count - 1}"},
        "constants": [],
        "nodes": nodes,
    }


@pytest.mark.parametrize("key", ["nodes", "inputs", "constants"])
def test_huge_counts_are_refused_before_the_graph_is_built(tmp_path: Path, key: str) -> None:
    graph = relu_chain(1)
    graph[key] = [0] * 100_001  # counted before any item is looked at
    path = graph_file(tmp_path / "m.safetensors", graph, {})
    with pytest.raises(pyrnn.FormatError, match=f"100001 {key} exceed the limit of 100000"):
        pyrnn.load(path)


def shared_weight_graph(uses: int) -> dict[str, Any]:
    """x (N, 256) through `uses` linear layers that all use one (256, 256) weight."""
    nodes = [
        {
            "op": "linear",
            "inputs": ["x" if i == 0 else f"v{i - 1}", "w", None],
            "outputs": [f"v{i}"],
            "attrs": {},
            "source": "",
        }
        for i in range(uses)
    ]
    return {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 256]}],
        "outputs": {"tensor": f"v{uses - 1}"},
        "constants": ["w"],
        "nodes": nodes,
    }


def test_a_weight_packed_once_per_use_beyond_memory_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One 256 KiB weight in the file; each of 300 uses packs its own copy: ~180 MiB.
    import pyrnn.io

    weight = np.eye(256, dtype=np.float32)
    path = graph_file(tmp_path / "m.safetensors", shared_weight_graph(300), {"w": weight})
    monkeypatch.setattr(pyrnn.io, "physical_memory_bytes", lambda: 64 * 2**20)
    read_tensors = pyrnn.io._read_tensors
    monkeypatch.setattr(pyrnn.io, "_read_tensors", lambda *a: pytest.fail("tensors were read"))
    with pytest.raises(
        pyrnn.FormatError,
        match=r"building the graph would need about 0\.\d GiB \(its 1 constants are used 300 "
        r"times by its nodes, each use packed anew\), more than this machine's physical memory",
    ):
        pyrnn.load(path)
    monkeypatch.setattr(pyrnn.io, "_read_tensors", read_tensors)
    monkeypatch.setattr(pyrnn.io, "physical_memory_bytes", lambda: 2**30)
    x = np.random.default_rng(0).standard_normal((2, 256)).astype(np.float32)
    np.testing.assert_array_equal(pyrnn.load(path)(x), x)


def test_a_long_graph_within_the_limit_loads_and_runs(tmp_path: Path) -> None:
    path = graph_file(tmp_path / "m.safetensors", relu_chain(5000), {})
    model = pyrnn.load(path)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(model(x), np.maximum(x, 0))


def test_every_truncation_of_a_graph_file_is_refused(tmp_path: Path) -> None:
    from test_hostile_files import make_corpus

    payload = make_corpus.valid_graph_file()
    path = tmp_path / "cut.safetensors"
    for size in range(len(payload)):
        path.write_bytes(payload[:size])
        with pytest.raises(pyrnn.FormatError):
            pyrnn.load(path)
    path.write_bytes(payload)
    assert isinstance(pyrnn.load(path), pyrnn.Model)


def test_a_graph_file_rewritten_between_header_and_tensors_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyrnn.io

    path = tmp_path / "m.safetensors"
    pyrnn.save(convert("bidirectional_gru")[0], path)
    other = tmp_path / "other.safetensors"
    pyrnn.save(convert("speaker_encoder")[0], other)
    replacement = other.read_bytes()
    read_tensors = pyrnn.io._read_tensors

    def rewrite_then_read(*args: Any) -> Any:
        with open(path, "r+b") as file:  # in place: same inode, as cp does
            file.truncate(0)
            file.write(replacement)
        return read_tensors(*args)

    monkeypatch.setattr(pyrnn.io, "_read_tensors", rewrite_then_read)
    with pytest.raises(pyrnn.FormatError, match="file changed while loading"):
        pyrnn.load(path)
    monkeypatch.undo()
    assert set(pyrnn.load(path).state_dict()) == set(pyrnn.load(other).state_dict())


# -- the shape probe at load -------------------------------------------------------------------
def conv_graph(kernel: int, ranges: list[tuple[int, int, int | None]]) -> pyrnn.Model:
    """x (N, 2, L) -> conv1d (3 channels, no padding): needs L >= kernel."""
    graph = Graph(
        [InputSpec("x", "float32", [None, 2, None], ranges)],
        {"tensor": "y"},
        ["conv.weight", "conv.bias"],
        [
            Node(
                "conv1d",
                ["x", "conv.weight", "conv.bias"],
                ["y"],
                {"stride": 1, "padding": [0, 0], "dilation": 1, "groups": 1},
            )
        ],
    )
    rng = np.random.default_rng(0)
    weights = {
        "conv.weight": rng.standard_normal((3, 2, kernel)).astype(np.float32),
        "conv.bias": rng.standard_normal(3).astype(np.float32),
    }
    return pyrnn.Model(graph, weights)


@pytest.mark.parametrize(
    ("kernel", "ranges"),
    [
        (20, []),  # fails at the first probe size (8), fits the second (64)
        (100, [(2, 100, None)]),  # its lower bound is the probe
        (5, [(2, 1, 6)]),  # an upper bound below the first probe size
    ],
)
def test_valid_models_that_need_larger_inputs_load(
    tmp_path: Path, kernel: int, ranges: list[tuple[int, int, int | None]]
) -> None:
    model = conv_graph(kernel, ranges)
    pyrnn.save(model, tmp_path / "m.safetensors")
    loaded = pyrnn.load(tmp_path / "m.safetensors")
    x = np.random.default_rng(1).standard_normal((2, 2, kernel + 1)).astype(np.float32)
    if not ranges or ranges[0][2] is None or ranges[0][2] >= kernel + 1:
        assert_identical(loaded(x), model(x))


def test_a_model_that_fits_no_probed_size_is_refused(tmp_path: Path) -> None:
    # A kernel of 100 with no declared bound: no input of 8 or 64 steps fits, and nothing says
    # larger ones exist (a converted model would declare the bound).
    pyrnn.save(conv_graph(100, []), tmp_path / "m.safetensors")
    with pytest.raises(
        pyrnn.FormatError, match=r"the graph cannot run: with inputs x \(8, 2, 8\):"
    ):
        pyrnn.load(tmp_path / "m.safetensors")


PEAK_RSS = """
import resource, sys
import pyrnn
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pyrnn.load(sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB on Linux
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_the_probe_allocates_nothing(tmp_path: Path) -> None:
    # An intermediate tensor of 2**27 floats (512 MiB) at every input size: a plan would
    # allocate it; the probe infers shapes only. Measured in a fresh process, whose peak is low.
    graph = relu_chain(1)
    graph["nodes"].append(
        {
            "op": "full",
            "inputs": [2**27],
            "outputs": ["f"],
            "attrs": {"value": 1.0, "dtype": "float32"},
            "source": "",
        }
    )
    graph["nodes"].append(
        {
            "op": "sum",
            "inputs": ["f"],
            "outputs": ["total"],
            "attrs": {"dims": [], "keepdim": False},
            "source": "",
        }
    )
    graph["outputs"] = {"tuple": [{"tensor": "v0"}, {"tensor": "total"}]}
    path = graph_file(tmp_path / "m.safetensors", graph, {})
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the source tree, whose pyrnn/ lacks the extension
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 128 * 1024, "loading allocated the probe's tensors"


# -- saving ------------------------------------------------------------------------------------
def test_save_refuses_a_graph_its_file_could_not_hold(tmp_path: Path) -> None:
    graph = Graph(
        [InputSpec("x", "float32", [None, 4])],
        {"tensor": "y"},
        [],
        [Node("leaky_relu", ["x"], ["y"], {"negative_slope": float("nan")})],
    )
    model = pyrnn.Model(graph, {})
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="the model's graph cannot be saved"):
        pyrnn.save(model, path)
    assert not path.exists()


def test_save_refuses_a_constant_named_like_the_metadata(tmp_path: Path) -> None:
    graph = Graph(
        [InputSpec("x", "float32", [None, 4])],
        {"tensor": "y"},
        ["__metadata__"],
        [Node("add", ["x", "__metadata__"], ["y"])],
    )
    model = pyrnn.Model(graph, {"__metadata__": np.ones(4, np.float32)})
    with pytest.raises(ValueError, match="'__metadata__' cannot be stored"):
        pyrnn.save(model, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(
        TypeError, match=r"module: expected a pyrnn module or pyrnn\.Model, got dict"
    ):
        pyrnn.save({}, tmp_path / "m.safetensors")  # type: ignore[arg-type]


posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")


@posix_only
def test_saving_a_model_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "models" / "v1.safetensors"
    target.parent.mkdir()
    pyrnn.save(pyrnn.GRU(2, 3, seed=0), target)
    link = tmp_path / "current.safetensors"
    link.symlink_to(target)
    model, _, make = convert("conv_front_end")
    pyrnn.save(model, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["v1.safetensors"]
    x = make(2, 12)[0].numpy()
    assert_identical(pyrnn.load(target)(x), model(x))


@posix_only
def test_saving_a_model_keeps_the_permission_bits_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(2, 3, seed=0), path)
    path.chmod(0o640)
    pyrnn.save(convert("anonymous_constants")[0], path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert isinstance(pyrnn.load(path), pyrnn.Model)


def test_a_failed_model_save_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.safetensors"
    pyrnn.save(pyrnn.GRU(2, 3, seed=0), path)
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError) as error:
        pyrnn.save(convert("anonymous_constants")[0], path)
    monkeypatch.undo()
    assert error.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@posix_only
def test_saving_a_model_over_a_directory_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m.safetensors"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        pyrnn.save(convert("anonymous_constants")[0], folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


# -- other readers of model files --------------------------------------------------------------
def test_pyrnn_bench_says_a_graph_file_is_not_a_recurrent_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyrnn.cli import main

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the benchmark started")

    monkeypatch.setattr("pyrnn.bench.run_bench", started)
    path = tmp_path / "m.safetensors"
    pyrnn.save(convert("anonymous_constants")[0], path)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--model", str(path)])
    assert exit_info.value.code == 2
    assert "holds a Model (a converted graph); pyrnn bench measures the recurrent modules" in (
        capsys.readouterr().err
    )


def test_a_loaded_model_streams_as_the_original(tmp_path: Path) -> None:
    model, _, make = convert("language_model")
    pyrnn.save(model, tmp_path / "m.safetensors")
    loaded = pyrnn.load(tmp_path / "m.safetensors")
    assert isinstance(loaded, pyrnn.Model)
    tokens = make(2, 9)[0].numpy()
    original, restored = model.stream(batch=2), loaded.stream(batch=2)
    for t in range(tokens.shape[1]):
        assert_identical(restored.step(tokens[:, t]), original.step(tokens[:, t]))
