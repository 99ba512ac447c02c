"""Replays what the fuzzers (fuzz/fuzz_load.py, fuzz/fuzz_forward.py, run by
tools/run_fuzzers.sh) found: every file in tests/hostile/crashers/ goes back through the harness
named by its prefix and must now pass. Also runs both harnesses on fixed inputs, so a harness
that breaks is noticed here rather than in a CI fuzz run."""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import pyrnn

ROOT = Path(__file__).resolve().parent.parent
CRASHERS = ROOT / "tests" / "hostile" / "crashers"
CORPUS = ROOT / "tests" / "hostile" / "corpus"
FORWARD_CORPUS = ROOT / "fuzz" / "corpus" / "forward"


def _harness(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "fuzz" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


HARNESSES = {name: _harness(f"fuzz_{name}") for name in ("load", "forward")}
CRASHER_FILES = sorted(path.name for path in CRASHERS.iterdir() if path.is_file())


def test_crashers_are_named_for_their_harness() -> None:
    assert CRASHER_FILES, "the regression set holds at least the first finding"
    for name in CRASHER_FILES:
        assert name.split("-")[0] in HARNESSES, f"{name}: prefix must be load- or forward-"


@pytest.mark.parametrize("name", CRASHER_FILES)
def test_crasher_no_longer_fails(name: str) -> None:
    HARNESSES[name.split("-")[0]].check_one((CRASHERS / name).read_bytes())


def test_load_harness_on_the_corpus() -> None:
    for path in sorted(CORPUS.iterdir()):
        data = path.read_bytes()
        HARNESSES["load"].check_one(data)
        HARNESSES["load"].check_one(data + bytes([HARNESSES["load"].PT_MARKER]))


def test_load_harness_on_its_graph_seeds_and_their_json_edits(tmp_path: Path) -> None:
    harness = HARNESSES["load"]
    harness.write_graph_seeds(str(tmp_path))
    seeds = sorted(tmp_path.iterdir())
    assert len(seeds) > 20  # the valid graph and the graph cases whose graph is JSON
    rng = random.Random(11)
    for path in seeds:
        harness.check_one(path.read_bytes())
    valid = json.loads(harness.make_corpus().graph_metadata()["graph"])
    for _ in range(300):  # what the fuzzer's JSON-aware mutator makes of the valid graph
        graph = copy.deepcopy(valid)
        for _ in range(1 + rng.randrange(3)):
            graph = harness.mutate_graph(graph, rng)
        harness.check_one(json.dumps(graph).encode())


def test_forward_harness_on_seeded_inputs() -> None:
    rng = random.Random(5)
    for _ in range(300):
        HARNESSES["forward"].check_one(bytes(rng.randrange(256) for _ in range(rng.randrange(80))))


def test_forward_harness_on_its_seed_corpus() -> None:
    """The committed seeds of fuzz_forward (fuzz/corpus/forward) replay cleanly and together
    reach every module kind through forward and through streams, and a forward and a stream
    feed longer than one of the core's time chunks, so a fuzz run on a fresh clone starts there.
    Fails if the harness stops reaching them (sizes capped below a chunk again, a kind dropped)
    or no longer reads the seeds the same way (rerun fuzz/make_forward_corpus.py). Replaying
    also checks every output's shape, c_n and an LSTM cell's c included."""
    harness = HARNESSES["forward"]
    seeds = sorted(FORWARD_CORPUS.iterdir())
    assert seeds
    with harness.trace() as seen:
        for path in seeds:
            harness.check_one(path.read_bytes())
    missing = _harness("make_forward_corpus").goals(harness) - seen
    assert not missing, f"the seed corpus no longer reaches {sorted(missing)}"


# The first finding (forward-unbatched-batch-first): unbatched input to a batch_first module
# returned out of shape (1, D*P) holding step 0 only; PyTorch ignores batch_first when unbatched.
@pytest.mark.parametrize("factory", [pyrnn.RNN, pyrnn.GRU, pyrnn.LSTM])
def test_unbatched_input_ignores_batch_first(factory: type) -> None:
    x = np.random.default_rng(3).standard_normal((9, 4)).astype(np.float32)
    first = factory(4, 5, num_layers=2, bidirectional=True, batch_first=True, seed=1)
    plain = factory(4, 5, num_layers=2, bidirectional=True, batch_first=False, seed=1)
    out, state = first(x)
    expected_out, expected_state = plain(x)
    batched_out, _ = plain(x[:, None, :])
    assert out.shape == (9, 10)
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(out, batched_out[:, 0, :])
    for got, want in zip(
        state if isinstance(state, tuple) else (state,),
        expected_state if isinstance(expected_state, tuple) else (expected_state,),
        strict=True,
    ):
        assert got.shape == (4, 5)
        np.testing.assert_array_equal(got, want)
