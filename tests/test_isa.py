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


# An ISA of the other architecture: never compiled into this build.
FOREIGN_ISA = "avx2" if "neon" in pyrnn.cpu_info()["compiled"] else "neon"
BEST = pyrnn.available_isas()[-1]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("sse9", "expected one of scalar"),
        ("AVX2", "expected one of scalar"),
        (FOREIGN_ISA, f"'{FOREIGN_ISA}' is not built for this architecture"),
        *(
            (isa, f"'{isa}' is not supported by this CPU (missing ")
            for isa in pyrnn.cpu_info()["compiled"]
            if isa not in pyrnn.available_isas()
        ),
    ],
)
def test_bad_pyrnn_isa_warns_and_falls_back_to_the_best(value: str, reason: str) -> None:
    result = _run("import pyrnn; print(pyrnn.active_isa())", value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == BEST
    assert f"RuntimeWarning: PYRNN_ISA='{value}' cannot be used: " in result.stderr
    assert reason in result.stderr
    assert f"Using '{BEST}', the best available, instead." in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["info"], ["info", "--json"]])
def test_cli_runs_under_a_bad_pyrnn_isa(args: list[str]) -> None:
    env = {**os.environ, "PYRNN_ISA": FOREIGN_ISA}
    result = subprocess.run(
        [sys.executable, "-m", "pyrnn.cli", *args],
        env=env,
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"PYRNN_ISA='{FOREIGN_ISA}' cannot be used" in result.stderr
    assert ("usage: pyrnn" if args == ["--help"] else BEST) in result.stdout


def test_good_pyrnn_isa_gives_no_warning() -> None:
    result = _run("import pyrnn", "scalar")
    assert result.returncode == 0
    assert result.stderr == ""


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
    available = ", ".join(pyrnn.available_isas())
    with pytest.raises(ValueError, match=rf"isa: expected one of {available} .*got 'fast'"):
        pyrnn.set_isa("fast")
    with pytest.raises(TypeError, match="name: expected a str"):
        pyrnn.set_isa(3)  # type: ignore[arg-type]


def test_set_isa_of_another_architecture_says_it_is_not_built_here() -> None:
    with pytest.raises(
        ValueError, match=rf"isa: '{FOREIGN_ISA}' is not built for this architecture: .*available"
    ):
        pyrnn.set_isa(FOREIGN_ISA)


def test_set_isa_compiled_but_unsupported_is_refused() -> None:
    info = pyrnn.cpu_info()
    missing = [isa for isa in info["compiled"] if isa not in info["available"]]
    if not missing:
        # Every compiled ISA runs here: test_isa_choice_on_other_cpus covers the refusal.
        assert info["compiled"] == info["available"]
        return
    with pytest.raises(ValueError, match=r"is not supported by this CPU \(missing "):
        pyrnn.set_isa(missing[0])


@pytest.mark.skipif(
    "avx512" not in pyrnn.cpu_info()["compiled"], reason="an x86-64 build's ISAs are asked about"
)
def test_isa_choice_on_other_cpus() -> None:
    from pyrnn import _core

    avx2_cpu = {"avx2": True, "fma": True, "f16c": True}
    isa, warning, why = _core._isa_choice("avx512", avx2_cpu)
    assert isa == "avx2"
    assert why == "'avx512' is not supported by this CPU (missing avx512f); available: scalar, avx2"
    assert warning == f"PYRNN_ISA='avx512' cannot be used: {why}. Using 'avx2', the best " + (
        "available, instead."
    )
    isa, _, why = _core._isa_choice("avx2", {"avx512f": True})
    assert (isa, why) == ("scalar", "'avx2' is not supported by this CPU (missing avx2, fma, "
                          "f16c); available: scalar")  # fmt: skip
    assert _core._isa_choice("avx512", {**avx2_cpu, "avx512f": True}) == ("avx512", "", "")
    assert _core._isa_choice(None, avx2_cpu) == ("avx2", "", "")
    assert _core._isa_choice("", {}) == ("scalar", "", "")
    isa, _, why = _core._isa_choice("neon", {"neon": True})
    assert isa == "scalar"
    assert why.startswith("'neon' is not built for this architecture: its kernels are for AArch64")
