"""Proof that a concurrency test's threads really computed at the same time.

A test of threads sharing a module shows nothing if its threads only took turns: tiny calls
often finish before another thread has even been woken to take the GIL. The extension counts,
while a test asks it to (_testing.count_core_calls), how many forward/step/feed calls are inside
the core at once with the GIL released; these helpers fail a test whose calls never overlapped."""

from __future__ import annotations

from collections.abc import Callable

from pyrnn import _testing


def most_at_once(run: Callable[[], None]) -> int:
    """run() with the core's calls counted; the most that were computing at once."""
    _testing.count_core_calls(True)
    try:
        run()
    finally:
        most = _testing.count_core_calls(False)
    return most


def run_until_overlapped(run: Callable[[], None], attempts: int = 20) -> int:
    """Repeats run() (which starts its threads, joins them and checks their results) until two
    of its calls were computing at once, at most `attempts` times; fails if they never were."""
    most = 0
    for _ in range(attempts):
        most = max(most, most_at_once(run))
        if most >= 2:
            return most
    raise AssertionError(
        f"in {attempts} runs no two calls were ever computing at once: the threads took turns, "
        "so this test showed nothing about sharing"
    )


def assert_overlapped(most: int) -> None:
    assert most >= 2, (
        "no two calls were ever computing at once: the threads took turns, so this test showed "
        "nothing about sharing"
    )
