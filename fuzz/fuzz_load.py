"""Fuzzes pyrnn.load: bytes -> a temporary file -> load, as a pyrnn file and as a plain state_dict
of some kind. Only FormatError (a ValueError), ValueError and TypeError may come out; anything
else (IndexError, KeyError, MemoryError, OverflowError, a crash, a hang) is a bug.

Graph files (format version 2) get a mode of their own: an input starting with "{" is the JSON of
a graph, stored with the constants of the hostile corpus' valid graph file (framing and tensors
right, so the mutations reach the graph checks rather than the safetensors framing). Such a
file must load or raise FormatError, nothing else; a model that loads must run (or refuse its
inputs with ValueError) on zeros of the sizes its inputs declare. The seeds of this mode (the
valid graph and every graph case of tests/hostile/make_corpus.py) are written to the first
corpus directory when the fuzzer starts, and a JSON-aware mutator edits them as JSON most of
the time (a value replaced by an extreme int, another op, a name from elsewhere in the graph,
an empty or nested container; an item dropped or repeated), libFuzzer's byte mutations
otherwise.

    python fuzz/fuzz_load.py [libFuzzer args] [corpus dirs]     # see tools/run_fuzzers.sh

check_one() is also imported by tests/test_fuzz_crashers.py to replay saved crashers."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import random
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
VALID_GRAPH = "{}"  # the corpus' valid graph JSON, set by main()
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
    from pyrnn import _testing

    _testing.set_physical_memory(MEMORY_LIMIT)
    try:
        if data[:1] == b"{":
            _check_graph(data)
        else:
            _check_file(data)
    finally:
        _testing.set_physical_memory(None)


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


# Values a JSON edit may put anywhere: sizes at and past every limit, wrong types, empties.
_EXTREMES: tuple[Any, ...] = (
    0,
    -1,
    1,
    3,
    8,
    2**31 - 1,
    2**31,
    2**40,
    2**62,
    2**62 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    10**30,
    0.5,
    -0.0,
    1e308,
    "inf",
    "-inf",
    "nan",
    True,
    False,
    None,
    "",
    "x",
    "ids",
    [],
    {},
    [None],
    {"tensor": "x"},
    "float32",
    "int64",
)


def _slots(item: Any, found: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in a JSON value, depth first."""
    if isinstance(item, dict):
        for key in list(item):
            found.append((item, key))
            _slots(item[key], found)
    elif isinstance(item, list):
        for index in range(len(item)):
            found.append((item, index))
            _slots(item[index], found)
    return found


def mutate_graph(graph: Any, rng: random.Random) -> Any:
    """One edit of a graph's JSON: a slot's value replaced, or a list item dropped or repeated."""
    from pyrnn.graph import OPS

    slots = _slots(graph, [])
    if not slots:
        return rng.choice(_EXTREMES)
    container, key = rng.choice(slots)
    action = rng.randrange(7)
    value = container[key]
    if action == 6 and isinstance(value, int) and not isinstance(value, bool):
        container[key] = rng.choice((value + 1, value - 1, 2 * value, -value, 0))
    elif action == 0 and isinstance(container, list):
        del container[key]
    elif action == 1 and isinstance(container, list):
        container.insert(key, copy.deepcopy(container[key]))
    elif action == 2:
        container[key] = rng.choice(sorted(OPS))
    elif action == 3:  # a value from elsewhere in the graph: names, shapes, structures
        other, other_key = rng.choice(slots)
        container[key] = copy.deepcopy(other[other_key])
    else:
        container[key] = copy.deepcopy(rng.choice(_EXTREMES))
    return graph


def _mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    rng = random.Random(seed)
    if data[:1] == b"{" and rng.random() < 0.8:
        try:
            # Most graph seeds are refused for one reason already: start over from the valid
            # graph at times, so edits reach the checks past the first.
            graph = json.loads(VALID_GRAPH if rng.random() < 0.3 else data)
        except (ValueError, RecursionError):
            graph = None
        if graph is not None:
            for _ in range(1 + rng.randrange(3)):
                graph = mutate_graph(graph, rng)
            text = json.dumps(graph, separators=(",", ":")).encode()
            if text[:1] == b"{" and len(text) <= max_size:
                return text
    return bytes(atheris.Mutate(data, max_size))


def main() -> None:
    global VALID_GRAPH
    import atheris
    import numpy  # noqa: F401  (imported first: not worth instrumenting)

    VALID_GRAPH = make_corpus().graph_metadata()["graph"]
    directories = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if directories:
        write_graph_seeds(directories[0])
    with atheris.instrument_imports(include=["pyrnn"]):
        import pyrnn  # noqa: F401
    atheris.Setup(sys.argv, check_one, custom_mutator=_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
