"""The worker pool: the thread-count API, bit-identical results for any thread count (every
module type, ISA and option, whole sequences and streams), Python threads calling at once, and
forks. Small models split only under the `_testing.set_split_every_step` hook, which makes every
step of every size use every thread: the splits that large models get by themselves."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pytest

import pyrnn
from pyrnn import _core, _testing

THREAD_COUNTS = (1, 2, 3, 8)  # 8: more threads than this machine's cores

# (module, kwargs): every cell kind and option that changes how a step is split.
MODULES = [
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2}),
    ("LSTM", {}),
    ("LSTM", {"num_layers": 2, "proj_size": 5}),
    ("LSTM", {"bidirectional": True, "num_layers": 3}),
    ("GRU", {"num_layers": 2}),
    ("GRU", {"bidirectional": True}),
    ("LSTM", {"bidirectional": True, "proj_size": 7}),
]


def _outputs(module: pyrnn.Module, x: np.ndarray) -> list[np.ndarray]:
    out, state = module(x)
    states = state if isinstance(state, tuple) else (state,)
    return [out, *states]


def _assert_identical(reference: list[np.ndarray], got: list[np.ndarray], what: str) -> None:
    for i, (a, b) in enumerate(zip(reference, got, strict=True)):
        assert a.shape == b.shape, what
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"{what}: output {i} differs"


def test_thread_count_api() -> None:
    pyrnn.set_num_threads(3)
    assert pyrnn.get_num_threads() == 3
    pyrnn.set_num_threads(1)
    assert pyrnn.get_num_threads() == 1
    assert pyrnn.cpu_info()["threads"] == 1
    assert pyrnn.cpu_info()["cpus"] == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, r"n: expected an int in \[1, 1024\], got 0"),
        (-2, ValueError, r"got -2"),
        (1025, ValueError, r"got 1025"),
        (2.0, TypeError, r"n: expected an int, got float"),
        (True, TypeError, r"n: expected an int, got bool"),
        ("2", TypeError, r"got str"),
    ],
)
def test_bad_thread_counts_are_refused(value: object, error: type, message: str) -> None:
    before = pyrnn.get_num_threads()
    with pytest.raises(error, match=message):
        pyrnn.set_num_threads(value)  # type: ignore[arg-type]
    assert pyrnn.get_num_threads() == before


# Subprocesses start outside the repository, so that `import pyrnn` finds the installed package
# rather than the source folder (which has no compiled extension).
OUTSIDE = tempfile.gettempdir()


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        cwd=OUTSIDE,
    )


def test_default_is_the_cpus_this_process_may_use() -> None:
    environment = {k: v for k, v in os.environ.items() if k != "PYRNN_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", "import pyrnn; print(pyrnn.get_num_threads())"],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        cwd=OUTSIDE,
    )
    assert int(result.stdout) == len(os.sched_getaffinity(0))
    # A process pinned to one CPU gets one thread.
    pinned = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "import pyrnn; print(pyrnn.get_num_threads())",
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
        cwd=OUTSIDE,
    )
    assert int(pinned.stdout) == 1


def test_environment_sets_the_thread_count() -> None:
    result = _run_python("import pyrnn; print(pyrnn.get_num_threads())", PYRNN_NUM_THREADS="5")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == 5


@pytest.mark.parametrize("value", ["zero", "0", "-1", "2000", "1.5"])
def test_bad_environment_warns_and_keeps_the_default(value: str) -> None:
    result = _run_python(
        "import os, pyrnn; print(pyrnn.get_num_threads() == len(os.sched_getaffinity(0)))",
        PYRNN_NUM_THREADS=value,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert "PYRNN_NUM_THREADS: expected an integer in [1, 1024]" in result.stderr
    assert repr(value) in result.stderr


@pytest.mark.parametrize(("name", "kwargs"), MODULES)
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_is_bit_identical_for_any_thread_count(
    isa: str, name: str, kwargs: dict[str, object], batch: int
) -> None:
    """Hidden 40 (three blocks of 16 units, the last one partial) split over 1, 2, 3 and 8
    threads, more threads than blocks included; 300 steps cross the chunk boundaries."""
    module = getattr(pyrnn, name)(7, 40, seed=3, **kwargs)
    x = np.random.default_rng(4).standard_normal((300, batch, 7)).astype(np.float32)
    _testing.set_split_every_step(True)
    pyrnn.set_num_threads(1)
    reference = _outputs(module, x)
    for threads in THREAD_COUNTS[1:]:
        pyrnn.set_num_threads(threads)
        _assert_identical(reference, _outputs(module, x), f"{threads} threads")


@pytest.mark.parametrize(("name", "kwargs"), [m for m in MODULES if "bidirectional" not in m[1]])
def test_stream_is_bit_identical_for_any_thread_count(
    isa: str, name: str, kwargs: dict[str, object]
) -> None:
    module = getattr(pyrnn, name)(5, 40, seed=5, **kwargs)
    x = np.random.default_rng(6).standard_normal((150, 2, 5)).astype(np.float32)
    _testing.set_split_every_step(True)
    results = []
    for threads in THREAD_COUNTS:
        pyrnn.set_num_threads(threads)
        s = module.stream(batch=2)
        steps = [s.step(frame).copy() for frame in x[:20]]
        fed = s.feed(x[20:])
        results.append([np.stack(steps), fed])
    for threads, got in zip(THREAD_COUNTS[1:], results[1:], strict=True):
        _assert_identical(results[0], got, f"stream, {threads} threads")


def test_large_models_split_by_themselves_and_stay_identical() -> None:
    """Without the hook: a batch of 16 through LSTM-256 is large enough to split."""
    module = pyrnn.LSTM(32, 256, num_layers=2, seed=1)
    x = np.random.default_rng(2).standard_normal((40, 16, 32)).astype(np.float32)
    pyrnn.set_num_threads(1)
    reference = _outputs(module, x)
    for threads in (2, 3):
        pyrnn.set_num_threads(threads)
        _assert_identical(reference, _outputs(module, x), f"{threads} threads")


def test_cells_and_whole_models_are_identical_too() -> None:
    cell = pyrnn.GRUCell(9, 40, seed=2)
    x = np.random.default_rng(1).standard_normal((4, 9)).astype(np.float32)
    _testing.set_split_every_step(True)
    pyrnn.set_num_threads(1)
    reference = cell(x)
    pyrnn.set_num_threads(3)
    assert np.array_equal(reference, cell(x))


def test_python_threads_calling_at_once_agree_with_one_thread() -> None:
    """Eight Python threads run forward at once on one shared module: one of them has the pool
    at a time and the others run alone; nobody waits for anybody, and every result is the one a
    single thread gets. The calls are counted in flight to prove they overlapped."""
    module = pyrnn.LSTM(16, 48, num_layers=2, seed=7)
    inputs = [
        np.random.default_rng(i).standard_normal((200, 2, 16)).astype(np.float32) for i in range(8)
    ]
    _testing.set_split_every_step(True)
    pyrnn.set_num_threads(1)
    expected = [module(x)[0] for x in inputs]
    pyrnn.set_num_threads(2)
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()
    errors: list[str] = []
    start = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        nonlocal in_flight, most_in_flight
        start.wait()
        for _ in range(20):
            with lock:
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
            got = module(inputs[i])[0]
            with lock:
                in_flight -= 1
            if not np.array_equal(got, expected[i]):
                errors.append(f"thread {i} differs")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call never returned"
    assert errors == []
    assert most_in_flight > 1, "the calls never overlapped"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_pool_works_in_a_forked_child() -> None:
    """The parent's workers do not exist in a child: the child makes its own pool (same size)
    and gets the parent's results."""
    module = pyrnn.LSTM(8, 64, seed=3)
    x = np.random.default_rng(3).standard_normal((100, 3, 8)).astype(np.float32)
    _testing.set_split_every_step(True)
    pyrnn.set_num_threads(2)
    expected = module(x)[0]  # the pool's workers are running now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            os.close(read)
            same = pyrnn.get_num_threads() == 2 and np.array_equal(module(x)[0], expected)
            os.write(write, b"ok" if same else b"differs")
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 16)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer == b"ok"


def test_num_threads_is_public_and_typed() -> None:
    assert "set_num_threads" in pyrnn.__all__ and "get_num_threads" in pyrnn.__all__
    assert _core.max_threads == 1024
