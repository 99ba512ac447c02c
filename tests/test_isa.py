"""ISA dispatch: what is detected, what may be chosen, and how a bad choice is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyrnn


@pytest.fixture(autouse=True)
def restore_isa() -> Iterator[None]:
    before = pyrnn.active_isa()
    yield
    pyrnn.set_isa(before)


def _run(code: str, isa: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYRNN_ISA", None)
    if isa is not None:
        env["PYRNN_ISA"] = isa
    # cwd: the tests folder, so the source tree's pyrnn/ (without _core) cannot shadow the
    # installed package when the suite runs from the repository root.
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_available_isas_start_with_scalar_and_are_compiled() -> None:
    available = pyrnn.available_isas()
    assert available[0] == "scalar"
    info = pyrnn.cpu_info()
    assert set(available) <= set(info["compiled"])
    assert info["available"] == available
    assert info["active"] in available


def test_cpu_info_reports_features_consistent_with_available_isas() -> None:
    info = pyrnn.cpu_info()
    features = info["features"]
    assert set(features) >= {"avx2", "fma", "avx512f", "neon"}
    assert all(isinstance(value, bool) for value in features.values())
    available = info["available"]
    assert ("avx2" in available) == ("avx2" in info["compiled"] and features["avx2"])
    assert ("avx512" in available) == ("avx512" in info["compiled"] and features["avx512f"])
    assert ("neon" in available) == ("neon" in info["compiled"] and features["neon"])


def test_default_is_the_best_available() -> None:
    result = _run("import pyrnn; print(pyrnn.active_isa())", None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pyrnn.available_isas()[-1]


@pytest.mark.parametrize("isa", pyrnn.available_isas())
def test_pyrnn_isa_environment_forces_the_path(isa: str) -> None:
    result = _run("import pyrnn; print(pyrnn.active_isa())", isa)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == isa


def test_bad_pyrnn_isa_fails_at_import_naming_the_choices() -> None:
    result = _run("import pyrnn", "sse9")
    assert result.returncode != 0
    assert "PYRNN_ISA environment variable: isa: expected one of scalar" in result.stderr
    assert "got 'sse9'" in result.stderr


@pytest.mark.parametrize("isa", pyrnn.available_isas())
def test_set_isa_switches_and_results_agree(isa: str) -> None:
    import numpy as np

    lstm = pyrnn.LSTM(17, 33, seed=3)
    x = np.random.default_rng(0).standard_normal((9, 5, 17)).astype(np.float32)
    pyrnn.set_isa("scalar")
    expected, _ = lstm(x)
    pyrnn.set_isa(isa)
    assert pyrnn.active_isa() == isa
    out, _ = lstm(x)
    # Different summation orders in float32 over K=17+33 terms; values are bounded by 1.
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_set_isa_unknown_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"isa: expected one of scalar.*got 'fast'"):
        pyrnn.set_isa("fast")
    with pytest.raises(TypeError, match="name: expected a str"):
        pyrnn.set_isa(3)  # type: ignore[arg-type]


def test_set_isa_compiled_but_unsupported_is_refused() -> None:
    info = pyrnn.cpu_info()
    missing = [isa for isa in info["compiled"] if isa not in info["available"]]
    if not missing:
        # Every compiled ISA runs here; the unsupported branch is covered where one is missing.
        assert info["compiled"] == info["available"]
        return
    with pytest.raises(ValueError, match="compiled in but this CPU lacks it"):
        pyrnn.set_isa(missing[0])
