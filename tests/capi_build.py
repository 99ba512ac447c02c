"""Builds a C or Cython extension against the installed pyrnn, the way a user's project would
(setuptools build_ext, pyrnn.get_include() on the include path, no link against pyrnn), in a
child process started outside the repository, and imports it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest

SETUP = """\
import pyrnn
from setuptools import Extension, setup

extension = Extension({name!r}, {sources!r}, include_dirs=[pyrnn.get_include()])
if {cython!r}:
    from Cython.Build import cythonize

    extensions = cythonize([extension], quiet=True, language_level=3)
else:
    extensions = [extension]
setup(name={name!r}, ext_modules=extensions, script_args=["build_ext", "--inplace", "-q"])
"""


def require_compiler() -> None:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler!r} is not on PATH) to build a test extension")


def build_extension(
    name: str, sources: list[Path], directory: Path, setup: str | None = None
) -> ModuleType:
    """Copies `sources` into `directory`, builds extension `name` there and imports it; with
    `setup`, that setup.py is run as `setup.py build_ext --inplace` instead of the default."""
    require_compiler()
    for source in sources:
        shutil.copy(source, directory / source.name)
    cython = any(source.suffix == ".pyx" for source in sources)
    script = SETUP.format(name=name, sources=[s.name for s in sources], cython=cython)
    (directory / "setup.py").write_text(script if setup is None else setup)
    arguments = [] if setup is None else ["build_ext", "--inplace"]
    # Unoptimised: these extensions test calls, not speed, and -O0 compiles Cython's C ~3x faster.
    environment = {**os.environ, "CFLAGS": f"{os.environ.get('CFLAGS', '')} -O0".strip()}
    built = subprocess.run(
        [sys.executable, "setup.py", *arguments],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"building {name} failed:\n{built.stdout}\n{built.stderr}"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}{suffix}")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
