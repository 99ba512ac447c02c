"""Shared fixtures: `isa` runs a test once per instruction set this build and CPU support."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyrnn

# Helper modules of the test suite (numpy_reference.py, ...) import as top-level modules even
# under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _restore_isa() -> Iterator[None]:
    """A test that forces an ISA cannot leak it into later tests: under PYRNN_ISA=scalar the
    in-process results must stay those of the ISA the run asked for (subprocesses inherit it)."""
    previous = pyrnn.active_isa()
    yield
    pyrnn.set_isa(previous)


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """A test that changes the thread count (or splits every step) does not leak it."""
    previous = pyrnn.get_num_threads()
    yield
    pyrnn.set_num_threads(previous)
    pyrnn._core._set_split_every_step(False)


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Forces one ISA's kernels for the test and restores the previous choice afterwards."""
    previous = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    try:
        yield request.param
    finally:
        pyrnn.set_isa(previous)
