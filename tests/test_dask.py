"""Scoring at scale with Dask: modules and streams pickle, so a real distributed engine can run
them. Two worker processes on this machine (loopback only) score sequences split along the batch
axis (dask.array map_blocks) and files of sequences (client.map), each worker reading the model
file once, and produce the same bits as this process running the same blocks.

The comparison is per block: a row's result can differ in the last bit with the number of rows
run together (batch 1 takes matrix-vector kernels; the batch size sets how steps are chunked),
so a block is compared with a local run over the same block."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import dask_scoring
import numpy as np
import pytest
from dask.distributed import Client, LocalCluster, wait

import pyrnn

TIMEOUT = 120  # seconds; a cold start of two worker processes takes ~2 s


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    # Two single-threaded worker processes, everything on loopback, no dashboards (no port
    # 8787 to collide with), scratch space in a temporary folder.
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(tmp_path_factory.mktemp("dask-workers")),
            timeout=TIMEOUT,
        ) as cluster,
        Client(cluster, timeout=TIMEOUT) as client,
    ):
        client.upload_file(dask_scoring.__file__)
        yield client


@pytest.fixture(scope="module")
def model() -> pyrnn.Module:
    return pyrnn.LSTM(6, 24, num_layers=2, batch_first=True, seed=11)


def _workers(client: Client) -> dict[str, tuple[int, str, list[str]]]:
    processes: dict[str, tuple[int, str, list[str]]] = client.run(dask_scoring.process)
    return processes


def test_workers_run_the_same_kernels(client: Client) -> None:
    # Bit-identical results need the same ISA: workers inherit PYRNN_ISA from the environment.
    workers = _workers(client)
    assert len(workers) == 2
    assert {isa for _, isa, _ in workers.values()} == {pyrnn.active_isa()}


def test_map_blocks_along_the_batch_equals_local_runs(client: Client, model: pyrnn.Module) -> None:
    x = np.random.default_rng(3).standard_normal((25, 40, 6)).astype(np.float32)
    rows = 6  # blocks of 6, 6, 6, 6 and 1 rows; never split along time
    blocks = da.from_array(x, chunks=(rows, 40, 6))
    on_workers = client.scatter(model, broadcast=True)  # one copy per worker
    scored = blocks.map_blocks(
        dask_scoring.score_block,
        on_workers,
        chunks=(rows, 40, 24),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    out = client.compute(scored).result(timeout=TIMEOUT)
    local = np.concatenate([model(x[i : i + rows])[0] for i in range(0, len(x), rows)])
    assert out.dtype == np.float32 and out.shape == (25, 40, 24)
    assert np.array_equal(out, local)
    # And the whole batch at once agrees to float32 rounding.
    np.testing.assert_allclose(out, model(x)[0], rtol=0, atol=1e-6)


def test_map_over_files_loads_the_model_once_per_worker(
    client: Client, model: pyrnn.Module, tmp_path: Path
) -> None:
    model_path = str(tmp_path / "model.safetensors")
    pyrnn.save(model, model_path)
    rng = np.random.default_rng(4)
    files = []
    for index, (rows, steps) in enumerate([(3, 50), (1, 17), (8, 9), (2, 120), (5, 33), (4, 1)]):
        path = tmp_path / f"log-{index}.npy"
        np.save(path, rng.standard_normal((rows, steps, 6)).astype(np.float32))
        files.append(str(path))
    futures = client.map(dask_scoring.score_file, [model_path] * len(files), files)
    wait(futures, timeout=TIMEOUT)
    results = client.gather(futures)
    for path, out in zip(files, results, strict=True):
        assert np.array_equal(out, model(np.load(path))[0]), path
    loaded = [loads for _, _, loads in _workers(client).values()]
    assert all(loads in ([], [model_path]) for loads in loaded), loaded
    assert [model_path] in loaded


def test_a_stream_continues_on_a_worker(client: Client, model: pyrnn.Module) -> None:
    x = np.random.default_rng(5).standard_normal((3, 30, 6)).astype(np.float32)
    stream = model.stream(batch=3)
    stream.feed(x[:, :12])
    here = pickle.loads(pickle.dumps(stream))
    expected = here.feed(x[:, 12:])
    future = client.submit(dask_scoring.continue_stream, stream, x[:, 12:], pure=False)
    out, returned = future.result(timeout=TIMEOUT)
    assert np.array_equal(out, expected)
    for a, b in zip(returned.state, here.state, strict=True):
        assert np.array_equal(a, b)
