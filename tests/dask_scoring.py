"""What the Dask workers of tests/test_dask.py run: scoring functions and a loader that reads a
saved model once per worker process. Shipped to the workers with Client.upload_file, as a user
would ship their own scoring module (or install it on every machine)."""

from __future__ import annotations

import functools
import os

import numpy as np

import pyrnn

loads: list[str] = []  # model files this process has read, in order


@functools.cache
def model(path: str) -> pyrnn.Module:
    """The model saved at `path`, read at the first call in this process and kept."""
    loads.append(path)
    return pyrnn.load(path)


def score_block(block: np.ndarray, module: pyrnn.Module) -> np.ndarray:
    """The outputs of one (rows, T, I) block of a batch_first sequence batch."""
    out, _ = module(block)
    result: np.ndarray = out
    return result


def score_file(model_path: str, data_path: str) -> np.ndarray:
    """The outputs of the (rows, T, I) batch_first sequences saved in `data_path`."""
    return score_block(np.load(data_path), model(model_path))


def continue_stream(stream: pyrnn.Stream, x: np.ndarray) -> tuple[np.ndarray, pyrnn.Stream]:
    """Feeds `x` to a stream that arrived mid-sequence; returns the outputs and the stream."""
    return stream.feed(x), stream


def process() -> tuple[int, str, list[str]]:
    """This worker's process id, active ISA and the model files it has read."""
    return os.getpid(), pyrnn.active_isa(), list(loads)
