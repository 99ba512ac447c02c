"""Fuzzes pyrnn.load: bytes -> a temporary file -> load, as a pyrnn file and as a plain state_dict
of some kind. Only FormatError (a ValueError), ValueError and TypeError may come out; anything
else (IndexError, KeyError, MemoryError, OverflowError, a crash, a hang) is a bug.

Graph files (format version 2) get a mode of their own: an input starting with "{" is the JSON of
a graph, stored with the constants of the hostile corpus' valid graph file (framing and tensors
right, so the mutations reach the graph checks rather than the safetensors framing). Such a
file must load or raise FormatError, nothing else; a model that loads must run (or refuse its
inputs with ValueError) on zeros of the sizes its inputs declare. The seeds of this mode (the
valid graph and every graph case of tests/hostile/make_corpus.py) are written to the first
corpus directory when the fuzzer starts.

    python fuzz/fuzz_load.py [libFuzzer args] [corpus dirs]     # see tools/run_fuzzers.sh

check_one() is also imported by tests/test_fuzz_crashers.py to replay saved crashers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

KINDS = (None, "rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell", None)
# Inputs ending in this byte are also tried as .pt (torch.load is slow: keep it rare).
PT_MARKER = 0x7F
ALLOWED = (ValueError, TypeError)  # FormatError is a ValueError
# Graph plans are held to this much memory while fuzzing (a graph that asks for more is refused
# exactly as one beyond physical memory is), so a hostile size cannot exhaust the machine.
MEMORY_LIMIT = 256 * 2**20
# A loaded model runs on inputs of at most this many elements each.
MAX_INPUT_ELEMENTS = 10**5

_directory = tempfile.mkdtemp(prefix="pyrnn-fuzz-load-")
_corpus: ModuleType | None = None


def make_corpus() -> ModuleType:
    """tests/hostile/make_corpus.py, which builds the graph files by hand."""
    global _corpus
    if _corpus is None:
        path = Path(__file__).resolve().parent.parent / "tests" / "hostile" / "make_corpus.py"
        spec = importlib.util.spec_from_file_location("make_corpus", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("make_corpus", module)
        spec.loader.exec_module(module)
        _corpus = module
    return _corpus


def check_one(data: bytes) -> None:
    from pyrnn import _core

    _core._set_physical_memory(MEMORY_LIMIT)
    try:
        if data[:1] == b"{":
            _check_graph(data)
        else:
            _check_file(data)
    finally:
        _core._set_physical_memory(None)


def _check_file(data: bytes) -> None:
    import pyrnn

    selector = data[-1] if data else 0
    kind = KINDS[selector % len(KINDS)]
    suffixes = [".safetensors"] + ([".pt"] if selector == PT_MARKER else [])
    for suffix in suffixes:
        path = os.path.join(_directory, "input" + suffix)
        with open(path, "wb") as file:
            file.write(data)
        try:
            loaded = pyrnn.load(path, kind=kind, prefix="")
        except ALLOWED:
            continue
        # It loaded: it must then be a working module (a forward on zeros runs).
        if isinstance(loaded, pyrnn.Model):
            _smoke_model(loaded)
        else:
            _smoke(loaded)


def _check_graph(text: bytes) -> None:
    import pyrnn

    corpus = make_corpus()
    header, payload = corpus.layout(corpus.graph_constants(), corpus.graph_metadata())
    header["__metadata__"]["graph"] = text.decode("utf-8", "replace")
    path = os.path.join(_directory, "graph.safetensors")
    with open(path, "wb") as file:
        file.write(corpus.safetensors(header, payload))
    try:
        model = pyrnn.load(path)
    except pyrnn.FormatError:
        return
    assert isinstance(model, pyrnn.Model)
    _smoke_model(model)


def _smoke(module: object) -> None:
    import numpy as np

    import pyrnn

    assert isinstance(module, pyrnn.Module)
    config = module.config
    if config["input_size"] * config["hidden_size"] > 10**6:
        return
    x = np.zeros((2, config["input_size"]), np.float32)
    if config["kind"].endswith("_cell"):
        x = x[0]
    module(x)


def _smoke_model(model: Any) -> None:
    """A loaded model runs on zeros of its declared shapes (free dims at their lower bound, or
    3), or refuses them with ValueError (an index out of range, a size its program rejects)."""
    import numpy as np

    arrays = []
    for spec in model.graph.inputs:
        low = {dim: minimum for dim, minimum, _ in spec.ranges}
        shape = [
            d if d is not None else max(3, low.get(axis, 0)) for axis, d in enumerate(spec.shape)
        ]
        if int(np.prod(shape, dtype=object)) > MAX_INPUT_ELEMENTS:
            return
        arrays.append(np.zeros(shape, spec.dtype))
    try:
        model(*arrays)
    except ValueError:
        pass


def write_graph_seeds(directory: str) -> None:
    """The graph mode's seeds: the JSON of the valid graph and of every graph case."""
    corpus = make_corpus()
    texts = [corpus.graph_metadata()["graph"]]
    for _, payload, _, _ in corpus.graph_cases():
        length = int.from_bytes(payload[:8], "little")
        try:
            metadata = json.loads(payload[8 : 8 + length]).get("__metadata__", {})
        except ValueError:  # the cases whose header is not JSON on purpose
            continue
        if isinstance(metadata.get("graph"), str) and metadata["graph"].startswith("{"):
            texts.append(metadata["graph"])
    os.makedirs(directory, exist_ok=True)
    for text in texts:
        data = text.encode()
        name = "graph-seed-" + hashlib.sha1(data).hexdigest()
        with open(os.path.join(directory, name), "wb") as file:
            file.write(data)


def main() -> None:
    import atheris
    import numpy  # noqa: F401  (imported first: not worth instrumenting)

    directories = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if directories:
        write_graph_seeds(directories[0])
    with atheris.instrument_imports(include=["pyrnn"]):
        import pyrnn  # noqa: F401
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
