"""`import pyrnn`, pyrnn.load (pyrnn files, converted models' graph files and plain state_dicts by
prefix), running and saving all work in a process where importing torch, onnx or onnxruntime
fails."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file as torch_save_file

import pyrnn

BLOCKER = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = ("torch", "onnx", "onnxruntime")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    for name in BLOCKED:
        sys.modules[name] = None  # `import torch` now raises ImportError
    """
)


def _run(script: str, cwd: Path) -> str:
    """Runs `script` after the blocker in a fresh interpreter; returns its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_blocker_blocks(tmp_path: Path) -> None:
    """The harness itself can fail: torch really cannot be imported under the blocker."""
    out = _run(
        """
        for name in ("torch", "onnx", "onnxruntime", "torch.nn"):
            try:
                __import__(name)
            except ImportError:
                print("blocked", name)
        """,
        tmp_path,
    )
    assert out.split("\n")[:4] == [
        "blocked torch",
        "blocked onnx",
        "blocked onnxruntime",
        "blocked torch.nn",
    ]


def test_import_load_run_save_without_torch(tmp_path: Path) -> None:
    module = pyrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    pyrnn.save(module, tmp_path / "model.safetensors")
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected_out, (expected_h, _) = module(x)

    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, num_layers=2)
    state = {f"encoder.rnn.{k}": v for k, v in gru.state_dict().items()}
    state["head.weight"] = torch.zeros(2, 4)
    torch_save_file(state, tmp_path / "plain.safetensors")
    with torch.no_grad():
        expected_gru, _ = gru(torch.from_numpy(x))

    _run(
        """
        import sys
        import numpy as np
        import pyrnn

        x = np.load("x.npy")
        model = pyrnn.load("model.safetensors")
        out, (h, c) = model(x)
        np.save("out.npy", out)
        np.save("h.npy", h)
        gru = pyrnn.load("plain.safetensors", kind="gru", prefix="encoder.rnn.")
        np.save("gru.npy", gru(x)[0])
        pyrnn.save(gru, "gru.safetensors")
        assert type(pyrnn.load("gru.safetensors")).__name__ == "GRU"
        try:
            pyrnn.from_torch(object())
        except ImportError:
            pass
        else:
            raise AssertionError("from_torch ran without torch")
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in
                        ("torch", "onnx", "onnxruntime") and sys.modules[name] is not None)
        assert not loaded, loaded
        """,
        tmp_path,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected_out)
    np.testing.assert_array_equal(np.load(tmp_path / "h.npy"), expected_h)
    assert np.abs(np.load(tmp_path / "gru.npy") - expected_gru.numpy()).max() <= 1e-5


class _Tagger(torch.nn.Module):
    """Embedding, a bidirectional GRU, layer norm and a linear head, with dict outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(30, 6)
        self.gru = torch.nn.GRU(6, 5, batch_first=True, bidirectional=True)
        self.norm = torch.nn.LayerNorm(10)
        self.head = torch.nn.Linear(10, 4)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        states, last = self.gru(self.embed(tokens))
        return {"tags": self.head(self.norm(states)).log_softmax(-1), "last": last}


def test_a_converted_model_loads_and_runs_without_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tagger = _Tagger().eval()
    model = pyrnn.from_torch(tagger, torch.randint(0, 30, (4, 12)))
    assert isinstance(model, pyrnn.Model)
    pyrnn.save(model, tmp_path / "tagger.safetensors")
    tokens = np.random.default_rng(1).integers(0, 30, (3, 17))
    np.save(tmp_path / "tokens.npy", tokens)
    expected = model(tokens)

    _run(
        """
        import sys
        import numpy as np
        import pyrnn

        model = pyrnn.load("tagger.safetensors")
        assert type(model).__name__ == "Model", type(model)
        out = model(np.load("tokens.npy"))
        np.save("tags.npy", out["tags"])
        np.save("last.npy", out["last"])
        pyrnn.save(model, "again.safetensors")
        again = pyrnn.load("again.safetensors")
        assert np.array_equal(again(np.load("tokens.npy"))["tags"], out["tags"])
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in
                        ("torch", "onnx", "onnxruntime") and sys.modules[name] is not None)
        assert not loaded, loaded
        """,
        tmp_path,
    )
    np.testing.assert_array_equal(np.load(tmp_path / "tags.npy"), expected["tags"])
    np.testing.assert_array_equal(np.load(tmp_path / "last.npy"), expected["last"])
    with torch.no_grad():
        want = tagger(torch.from_numpy(tokens))["tags"].numpy()
    # The file changes nothing; against torch, float32 rounding of a few ops: 1e-5 + 1e-5 |ref|.
    assert np.all(np.abs(np.load(tmp_path / "tags.npy") - want) <= 1e-5 + 1e-5 * np.abs(want))


def test_import_pyrnn_does_not_import_torch(tmp_path: Path) -> None:
    """Without the blocker too: a plain `import pyrnn` leaves torch and onnx unimported."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pyrnn; pyrnn.cpu_info(); "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_graph_format_and_capture_module_import_without_torch(tmp_path: Path) -> None:
    """The graph format loads without torch; the capture module imports torch only to capture."""
    _run(
        """
        from pyrnn.graph import ConversionError, Graph
        import pyrnn.capture_torch as capture_torch

        graph = Graph.from_json({
            "inputs": [
                {"name": "x", "dtype": "float32", "shape": [None, 4], "ranges": [[0, 3, None]]}
            ],
            "outputs": {"tuple": [{"tensor": "y"}, {"none": None}]},
            "constants": ["w"],
            "nodes": [{"op": "linear", "inputs": ["x", "w", None], "outputs": ["y"],
                       "attrs": {}, "source": "fc (model.py:3)"}],
        })
        assert graph.inputs[0].ranges == [(0, 3, None)]
        assert issubclass(ConversionError, ValueError)
        try:
            capture_torch.capture(object(), ())
        except ImportError:
            pass
        else:
            raise AssertionError("capture ran without torch")
        """,
        tmp_path,
    )
