"""pyrnn's C API (pyrnn/include/pyrnn/capi.h, pyrnn/capi.pxd), used the way an extension author
would: a Cython extension (tests/capi/capi_probe.pyx) and the C example (examples/c_extension)
are compiled against the installed package, once per module, and call the C API with the GIL
released. Results must equal the Python API's bit for bit: both run the same core step."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from capi_build import build_extension
from overlap import run_until_overlapped

import pyrnn
from pyrnn import _core

REPO = Path(__file__).resolve().parents[1]
OK, BUSY, ERROR_HANDLE, ERROR_ARGUMENT, ERROR_RUNTIME = range(5)
BUSY_MESSAGE = "already in use by another thread"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    directory = tmp_path_factory.mktemp("capi_probe")
    return build_extension("capi_probe", [REPO / "tests" / "capi" / "capi_probe.pyx"], directory)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    directory = tmp_path_factory.mktemp("c_example")
    source = REPO / "examples" / "c_extension" / "pyrnn_c_example.c"
    return build_extension("pyrnn_c_example", [source], directory)


def test_the_installed_package_ships_the_header_and_the_pxd() -> None:
    include = Path(pyrnn.get_include())
    assert (include / "pyrnn" / "capi.h").is_file()
    assert (Path(pyrnn.__file__).parent / "capi.pxd").is_file()
    assert "#define PYRNN_CAPI_VERSION 1" in (include / "pyrnn" / "capi.h").read_text()
    assert type(_core._C_API).__name__ == "PyCapsule"


def readme_code(language: str) -> str:
    """The first `language` code block of the README's C API section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Calling pyrnn from Cython or C", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def readme_stepper(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    directory = tmp_path_factory.mktemp("readme")
    source = directory / "stepper.pyx"
    source.write_text(readme_code("cython"))
    return build_extension("stepper", [], directory, setup=readme_code("python"))


def random_state(stream: Any, seed: int) -> None:
    """Gives `stream` a non-zero start state (the same for the same seed)."""
    rng = np.random.default_rng(seed)
    state = stream.state
    if isinstance(state, tuple):
        stream.state = tuple(rng.standard_normal(part.shape).astype(np.float32) for part in state)
    else:
        stream.state = rng.standard_normal(state.shape).astype(np.float32)


def python_steps(stream: Any, xs: np.ndarray) -> np.ndarray:
    """s.step(x) for every step of xs (T, N, I), as (T, N, P)."""
    return np.stack([stream.step(x if stream.batch is not None else x[0]) for x in xs]).reshape(
        len(xs), xs.shape[1], -1
    )


def parts(state: Any) -> tuple[np.ndarray, ...]:
    return state if isinstance(state, tuple) else (state,)


def python_feed(stream: Any, xs: np.ndarray) -> np.ndarray:
    """s.feed of xs (T, N, I) in the stream's own layout, returned as (T, N, P)."""
    if stream.batch is None:
        return stream.feed(xs[:, 0])[:, None]
    if getattr(stream, "_spec", None) is not None and stream._spec.batch_first:
        return np.swapaxes(stream.feed(np.ascontiguousarray(np.swapaxes(xs, 0, 1))), 0, 1)
    return stream.feed(xs)


MODULES = {
    "rnn-tanh": lambda: pyrnn.RNN(7, 9, num_layers=2, seed=1),
    "rnn-relu": lambda: pyrnn.RNN(7, 9, nonlinearity="relu", seed=2),
    "lstm-proj": lambda: pyrnn.LSTM(7, 17, num_layers=2, proj_size=5, seed=3),
    "gru-batch-first": lambda: pyrnn.GRU(7, 16, batch_first=True, seed=4),
    "rnn-cell": lambda: pyrnn.RNNCell(7, 8, seed=5),
    "lstm-cell": lambda: pyrnn.LSTMCell(7, 15, seed=6),
    "gru-cell": lambda: pyrnn.GRUCell(7, 65, seed=7),
}


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("kind", list(MODULES))
def test_steps_and_feeds_equal_the_python_api_bit_for_bit(
    probe: ModuleType, kind: str, batch: int | None
) -> None:
    module = MODULES[kind]()
    rows = 1 if batch is None else batch
    xs = np.random.default_rng(0).standard_normal((50, rows, 7)).astype(np.float32)
    stepped, fed, reference = (module.stream(batch) for _ in range(3))
    for stream in (stepped, fed, reference):
        random_state(stream, 1)
    output = module._spec.output_size
    assert probe.sizes(stepped) == (7, output, rows)
    want = python_steps(reference, xs)
    ys = np.full((50, rows, output), np.nan, np.float32)
    probe.steps(stepped, xs, ys)
    np.testing.assert_array_equal(ys, want)
    # feed is time-major (T, N, I) whatever the module's batch_first, and equals the Python
    # feed of the same steps (which groups a chunk's input projections into one GEMM, so it
    # may round differently from single steps).
    python_fed = module.stream(batch)
    random_state(python_fed, 1)
    ys = np.full((50, rows, output), np.nan, np.float32)
    probe.feed(fed, xs, ys)
    np.testing.assert_array_equal(ys, python_feed(python_fed, xs))
    for stream, twin in ((stepped, reference), (fed, python_fed)):
        for part, want_part in zip(parts(stream.state), parts(twin.state), strict=True):
            np.testing.assert_array_equal(part, want_part)
    probe.reset(stepped)
    reference.reset()
    for part, want_part in zip(parts(stepped.state), parts(reference.state), strict=True):
        np.testing.assert_array_equal(part, want_part)


def test_a_hundred_thousand_nogil_steps_equal_python_steps(probe: ModuleType) -> None:
    module = pyrnn.LSTM(4, 16, seed=0)
    steps = 100_000
    xs = np.random.default_rng(1).standard_normal((steps, 1, 4)).astype(np.float32)
    ours, reference = module.stream(), module.stream()
    random_state(ours, 2)
    random_state(reference, 2)
    ys = np.empty((steps, 1, 16), np.float32)
    probe.steps(ours, xs, ys)
    y = np.empty(16, np.float32)
    for t in range(steps):
        reference.step(xs[t, 0], out=y)
        if not np.array_equal(ys[t, 0], y):
            raise AssertionError(f"step {t}: C API {ys[t, 0]} != Python {y}")


def test_four_threads_step_four_streams_at_once(probe: ModuleType) -> None:
    module = pyrnn.GRU(32, 64, seed=0)
    xs = np.random.default_rng(2).standard_normal((3000, 2, 32)).astype(np.float32)
    want = python_steps(module.stream(2), xs)
    streams = [module.stream(2) for _ in range(4)]

    def run() -> None:
        outputs = [np.empty((3000, 2, 64), np.float32) for _ in streams]
        for stream in streams:
            stream.reset()
        threads = [
            threading.Thread(target=probe.steps, args=(stream, xs, out))
            for stream, out in zip(streams, outputs, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for out in outputs:
            np.testing.assert_array_equal(out, want)

    run_until_overlapped(run)


@pytest.mark.parametrize("model", [False, True])
def test_a_handle_shared_by_two_threads_is_busy_where_python_raises(
    probe: ModuleType, model: bool
) -> None:
    stream = head_model(batch_first=False).stream(2) if model else pyrnn.GRU(16, 96).stream(2)
    output = probe.sizes(stream)[1]
    xs = np.random.default_rng(3).standard_normal((400, 2, 16)).astype(np.float32)
    fed = np.empty((400, 2, output), np.float32)
    flags = np.zeros(2, np.int32)  # stop, feeds finished
    outcome: dict[str, Any] = {}
    # The worker feeds back to back until the main thread has been refused once; the main
    # thread starts stepping only after a first feed has finished, so almost every step lands
    # inside a feed. Every refusal happens while the worker holds the stream.
    worker = threading.Thread(
        target=lambda: outcome.setdefault("feeds", probe.feed_until(stream, xs, fed, flags))
    )
    worker.start()
    y = np.empty((2, output), np.float32)
    status, message, attempts = probe.step_until_busy(stream, xs[0], y, 10**7, flags)
    worker.join()
    assert status == BUSY, f"no refusal in {attempts} steps: {message}"
    assert BUSY_MESSAGE in message
    feeds, _refusals = outcome["feeds"]
    assert feeds >= 1
    # The Python API raises on the very same condition with the same words.
    with pytest.raises(RuntimeError, match=BUSY_MESSAGE):
        probe.raise_for(BUSY)


def test_bad_handles_and_arguments_return_statuses_with_messages(probe: ModuleType) -> None:
    stream = pyrnn.LSTM(3, 4, seed=0).stream()
    handle = probe.address(stream)
    assert probe.address(stream) == handle  # one handle per stream, kept by it
    assert probe.address(stream.clone()) != handle  # a fork has its own
    x, y = np.ones(3, np.float32), np.empty(4, np.float32)
    empty = np.empty(0, np.float32)
    assert probe.step_at(0, x, y) == (ERROR_HANDLE, "stream: the handle is NULL")
    zeros = np.zeros(64, np.uint8)
    status, message = probe.step_at(zeros.ctypes.data, x, y)
    assert status == ERROR_HANDLE and "not a live pyrnn stream handle" in message
    assert probe.sizes_at(0) == (-1, -1, -1, "stream: the handle is NULL")
    assert probe.step_at(handle, empty, y) == (ERROR_ARGUMENT, "x: NULL")
    assert probe.step_at(handle, x, empty) == (ERROR_ARGUMENT, "y: NULL")
    assert probe.feed_at(handle, x, -1, y) == (
        ERROR_ARGUMENT,
        "steps: expected at least 0, got -1",
    )
    assert probe.feed_at(handle, x, 0, y) == (OK, "")
    buffer = np.zeros(8, np.float32)
    status, message = probe.step_at(handle, buffer[:3], buffer[2:6])
    assert status == ERROR_ARGUMENT and message.startswith("y: overlaps x")
    with pytest.raises(ValueError, match=r"^y: overlaps x"):
        probe.raise_for(status)
    assert probe.step_at(handle, x, y) == (OK, "")
    square = pyrnn.GRU(4, 4, seed=0)
    inplace = np.ones(4, np.float32)
    assert probe.step_at(probe.address(square.stream()), inplace, inplace) == (OK, "")
    np.testing.assert_array_equal(inplace, square.stream().step(np.ones(4, np.float32)))
    with pytest.raises(TypeError, match=r"a pyrnn\.Stream or pyrnn\.ModelStream, got object"):
        probe.address(object())
    with pytest.raises(TypeError, match="never initialised"):
        probe.address(pyrnn.Stream.__new__(pyrnn.Stream))


class Head(torch.nn.Module):
    """Linear -> LSTM -> Linear: one input, one output, time along axis 0 or 1."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(16, 24)
        self.lstm = torch.nn.LSTM(24, 32, batch_first=batch_first)
        self.out = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(torch.relu(self.inp(x)))[0])


def head_model(batch_first: bool) -> pyrnn.Model:
    torch.manual_seed(0)
    example = torch.randn(3, 40, 16) if batch_first else torch.randn(40, 3, 16)
    model = pyrnn.from_torch(Head(batch_first).eval(), example)
    assert isinstance(model, pyrnn.Model)
    return model


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("batch", [None, 2])
def test_model_streams_step_and_feed_like_the_python_api(
    probe: ModuleType, batch_first: bool, batch: int | None
) -> None:
    model = head_model(batch_first)
    rows = 1 if batch is None else batch
    stepped, fed, reference = (model.stream(batch) for _ in range(3))
    assert probe.sizes(stepped) == (16, 5, rows)
    xs = np.random.default_rng(4).standard_normal((30, rows, 16)).astype(np.float32)
    want = python_steps(reference, xs)
    ys = np.full((30, rows, 5), np.nan, np.float32)
    probe.steps(stepped, xs, ys)
    np.testing.assert_array_equal(ys, want)
    # Time-major feed: in place when the model's time axis is outermost, else frame by frame;
    # both equal the Python API's feed of the same frames (to rounding: a chunk's GEMMs group
    # rows differently from a step's).
    ys = np.full((30, rows, 5), np.nan, np.float32)
    probe.feed(fed, xs, ys)
    frames = xs if batch is not None else xs[:, 0]
    python_fed = model.stream(batch).feed(
        np.swapaxes(frames, 0, 1) if batch_first and batch else frames
    )
    if batch_first and batch:
        python_fed = np.swapaxes(python_fed, 0, 1)
    np.testing.assert_allclose(ys.reshape(python_fed.shape), python_fed, rtol=1e-6, atol=1e-6)
    probe.reset(stepped)
    reference.reset()
    np.testing.assert_array_equal(
        probe_one(probe, stepped, xs[0]), probe_one(probe, reference, xs[0])
    )
    # A model may read its input after writing its output: y may not even be x itself.
    buffer = np.zeros(16 * rows, np.float32)
    status, message = probe.step_at(probe.address(stepped), buffer, buffer[: 5 * rows])
    assert status == ERROR_ARGUMENT and message.startswith("y: overlaps x")


def probe_one(probe: ModuleType, stream: Any, x: np.ndarray) -> np.ndarray:
    y = np.empty((1, *x.shape[:-1], probe.sizes(stream)[1]), np.float32)
    probe.steps(stream, x[None], y)
    return y


def test_models_the_c_api_cannot_step_are_refused_with_the_reason(probe: ModuleType) -> None:
    class Bare(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(6, 8)

        def forward(self, x: torch.Tensor) -> Any:
            return self.lstm(x)

    model = pyrnn.from_torch(Bare().eval(), torch.randn(20, 2, 6))
    assert isinstance(model, pyrnn.Model)
    with pytest.raises(ValueError, match="one input and one output; this one has 1 inputs and 3"):
        probe.address(model.stream(2))


def test_the_readme_example_builds_and_steps_like_the_python_api(
    readme_stepper: ModuleType,
) -> None:
    module = pyrnn.GRU(8, 12, seed=0)
    xs = np.random.default_rng(6).standard_normal((40, 4, 8)).astype(np.float32)
    ys = np.empty((40, 4, 12), np.float32)
    readme_stepper.run(module.stream(batch=4), xs, ys)
    np.testing.assert_array_equal(ys, python_steps(module.stream(batch=4), xs))
    with pytest.raises(ValueError, match=r"xs: expected \(T, batch, input_size\)"):
        readme_stepper.run(module.stream(batch=2), xs, ys)


# -- versions ------------------------------------------------------------------------------------
class Table(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_uint32), ("struct_size", ctypes.c_uint32)]


def fake_capsule(table: Table, name: bytes) -> Any:
    new = ctypes.pythonapi.PyCapsule_New
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return new(ctypes.addressof(table), name, None)


def test_a_c_api_version_mismatch_is_an_import_error_naming_both(
    probe: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = b"pyrnn._core._C_API"
    newer = Table(999, 4096)
    with monkeypatch.context() as patch:
        patch.setattr(_core, "_C_API", fake_capsule(newer, name))
        with pytest.raises(
            ImportError,
            match=r"built against version 1 \(table of \d+ bytes\), the installed pyrnn "
            r"provides version 999 \(table of 4096 bytes\); rebuild",
        ):
            probe.reimport()
        smaller = Table(1, 8)  # the right version, but fewer functions than this header's
        patch.setattr(_core, "_C_API", fake_capsule(smaller, name))
        with pytest.raises(ImportError, match=r"provides version 1 \(table of 8 bytes\)"):
            probe.reimport()
        patch.setattr(_core, "_C_API", fake_capsule(newer, b"other.capsule"))
        with pytest.raises(ImportError, match=r"is not a capsule named pyrnn\._core\._C_API"):
            probe.reimport()
        patch.delattr(_core, "_C_API")
        with pytest.raises(ImportError, match="has no _C_API capsule"):
            probe.reimport()
    probe.reimport()  # the real capsule is back
    stream = pyrnn.RNN(2, 3, seed=0).stream()
    assert probe.sizes(stream) == (2, 3, 1)


# -- the C example -------------------------------------------------------------------------------
def test_the_c_example_steps_like_the_python_api(example: ModuleType) -> None:
    module = pyrnn.LSTM(16, 32, seed=0)
    xs = np.random.default_rng(5).standard_normal((100, 4, 16)).astype(np.float32)
    ys = np.empty((100, 4, 32), np.float32)
    example.run(module.stream(batch=4), xs, ys)
    np.testing.assert_array_equal(ys, python_steps(module.stream(batch=4), xs))
    model_stream = head_model(batch_first=False).stream(2)
    frames = xs[:, :2]
    outputs = np.empty((100, 2, 5), np.float32)
    example.run(model_stream, np.ascontiguousarray(frames), outputs)
    np.testing.assert_array_equal(
        outputs, python_steps(head_model(batch_first=False).stream(2), frames)
    )
    with pytest.raises(TypeError, match="xs: expected a float32 array, got format 'd'"):
        example.run(module.stream(batch=4), xs.astype(np.float64), ys)
    with pytest.raises(ValueError, match=r"xs, ys: expected .* N\*I = 64"):
        example.run(module.stream(batch=4), xs[:, :, :8].copy(), ys)
    with pytest.raises(TypeError, match=r"expected a pyrnn\.Stream or pyrnn\.ModelStream"):
        example.run(module, xs, ys)
