"""The bindings (cpp/bindings) use only pybind11's public API: nothing from its `detail`
namespace or headers, whose layout may change in any release. The range of pybind11 versions
pyproject.toml allows is then the range of its public API that CI builds against."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BINDINGS = Path(__file__).resolve().parents[1] / "cpp" / "bindings"
# pybind11's internals: its detail namespace, its detail/ headers, and macros that open its
# namespaces (only its own headers need them).
INTERNAL = re.compile(r"detail::|detail/|PYBIND11_NAMESPACE_BEGIN")


def test_bindings_use_only_pybind11_public_api() -> None:
    if not BINDINGS.is_dir():
        pytest.skip("the C++ sources are not in this tree")
    sources = sorted(p for p in BINDINGS.rglob("*") if p.suffix in {".h", ".hpp", ".cpp", ".cc"})
    assert sources, f"no C++ sources found under {BINDINGS}"
    found = [
        f"{path.relative_to(BINDINGS.parent.parent)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if INTERNAL.search(line)
    ]
    assert not found, "pybind11 internals used in the bindings:\n" + "\n".join(found)
