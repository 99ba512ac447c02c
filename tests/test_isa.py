"""ISA dispatch: what is detected, what may be chosen, and how a bad choice is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pyrnn
from pyrnn import _testing


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


# What each ISA's kernels need, mirrored from cpp/core/dispatch.cpp: the tests below check the
# CPU detection against /proc/cpuinfo, and the refusal of each ISA on a CPU lacking each feature.
NEEDS = {"avx2": ("avx2", "fma", "f16c"), "avx512": ("avx512f", "avx2", "fma"), "neon": ("neon",)}


@pytest.mark.parametrize("isa", [isa for isa in pyrnn.cpu_info()["compiled"] if isa != "scalar"])
def test_set_isa_refuses_a_compiled_isa_the_cpu_lacks(isa: str) -> None:
    """Each compiled ISA, on a pretended CPU missing each one of its features in turn, is
    refused by set_isa, dropped from available_isas(), and the missing feature is named. Runs on
    every machine, including those where every compiled ISA is supported (a broken feature check
    in set_isa makes it fail: it would switch to kernels the CPU cannot run)."""

    real = pyrnn.cpu_info()["features"]
    everything = dict.fromkeys(real, True)
    try:
        for feature in NEEDS[isa]:
            _testing.pretend_cpu_features({**everything, feature: False})
            assert isa not in pyrnn.available_isas()
            with pytest.raises(
                ValueError, match=rf"is not supported by this CPU \(missing {feature}\)"
            ):
                pyrnn.set_isa(isa)
        _testing.pretend_cpu_features(everything)
        assert isa in pyrnn.available_isas()
        pyrnn.set_isa(isa)
    finally:
        _testing.pretend_cpu_features(None)
    assert pyrnn.cpu_info()["features"] == real


@pytest.mark.parametrize("isa", pyrnn.cpu_info()["compiled"])
def test_every_compiled_isa_runs_exactly_when_the_cpu_has_its_features(isa: str) -> None:
    features = pyrnn.cpu_info()["features"]
    supported = all(features[name] for name in NEEDS.get(isa, ()))
    assert (isa in pyrnn.available_isas()) == supported
    if supported:
        pyrnn.set_isa(isa)
        assert pyrnn.active_isa() == isa
    else:
        missing = ", ".join(name for name in NEEDS[isa] if not features[name])
        with pytest.raises(ValueError, match=rf"not supported by this CPU \(missing {missing}\)"):
            pyrnn.set_isa(isa)


def _proc_cpuinfo_flags() -> set[str] | None:
    """The CPU flags Linux reports for the first processor (x86 'flags', AArch64 'Features')."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


# pyrnn's feature name -> the /proc/cpuinfo flag that says the CPU (and the kernel) has it.
CPUINFO_FLAG = {"avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f", "neon": "asimd"}


@pytest.mark.skipif(_proc_cpuinfo_flags() is None, reason="no /proc/cpuinfo flags (not Linux)")
def test_detected_features_match_proc_cpuinfo() -> None:
    """pyrnn asks the CPU itself (cpuid); Linux's /proc/cpuinfo is an independent witness (the
    kernel clears AVX-512 flags when it does not save zmm state, as pyrnn's check requires).
    Catches a detection that reports a feature wrongly either way: missing, its kernels' tests
    vanish from the `isa` fixture; extra, pyrnn runs instructions the CPU lacks."""
    flags = _proc_cpuinfo_flags()
    assert flags is not None
    features = pyrnn.cpu_info()["features"]
    x86 = "neon" not in pyrnn.cpu_info()["compiled"]
    names = ("avx2", "fma", "f16c", "avx512f") if x86 else ("neon",)
    detected = {name: features[name] for name in names}
    assert detected == {name: CPUINFO_FLAG[name] in flags for name in names}


def _collect_with(expected: str) -> subprocess.CompletedProcess[str]:
    """pytest collecting this file with PYRNN_EXPECT_ISAS=`expected` (nothing runs)."""
    env = {**os.environ, "PYRNN_EXPECT_ISAS": expected}
    env.pop("PYRNN_ISA", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         __file__],
        env=env, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_an_expected_isa_that_cannot_run_stops_the_suite() -> None:
    """PYRNN_EXPECT_ISAS names ISAs whose tests must run: one that pyrnn does not offer (here
    one of the other architecture, never available) stops the run before any test, saying what
    was detected; a typo is refused too. With the ISAs pyrnn does offer, the run goes on."""
    result = _collect_with(f"scalar,{FOREIGN_ISA}")
    assert result.returncode != 0
    assert f"PYRNN_EXPECT_ISAS=scalar,{FOREIGN_ISA} but pyrnn cannot run {FOREIGN_ISA}" in (
        result.stderr
    )
    assert "detected features" in result.stderr
    result = _collect_with("scalar,avx-512")
    assert result.returncode != 0
    assert "PYRNN_EXPECT_ISAS: expected names from scalar, avx2, avx512, neon, got 'avx-512'" in (
        result.stderr
    )
    result = _collect_with(",".join(pyrnn.available_isas()))
    assert result.returncode == 0, result.stderr


def test_the_expected_isas_are_the_ones_the_cpu_flags_promise() -> None:
    """When PYRNN_EXPECT_ISAS is set (as .ci/run does), it says at least what /proc/cpuinfo
    promises for the compiled ISAs, so the expectation itself cannot quietly shrink."""
    expected = os.environ.get("PYRNN_EXPECT_ISAS")
    flags = _proc_cpuinfo_flags()
    if expected is None or flags is None:
        pytest.skip("PYRNN_EXPECT_ISAS is not set, or no /proc/cpuinfo (.ci/run sets it)")
    promised = {
        isa
        for isa, needs in NEEDS.items()
        if isa in pyrnn.cpu_info()["compiled"] and all(CPUINFO_FLAG[n] in flags for n in needs)
    }
    assert promised <= {name.strip() for name in expected.split(",")}


@pytest.mark.skipif(
    "avx512" not in pyrnn.cpu_info()["compiled"], reason="an x86-64 build's ISAs are asked about"
)
def test_isa_choice_on_other_cpus() -> None:

    avx2_cpu = {"avx2": True, "fma": True, "f16c": True}
    isa, warning, why = _testing.isa_choice("avx512", avx2_cpu)
    assert isa == "avx2"
    assert why == "'avx512' is not supported by this CPU (missing avx512f); available: scalar, avx2"
    assert warning == f"PYRNN_ISA='avx512' cannot be used: {why}. Using 'avx2', the best " + (
        "available, instead."
    )
    isa, _, why = _testing.isa_choice("avx2", {"avx512f": True})
    assert (isa, why) == ("scalar", "'avx2' is not supported by this CPU (missing avx2, fma, "
                          "f16c); available: scalar")  # fmt: skip
    assert _testing.isa_choice("avx512", {**avx2_cpu, "avx512f": True}) == ("avx512", "", "")
    assert _testing.isa_choice(None, avx2_cpu) == ("avx2", "", "")
    assert _testing.isa_choice("", {}) == ("scalar", "", "")
    isa, _, why = _testing.isa_choice("neon", {"neon": True})
    assert isa == "scalar"
    assert why.startswith("'neon' is not built for this architecture: its kernels are for AArch64")
