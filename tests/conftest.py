"""Shared fixtures: `isa` runs a test once per instruction set this build and CPU support.

The ISAs the `isa` fixture runs come from pyrnn's own detection, so a broken detection or a path
no longer compiled would make their cases vanish without a failure. PYRNN_EXPECT_ISAS (a
comma-separated list, set by .ci/run from the CPU flags in /proc/cpuinfo without asking pyrnn)
names the ISAs that must be among them: the run stops before any test if one is missing."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

import pyrnn
from pyrnn import _testing

# Helper modules of the test suite (numpy_reference.py, ...) import as top-level modules even
# under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))
# The project's benchmark harness (benchmarks/harness/, not part of the installed package) is
# tested from the repository checkout; appended, so nothing in benchmarks/ shadows a module.
sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))

KNOWN_ISAS = ("scalar", "avx2", "avx512", "neon")

# Property tests (hypothesis) draw 25 examples per test and ISA on a developer's run; CI sets
# PYRNN_HYPOTHESIS_PROFILE=ci for 8 times as many (about two minutes more on 2 cores).
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("PYRNN_HYPOTHESIS_PROFILE", "dev"))


def expected_isa_problem(expected: str | None) -> str:
    """Why PYRNN_EXPECT_ISAS=`expected` is not met by this build and CPU ('' when it is)."""
    if expected is None:
        return ""
    names = [name.strip() for name in expected.split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN_ISAS]
    if unknown:
        return (
            f"PYRNN_EXPECT_ISAS: expected names from {', '.join(KNOWN_ISAS)}, "
            f"got {', '.join(map(repr, unknown))}"
        )
    available = pyrnn.available_isas()
    missing = [name for name in names if name not in available]
    if not missing:
        return ""
    info = pyrnn.cpu_info()
    return (
        f"PYRNN_EXPECT_ISAS={expected} but pyrnn cannot run {', '.join(missing)}: "
        f"available {available}, compiled {info['compiled']}, detected features "
        f"{info['features']}. The tests of those ISAs would silently not run."
    )


def pytest_configure(config: pytest.Config) -> None:
    problem = expected_isa_problem(os.environ.get("PYRNN_EXPECT_ISAS"))
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header(config: pytest.Config) -> str:
    expected = os.environ.get("PYRNN_EXPECT_ISAS")
    return f"pyrnn ISAs under test: {', '.join(pyrnn.available_isas())}" + (
        f" (expected at least: {expected})" if expected is not None else ""
    )


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
    _testing.set_split_every_step(False)


@pytest.fixture(params=pyrnn.available_isas())
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Forces one ISA's kernels for the test and restores the previous choice afterwards."""
    previous = pyrnn.active_isa()
    pyrnn.set_isa(request.param)
    try:
        yield request.param
    finally:
        pyrnn.set_isa(previous)
