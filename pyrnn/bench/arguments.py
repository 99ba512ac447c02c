"""Argument types shared by `pyrnn bench` and scripts that take the same options."""

from __future__ import annotations

import argparse
import os

__all__ = ["output_path", "positive_int"]


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, e.g. a number of repeats."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def output_path(text: str) -> str:
    """An argparse type: a file a report can be written to, checked before minutes of
    benchmarking (its folder exists and is writable, it is not a folder)."""
    directory = os.path.dirname(os.path.abspath(text))
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected a file name")
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {directory!r} {what}")
    if os.path.exists(text):
        if not os.access(text, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: permission denied")
    elif not os.access(directory, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: no permission to create files in {directory!r}"
        )
    return text
