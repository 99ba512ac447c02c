"""Hostile model files: every malformed file of the committed corpus (tests/hostile/corpus, made
by tests/hostile/make_corpus.py), every truncation of a valid file, malicious pickles and absurd
sizes are refused with a clear error, without running code or allocating by a lying size."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pyrnn

HOSTILE = Path(__file__).resolve().parent / "hostile"
CORPUS = HOSTILE / "corpus"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "MANIFEST.json").read_text())
# Loading a few-hundred-byte file may use a little memory; a lying size would need gigabytes.
PEAK_LIMIT = 16 * 2**20
# torch is optional for pyrnn: only .pt files need it (and the corpus generator, which writes some).
HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is optional; .pt files need it")
if HAVE_TORCH:
    # Imported now: the first .pt load would import it, allocating far more than a load may.
    import torch  # noqa: F401


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_corpus", HOSTILE / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_corpus", module)
    spec.loader.exec_module(module)
    return module


make_corpus = _generator()


def _load_measured(path: Path, kind: str | None) -> tuple[BaseException | None, int]:
    """Loads `path`, returning the exception raised (or None) and the peak traced allocation."""
    tracemalloc.start()
    try:
        pyrnn.load(path, kind=kind)
    except BaseException as error:
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return None, peak


@needs_torch
def test_corpus_is_what_the_generator_makes() -> None:
    built = make_corpus.build()
    committed = {path.name for path in CORPUS.iterdir()}
    assert committed == set(built), "rerun tests/hostile/make_corpus.py"
    for name, payload in built.items():
        assert (CORPUS / name).read_bytes() == payload, f"{name} differs: rerun make_corpus.py"
    assert len(MANIFEST) >= 30


def test_the_base_file_loads() -> None:
    module = pyrnn.load(CORPUS / "valid.safetensors")
    assert isinstance(module, pyrnn.RNN)
    assert module.config == make_corpus.CONFIG
    for key, value in make_corpus.weights().items():
        np.testing.assert_array_equal(getattr(module, key), value)


def _rnn_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The base graph's tanh RNN (batch first) in numpy: every step's h, and the last."""
    h = np.zeros((x.shape[0], 3), np.float64)
    steps = []
    for t in range(x.shape[1]):
        h = np.tanh(
            x[:, t] @ w["rnn.weight_ih_l0"].T
            + w["rnn.bias_ih_l0"]
            + h @ w["rnn.weight_hh_l0"].T
            + w["rnn.bias_hh_l0"]
        )
        steps.append(h)
    return np.stack(steps, 1), h


def test_the_base_graph_file_loads_and_computes_its_graph() -> None:
    model = pyrnn.load(CORPUS / "valid_graph.safetensors")
    assert isinstance(model, pyrnn.Model)
    constants = make_corpus.graph_constants()
    assert model.state_dict().keys() == constants.keys()
    for key, value in constants.items():
        assert model.state_dict()[key].dtype == value.dtype
        np.testing.assert_array_equal(model.state_dict()[key], value)
    x = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    ids = np.array([0, 3, 1])
    logits, parts = model(x, ids)
    _, last = _rnn_reference(x.astype(np.float64), constants)
    expected = last @ constants["fc.weight"].T + constants["fc.bias"]
    # float32 against float64 over 5 steps of 3 units: a few ulps of values of size ~1.
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["h"][0], last, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(parts["vectors"], constants["embed.weight"][ids + 1])
    with pytest.raises(ValueError, match="index"):
        model(x, np.array([4]))  # shifted to 5, past the 5 rows of the table


def test_the_quantized_base_files_load() -> None:
    module = pyrnn.load(CORPUS / "valid_int8.safetensors")
    assert isinstance(module, pyrnn.RNN) and module.weight_dtype == "int8"
    for key, value in make_corpus.quantized_weights().items():
        assert getattr(module, key).dtype == value.dtype
        np.testing.assert_array_equal(getattr(module, key), value)
    model = pyrnn.load(CORPUS / "valid_graph_int8.safetensors")
    assert isinstance(model, pyrnn.Model) and model.weight_dtype == "int8"
    assert model.graph.quantized == make_corpus.GRAPH_QUANTIZED
    constants = make_corpus.quantized_graph_constants()
    assert model.state_dict().keys() == constants.keys()
    for key, value in constants.items():
        np.testing.assert_array_equal(model.state_dict()[key], value)


def test_every_truncation_of_a_quantized_file_is_refused(tmp_path: Path) -> None:
    payload = make_corpus.quantized_file()
    assert _truncations(payload, tmp_path, ".safetensors", None) == len(payload)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=[needs_torch] if name.endswith(".pt") else []) for name in MANIFEST],
)
def test_corpus_file_is_refused(name: str) -> None:
    case = MANIFEST[name]
    error, peak = _load_measured(CORPUS / name, case["kind"])
    assert isinstance(error, pyrnn.FormatError), f"{name}: got {error!r}"
    message = str(error)
    assert case["expect"] in message, f"{name}: message does not name the problem: {message}"
    assert str(CORPUS / name) in message, "the message names the file"
    assert peak < PEAK_LIMIT, f"{name}: loading allocated {peak} bytes"
    assert "PYRNN_PWNED" not in os.environ, f"{name}: a pickle ran code"


def _truncations(payload: bytes, tmp_path: Path, suffix: str, kind: str | None) -> int:
    path = tmp_path / f"cut{suffix}"
    for size in range(len(payload)):
        path.write_bytes(payload[:size])
        with pytest.raises(pyrnn.FormatError):
            pyrnn.load(path, kind=kind)
    return len(payload)


def test_every_truncation_of_a_pyrnn_file_is_refused(tmp_path: Path) -> None:
    payload = make_corpus.valid_file()
    assert _truncations(payload, tmp_path, ".safetensors", None) == len(payload)
    (tmp_path / "whole.safetensors").write_bytes(payload)
    pyrnn.load(tmp_path / "whole.safetensors")  # the untruncated file loads


@needs_torch
def test_every_truncation_of_a_pt_file_is_refused(tmp_path: Path) -> None:
    payload = make_corpus.torch_save(make_corpus.torch_state())
    assert _truncations(payload, tmp_path, ".pt", "rnn") == len(payload)
    (tmp_path / "whole.pt").write_bytes(payload)
    module = pyrnn.load(tmp_path / "whole.pt", kind="rnn")
    for key, value in make_corpus.weights().items():
        np.testing.assert_array_equal(getattr(module, key), value)


class _MakesDirectory:
    """Unpickling this creates a directory: the visible side effect of code execution."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@needs_torch
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"weight_ih_l0": _MakesDirectory(marker)}
    if container == "zip":
        data = make_corpus.torch_zip(payload)
    else:
        data = pickle.dumps(payload, protocol=2)
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    with pytest.raises(pyrnn.FormatError, match=r"refused by torch\.load"):
        pyrnn.load(path, kind="rnn")
    assert not marker.exists(), "loading ran the pickle's code"
    # The payload is live: a plain unpickler does run it (so the test above can fail).
    if container == "legacy":
        pickle.loads(data)
    else:
        import torch

        torch.load(path, weights_only=False)
    assert marker.is_dir()


@needs_torch
def test_pt_without_kind_asks_for_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(make_corpus.torch_save(make_corpus.torch_state()))
    with pytest.raises(pyrnn.FormatError, match="pass kind='lstm'"):
        pyrnn.load(path)


@needs_torch
def test_float16_and_float64_pt_files_load(tmp_path: Path) -> None:
    for dtype in ("float16", "float64"):
        path = tmp_path / f"{dtype}.pt"
        path.write_bytes(make_corpus.torch_save(make_corpus.torch_state(dtype)))
        module = pyrnn.load(path, kind="rnn")
        expected = make_corpus.weights()["weight_hh_l0"].astype(dtype).astype(np.float32)
        np.testing.assert_array_equal(module.weight_hh_l0, expected)


# -- paths that are not files: the operating system's own errors, unchanged -----------------
def test_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pyrnn.load(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError):
        pyrnn.load(tmp_path / "absent.pt", kind="lstm")


def test_directory_path_raises_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        pyrnn.load(tmp_path)
    folder = tmp_path / "model.pt"
    folder.mkdir()
    with pytest.raises(IsADirectoryError):
        pyrnn.load(folder, kind="rnn")


# -- resource limits: refused from the sizes, before allocating -----------------------------
@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        (lambda: pyrnn.LSTM(10**6, 10**6), "more than this machine's physical memory"),
        (lambda: pyrnn.GRU(8, 8, num_layers=10**9), "more than this machine's physical memory"),
        # 3.2 GB of weights and their source, but 2*10**8 layers of ~3 KiB of bookkeeping each.
        (lambda: pyrnn.RNN(1, 1, num_layers=2 * 10**8), "more than this machine's physical"),
        (lambda: pyrnn.RNN(1, 1, num_layers=10**12), "num_layers * directions"),
        (lambda: pyrnn.RNNCell(2**31, 1), "input_size = 2147483648 exceeds"),
        (lambda: pyrnn.LSTMCell(1, 2**29), "gates * padded hidden_size"),
        (lambda: pyrnn.LSTM(1, 2**40, proj_size=1), "gates * padded hidden_size"),
    ],
)
def test_absurd_sizes_are_refused_before_allocating(factory: Any, fragment: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=fragment.replace("*", r"\*")):
            factory()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell"])
def test_parameter_count_formula_matches_the_shapes(kind: str) -> None:
    from pyrnn._spec import Spec

    is_cell = kind.endswith("_cell")
    for input_size, hidden, layers, bidirectional, bias, proj in [
        (1, 1, 1, False, True, 0),
        (3, 17, 2, True, False, 0),
        (7, 9, 3, True, True, 4),
        (65, 16, 1, False, True, 15),
    ]:
        spec = Spec(
            kind,
            input_size,
            hidden,
            1 if is_cell else layers,
            "tanh",
            bias,
            False,
            0.0,
            False if is_cell else bidirectional,
            proj if kind == "lstm" else 0,
        )
        shapes = spec.parameter_shapes().values()
        assert spec.parameter_count == sum(int(np.prod(shape)) for shape in shapes)


def test_pt_without_torch_installed_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x03\x04 not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees when absent
    with pytest.raises(ImportError, match=r"needs torch \(pip install torch\)"):
        pyrnn.load(path, kind="rnn")


# -- hostile arguments: zero-stride views claiming huge shapes cost nothing to make ----------
def _huge(shape: tuple[int, ...], dtype: str = "float64") -> np.ndarray:
    return np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: pyrnn.RNN(1, 1)(_huge((2**31 + 1, 1, 1))), "input: axis 0 has 2147483649"),
        (lambda: pyrnn.GRU(1, 1)(_huge((2, 2**31, 1))), "input: axis 1 has 2147483648"),
        (lambda: pyrnn.GRUCell(1, 1)(_huge((2**31, 1))), "input: axis 0 has 2147483648"),
        # Wrong-shaped states are refused before being converted (a float64 -> float32 copy of
        # this one would need 8 GB).
        (
            lambda: pyrnn.LSTM(1, 2)(np.zeros((1, 1, 1)), (_huge((1, 2**30, 2)), np.zeros(2))),
            r"hx\[0\]: expected shape \(1, 1, 2\), got \(1, 1073741824, 2\)",
        ),
        (
            lambda: pyrnn.RNNCell(1, 2)(np.zeros((1, 1)), _huge((2**30, 2))),
            r"hx: expected shape \(1, 2\), got \(1073741824, 2\)",
        ),
    ],
)
def test_huge_views_are_refused_without_copying(call: Any, fragment: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=fragment):
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT


def _misaligned(array: np.ndarray) -> np.ndarray:
    raw = np.zeros(array.nbytes + 1, np.uint8)
    moved = raw[1:].view(array.dtype).reshape(array.shape)
    moved[...] = array
    assert not moved.flags.aligned and moved.flags.c_contiguous
    return moved


def test_misaligned_inputs_reach_the_core_aligned() -> None:
    # Found by the UBSan run: a contiguous but misaligned float32 array went to the kernels as
    # is (np.ascontiguousarray returns it unchanged), and their float loads were undefined
    # behaviour. tools/run_sanitized_tests.sh fails on the load itself; here, the conversion.
    from pyrnn._arrays import as_float32

    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    assert as_float32(_misaligned(x), "x").flags.aligned
    module = pyrnn.LSTM(3, 4, seed=0)
    np.testing.assert_array_equal(module(_misaligned(x))[0], module(x)[0])
    cell = pyrnn.GRUCell(3, 4, seed=0)
    np.testing.assert_array_equal(cell(_misaligned(x[0])), cell(x[0]))
    stream, twin = module.stream(batch=2), module.stream(batch=2)
    np.testing.assert_array_equal(stream.step(_misaligned(x[0])), twin.step(x[0]))
    np.testing.assert_array_equal(stream.feed(_misaligned(x)), twin.feed(x))


def test_the_core_refuses_misaligned_arrays_itself() -> None:
    # Defence in depth at the C++ boundary, for callers that skip pyrnn._arrays.
    module = pyrnn.RNN(3, 4, seed=0)
    x = _misaligned(np.zeros((2, 1, 3), np.float32))
    out, hn = np.empty((2, 1, 4), np.float32), np.empty((1, 1, 4), np.float32)
    with pytest.raises(ValueError, match="x: the array's data is not aligned"):
        module._network.forward(x, out, None, None, hn, None)
    h0 = _misaligned(np.zeros((1, 1, 4), np.float32))
    with pytest.raises(ValueError, match="h0: the array's data is not aligned"):
        module._network.forward(np.zeros((2, 1, 3), np.float32), out, h0, None, hn, None)
