"""Writes fuzz/corpus/forward: the seed inputs of fuzz/fuzz_forward.py, so that a fuzz run on a
fresh clone starts from inputs that already reach every module kind, forward and streams alike,
and sequences and feeds longer than one of the core's time chunks.

Seeded and deterministic: random inputs are drawn from a fixed generator and the first one to
exercise each not yet covered (kind, path[, "crosses a chunk"]) is kept (fuzz_forward.trace()
says what an input exercises). Rerun after changing how the harness reads its input:

    python fuzz/make_forward_corpus.py          (pyrnn installed; run from anywhere)
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "corpus" / "forward"


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_forward", ROOT / "fuzz_forward.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def goals(fuzz: ModuleType) -> set[tuple[Any, ...]]:
    """Everything the corpus must exercise."""
    wanted: set[tuple[Any, ...]] = set()
    for kind in fuzz.KINDS:
        for path in ("forward", "stream"):
            wanted.add((kind, path))
            if not kind.endswith("_cell") or path == "stream":  # a cell call is one step
                wanted.add((kind, path, "crosses a chunk"))
    return wanted


def main() -> None:
    fuzz = harness()
    wanted = goals(fuzz)
    rng = random.Random(20240611)
    chosen: list[bytes] = []
    covered: set[tuple[Any, ...]] = set()
    for _ in range(200_000):
        if wanted <= covered:
            break
        # Bytes at or above 224 pick the far sizes; make them common enough to meet.
        data = bytes(
            rng.choice((rng.randrange(224), rng.randrange(224, 256)))
            for _ in range(rng.randrange(8, 120))
        )
        with fuzz.trace() as seen:
            fuzz.check_one(data)
        if (seen & wanted) - covered:
            chosen.append(data)
            covered |= seen
    missing = wanted - covered
    if missing:
        raise SystemExit(f"not covered after 200000 inputs: {sorted(missing)}")
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for data in chosen:
        (OUT / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{len(chosen)} inputs written to {OUT}")


if __name__ == "__main__":
    main()
