"""Running a snippet of Python without root's power over file permissions, for tests of what
happens when the file system says no (root writes into read-only folders). Under root the
snippet runs through setpriv with every capability dropped (still uid 0, so it can read the
interpreter and packages wherever they are, but CAP_DAC_OVERRIDE no longer lets it write into a
read-only folder); otherwise as the current user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def can_drop_privileges() -> bool:
    return os.name == "posix" and (os.geteuid() != 0 or shutil.which("setpriv") is not None)


@contextmanager
def scratch_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="pyrnn-unprivileged-"))
    try:
        yield folder
    finally:
        for path in (folder, *folder.rglob("*")):
            if path.is_dir():
                path.chmod(0o700)  # the snippet's read-only folders, so they can be removed
        shutil.rmtree(folder, ignore_errors=True)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
        command = [*drop, *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
