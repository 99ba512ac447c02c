"""Running a snippet of Python as a user without root's privileges, for tests of what happens
when the file system says no (root writes into read-only folders). Under root the snippet runs
through setpriv as nobody in a scratch folder nobody owns; otherwise as the current user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


def can_drop_privileges() -> bool:
    return os.name == "posix" and (os.geteuid() != 0 or shutil.which("setpriv") is not None)


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder the snippet's user owns, under a world-traversable parent (pytest's tmp_path
    is under a root-only folder)."""
    folder = Path(tempfile.mkdtemp(prefix="pyrnn-unprivileged-"))
    try:
        folder.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(folder, NOBODY, NOBODY)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    # HOME of root is not nobody's; nothing the snippet imports needs a home.
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
