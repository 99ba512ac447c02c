"""Type information: the installed package ships py.typed and the extension's stub, the stub
agrees with the compiled extension (mypy's stubtest), `mypy` in strict mode (configured in
pyproject.toml) passes on the package's sources, and user code sees precise types."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install '.[test]'")

# pybind11 classes have pybind11's metaclass, which a stub cannot name; nothing else is excused.
_STUBTEST_ALLOWLIST = (
    "pyrnn._core.Network\npyrnn._core.NetworkBuilder\npyrnn._core.Stream\npyrnn._core.Graph\n"
    "pyrnn._core.ModelStream\n"
)


def test_installed_package_ships_type_information():
    package = resources.files("pyrnn")
    assert package.joinpath("py.typed").is_file()
    assert package.joinpath("_core.pyi").is_file()


def test_extension_stub_matches_the_compiled_module(tmp_path):
    # Every name the extension has is in the stub and the reverse, with matching signatures.
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(_STUBTEST_ALLOWLIST)
    command = [sys.executable, "-m", "mypy.stubtest", "pyrnn._core", "--allowlist", str(allowlist)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the two mypy runs: the second reuses the first's analysis of numpy.
    return tmp_path_factory.mktemp("mypy-cache")


def test_mypy_strict_passes_on_the_sources(mypy_cache):
    command = [sys.executable, "-m", "mypy", "--cache-dir", str(mypy_cache)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


_USER_CODE = """
    from typing import Any

    from typing_extensions import assert_type  # typing has it from 3.11 only

    import numpy as np
    import numpy.typing as npt

    import pyrnn

    x = np.zeros((5, 1, 3), np.float32)
    lstm = pyrnn.LSTM(3, 4, num_layers=2)
    assert_type(lstm(x), tuple[np.ndarray, tuple[np.ndarray, np.ndarray]])
    assert_type(pyrnn.GRU(3, 4)(x, None), tuple[np.ndarray, np.ndarray])
    assert_type(pyrnn.RNN(3, 4, nonlinearity="relu")(x), tuple[np.ndarray, np.ndarray])
    assert_type(pyrnn.GRUCell(3, 4)(x[0]), np.ndarray)
    assert_type(pyrnn.LSTMCell(3, 4)(x[0]), tuple[np.ndarray, np.ndarray])
    stream = lstm.stream(batch=None)
    assert_type(stream, pyrnn.Stream)
    assert_type(stream.step(x[0, 0], out=np.empty(4, np.float32)), npt.NDArray[np.float32])
    assert_type(stream.feed(x[:, 0]), npt.NDArray[np.float32])
    assert_type(stream.clone(), pyrnn.Stream)
    stream.reset([0])
    assert_type(pyrnn.load("m.safetensors"), pyrnn.Module | pyrnn.Model)
    assert_type(pyrnn.load("m.pt", kind="lstm"), pyrnn.Module)  # a graph file takes no kind
    assert_type(pyrnn.load("m.pt", "gru", "encoder."), pyrnn.Module)
    assert_type(pyrnn.cpu_info(), dict[str, Any])
    assert_type(pyrnn.available_isas(), list[str])
    pyrnn.save(lstm, "m.safetensors")
    pyrnn.set_isa("scalar")
    pyrnn.LSTM(3, "4")  # type: ignore[arg-type]  # and mypy must see this one as an error
"""


def test_user_code_sees_precise_types(tmp_path, mypy_cache):
    # Checks the installed package, as a user's project would (PEP 561, py.typed).
    (tmp_path / "user.py").write_text(textwrap.dedent(_USER_CODE))
    command = [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores"]
    command += ["--cache-dir", str(mypy_cache), "user.py"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
