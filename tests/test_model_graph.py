"""The graph executor on hand-built graphs, independent of any capture: refusal of malformed
graphs (GraphError at build, ValueError naming the node at plan time), streaming through
windows along time (causal, delayed, strided, pooled) against torch, threads sharing a model,
allocation-free stream steps, pickling and weights."""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from overlap import run_until_overlapped

import pyrnn
from pyrnn import _testing
from pyrnn.graph import Graph, GraphError, InputSpec, Node

LSTM_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def lstm_node(source: str, prefix: str, outputs: list[str], batch_first: bool = True) -> Node:
    return Node(
        "rnn",
        [source, None, None, *(f"{prefix}.{key}_l0" for key in LSTM_KEYS)],
        outputs,
        {
            "mode": "lstm",
            "num_layers": 1,
            "bidirectional": False,
            "batch_first": batch_first,
            "has_biases": True,
        },
    )


def weights(**modules: torch.nn.Module) -> dict[str, np.ndarray]:
    return {
        f"{name}.{key}": value.detach().numpy().copy()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }


def head_model() -> tuple[pyrnn.Model, torch.nn.Module]:
    """Linear -> LSTM -> Linear -> log_softmax, batch_first, as a graph and as torch."""
    torch.manual_seed(0)
    fc, lstm, head = (
        torch.nn.Linear(5, 7),
        torch.nn.LSTM(7, 9, batch_first=True),
        torch.nn.Linear(9, 3),
    )

    class Reference(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(head(lstm(fc(x))[0]), -1)

    graph = Graph(
        [InputSpec("x", "float32", [None, None, 5])],
        {"tensor": "y"},
        [],
        [
            Node("linear", ["x", "fc.weight", "fc.bias"], ["a"]),
            lstm_node("a", "lstm", ["o", "h", "c"]),
            Node("linear", ["o", "head.weight", "head.bias"], ["b"]),
            Node("log_softmax", ["b"], ["y"], {"dim": -1}),
        ],
    )
    constants = weights(fc=fc, lstm=lstm, head=head)
    graph.constants = list(constants)
    return pyrnn.Model(graph, constants), Reference()


# -- refusals ----------------------------------------------------------------------------------
def graph_json(nodes: list[dict[str, Any]], outputs: Any = None) -> dict[str, Any]:
    return {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4]}],
        "outputs": outputs or {"tensor": "y"},
        "constants": [],
        "nodes": nodes,
    }


def node(op: str, inputs: list[Any], outputs: list[str], **attrs: Any) -> dict[str, Any]:
    return {"op": op, "inputs": inputs, "outputs": outputs, "attrs": attrs, "source": ""}


@pytest.mark.parametrize(
    ("nodes", "outputs", "message"),
    [
        ([node("fft", ["x"], ["y"])], None, "unknown op 'fft'"),
        ([node("relu", ["z"], ["y"])], None, "'z' is not defined before"),
        ([node("relu", ["y"], ["y"])], None, "'y' is not defined before"),
        ([node("relu", ["x"], ["x"])], None, "defined twice"),
        ([node("relu", ["x", "x"], ["y"])], None, "expected 1..1 inputs, got 2"),
        ([node("softmax", ["x"], ["y"], dim="last")], None, "attr 'dim': expected an int"),
        ([node("softmax", ["x"], ["y"])], None, "missing fields ['dim']"),
        ([node("relu", ["x"], ["y"])], {"tensor": "nope"}, "'nope' is not a value"),
        ([node("relu", ["x"], ["y"])], {"set": []}, "unknown structure kind"),
    ],
)
def test_malformed_graphs_are_refused_by_name(
    nodes: list[dict[str, Any]], outputs: Any, message: str
) -> None:
    with pytest.raises(GraphError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Graph.from_json(graph_json(nodes, outputs))


def test_core_refuses_what_only_it_can_check() -> None:
    # Weights must be constants; attributes are checked by the op itself.
    graph = Graph.from_json(graph_json([node("linear", ["x", "x"], ["y"])]))
    with pytest.raises(GraphError, match=r"node 0 \(linear\).*must be a constant"):
        pyrnn.Model(graph, {})
    graph = Graph.from_json(graph_json([node("gelu", ["x"], ["y"], approximate="cubic")]))
    with pytest.raises(GraphError, match=r"approximate.*'cubic'"):
        pyrnn.Model(graph, {})


def test_shape_contradictions_name_the_node_at_call_time() -> None:
    graph = Graph.from_json(
        {
            **graph_json([node("linear", ["x", "w"], ["y"])]),
            "constants": ["w"],
        }
    )
    model = pyrnn.Model(graph, {"w": np.ones((3, 5), np.float32)})
    with pytest.raises(
        ValueError, match=r"node 0 \(linear\): linear: expected input \(\.\.\., 5\)"
    ):
        model(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"x: expected shape \(\*, 4\)"):
        model(np.ones((2, 3), np.float32))


def test_absurd_reshape_is_refused_not_allocated() -> None:
    graph = Graph.from_json(graph_json([node("reshape", ["x", 2**40, 2**40, -1], ["y"])]))
    model = pyrnn.Model(graph, {})
    with pytest.raises(ValueError, match="reshape"):
        model(np.ones((2, 4), np.float32))


# -- memory: sizes from a file or an input shape, refused before they are allocated -----------
@pytest.fixture
def small_machine() -> Iterator[Callable[[int | None], None]]:
    """Sets the physical memory graph plans see (the real one is restored afterwards)."""

    try:
        yield _testing.set_physical_memory
    finally:
        _testing.set_physical_memory(None)


def full_model(dims: list[int], output: bool = False) -> pyrnn.Model:
    """x (N, 4) -> relu; full(dims) summed (or returned as is, with `output`)."""
    nodes = [
        node("relu", ["x"], ["y"]),
        node("full", dims, ["f"], value=1.0, dtype="float32"),
        node("sum", ["f"], ["total"], dims=[], keepdim=False),
    ]
    result = "f" if output else "total"
    graph = Graph.from_json(graph_json(nodes, {"tuple": [{"tensor": "y"}, {"tensor": result}]}))
    return pyrnn.Model(graph, {})


def test_an_intermediate_of_2_pow_62_floats_is_refused_not_run() -> None:
    # 2^62 elements pass the element limit, and their 2^64 bytes wrapped to 0: the plan gave
    # the tensor no memory and the fill wrote 16 EiB through it.
    model = full_model([2**31, 2**31])
    message = (
        r"node 1 \(full\): output 'f' of shape \(2147483648, 2147483648\) float32 needs "
        r"16\.0 EiB, more than this machine's physical memory"
    )
    with pytest.raises(ValueError, match=message):
        model(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=message):
        model._core.infer([("float32", [2, 4])])


@pytest.mark.parametrize("output", [False, True])
def test_a_tensor_beyond_physical_memory_is_refused_before_allocating(output: bool) -> None:
    model = full_model([2**40], output)
    with pytest.raises(ValueError, match=r"needs 4\.0 TiB, more than this machine's physical"):
        model(np.ones((2, 4), np.float32))


def test_intermediates_and_outputs_beyond_memory_together_are_refused(
    small_machine: Callable[[int | None], None],
) -> None:
    # a and b live at once (400 KiB each at 25600 rows), and y is as large: 1.2 MiB in all.
    graph = Graph.from_json(
        graph_json(
            [node("relu", ["x"], ["a"]), node("neg", ["x"], ["b"]), node("add", ["a", "b"], ["y"])]
        )
    )
    model = pyrnn.Model(graph, {})
    small_machine(2**20)
    with pytest.raises(
        ValueError,
        match=r"running the graph on inputs x \(25600, 4\): its intermediate tensors and outputs "
        r"at once needs 1\.2 MiB, more than this machine's physical memory \(1\.0 MiB\)",
    ):
        model(np.ones((25600, 4), np.float32))
    np.testing.assert_array_equal(model(np.ones((10000, 4), np.float32)), 0)


def test_kernel_scratch_beyond_memory_is_refused(
    small_machine: Callable[[int | None], None],
) -> None:
    # linear with 3 outputs writes 16-wide rows into scratch: 256 rows of 64 bytes, 16 KiB,
    # more than the 12 KiB machine has left after x (6 KB) and y (3.6 KB).
    graph = Graph.from_json({**graph_json([node("linear", ["x", "w"], ["y"])]), "constants": ["w"]})
    model = pyrnn.Model(graph, {"w": np.ones((3, 4), np.float32)})
    small_machine(12 * 1024)
    with pytest.raises(
        ValueError,
        match=r"node 0 \(linear\): a buffer of 16384 bytes would take this plan's kernel "
        r"scratch past this machine's physical memory",
    ):
        model(np.ones((300, 4), np.float32))
    np.testing.assert_array_equal(model(np.ones((10, 4), np.float32)), 4)


def test_a_weight_two_nodes_pack_alike_is_packed_once(
    small_machine: Callable[[int | None], None],
) -> None:
    # Both linear nodes take the one packed copy of the 1 MiB weight.
    nodes = [node("linear", ["x", "w"], ["a"]), node("linear", ["a", "w"], ["y"])]
    graph = Graph.from_json({**graph_json(nodes), "constants": ["w"]})
    graph.inputs[0].shape = [None, 512]
    weight = np.eye(512, dtype=np.float32)
    x = np.ones((2, 512), np.float32)
    small_machine(3 * 2**19)  # one packed copy fits, a second would not
    np.testing.assert_array_equal(pyrnn.Model(graph, {"w": weight})(x), x)
    small_machine(2**19)  # not even one
    with pytest.raises(
        GraphError,
        match=r"node 0 \(linear\): a buffer of \d+ bytes would take the graph's constants and "
        r"packed weights past this machine's physical memory",
    ):
        pyrnn.Model(graph, {"w": weight})


def test_a_weight_packed_in_two_layouts_is_packed_for_each(isa: str) -> None:
    """One constant as an LSTM's recurrent weights (4 gates of 9 units) and as a linear
    layer's weight (one block of 36 rows): two packings, each node reading its own."""
    torch.manual_seed(1)
    lstm, fc = torch.nn.LSTM(9, 9, batch_first=True), torch.nn.Linear(9, 36)
    given = weights(lstm=lstm)
    given["fc.weight"] = given["lstm.weight_hh_l0"]
    given["fc.bias"] = fc.bias.detach().numpy().copy()

    def model(shared: bool) -> pyrnn.Model:
        graph = Graph(
            [InputSpec("x", "float32", [None, None, 9])],
            {"tensor": "y"},
            [*given] if not shared else [k for k in given if k != "fc.weight"],
            [
                lstm_node("x", "lstm", ["seq", "h", "c"]),
                Node(
                    "linear",
                    ["seq", "lstm.weight_hh_l0" if shared else "fc.weight", "fc.bias"],
                    ["y"],
                ),
            ],
        )
        return pyrnn.Model(graph, {k: v for k, v in given.items() if k in graph.constants})

    x = np.random.default_rng(0).standard_normal((2, 5, 9)).astype(np.float32)
    shared = model(True)
    assert shared(x).tobytes() == model(False)(x).tobytes()
    with torch.no_grad():
        fc.weight.copy_(lstm.weight_hh_l0)
        expected = fc(lstm(torch.from_numpy(x))[0]).numpy()
    np.testing.assert_allclose(shared(x), expected, rtol=1e-5, atol=1e-5)
    assert shared.state_dict()["lstm.weight_hh_l0"].tobytes() == given["fc.weight"].tobytes()


INFER_PEAK = """
import resource
import numpy as np
import pyrnn
from pyrnn.graph import Graph
graph = Graph.from_json({
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4]}],
    "outputs": {"tuple": [{"tensor": "y"}, {"tensor": "total"}]},
    "constants": [],
    "nodes": [
        {"op": "relu", "inputs": ["x"], "outputs": ["y"], "attrs": {}, "source": ""},
        {"op": "full", "inputs": [2**27], "outputs": ["f"],
         "attrs": {"value": 1.0, "dtype": "float32"}, "source": ""},
        {"op": "sum", "inputs": ["f"], "outputs": ["total"],
         "attrs": {"dims": [], "keepdim": False}, "source": ""},
    ],
})
model = pyrnn.Model(graph, {})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
shapes = model._core.infer([("float32", [8, 4])])
assert shapes["f"] == (2**27,), shapes
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB on Linux
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
def test_infer_is_shape_inference_and_allocates_nothing(tmp_path: Path) -> None:
    # A 512 MiB intermediate: a plan would allocate and zero it. Measured in a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", INFER_PEAK],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the source tree, whose pyrnn/ lacks the extension
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 128 * 1024, "infer allocated the plan's tensors"


# -- running -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 30, 5), (1, 1, 5), (3, 57, 5)])
def test_head_model_matches_torch(isa: str, shape: tuple[int, ...]) -> None:
    model, reference = head_model()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)


def test_a_linear_read_only_by_a_recurrent_layer_folds_into_its_input_weights() -> None:
    from pyrnn.graph_passes import fold_linear_into_recurrent

    model, reference = head_model()
    meta = model._meta
    folded, derived = fold_linear_into_recurrent(model.graph, meta)
    assert [node.op for node in folded.nodes] == ["rnn", "linear", "log_softmax"]
    used = {x for node in folded.nodes for x in node.inputs}
    assert "fc.weight" not in used and "lstm.weight_ih_l0" not in used
    # The originals stay constants of the folded graph (state_dict reads them), read by no node.
    assert set(model.graph.constants) < set(folded.constants)
    state = model.state_dict()
    (dtype, shape), compute = derived["_folded0.0.w_ih"]
    w_ih, w_hh = compute(state.__getitem__), state["lstm.weight_ih_l0"]
    assert (dtype, shape) == ("float32", w_ih.shape)
    np.testing.assert_allclose(
        w_ih, w_hh.astype(np.float64) @ model.state_dict()["fc.weight"], rtol=1e-6, atol=1e-7
    )
    # The model still shows and saves what it was given.
    assert [node.op for node in model.graph.nodes] == ["linear", "rnn", "linear", "log_softmax"]
    # Not folded: the linear output read elsewhere too, or a bias with nowhere to go.
    twice = Graph(
        model.graph.inputs,
        {"tuple": [{"tensor": "y"}, {"tensor": "a"}]},
        model.graph.constants,
        model.graph.nodes,
    )
    assert fold_linear_into_recurrent(twice, meta)[0] is twice
    no_bias = Graph(
        model.graph.inputs,
        model.graph.outputs,
        model.graph.constants,
        [
            *model.graph.nodes[:1],
            Node(
                "rnn",
                ["a", None, None, "lstm.weight_ih_l0", "lstm.weight_hh_l0"],
                ["o", "h", "c"],
                {**model.graph.nodes[1].attrs, "has_biases": False},
            ),
            *model.graph.nodes[2:],
        ],
    )
    assert fold_linear_into_recurrent(no_bias, meta)[0] is no_bias
    # Folded, the model still matches torch (test_head_model_matches_torch), streamed too.
    x = np.random.default_rng(7).standard_normal((2, 9, 5)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)


def test_empty_sequences_give_empty_outputs() -> None:
    # torch refuses zero steps; pyrnn returns zero output frames, as its RNN modules do.
    model, _ = head_model()
    assert model(np.ones((2, 0, 5), np.float32)).shape == (2, 0, 3)
    assert model(np.ones((0, 4, 5), np.float32)).shape == (0, 4, 3)


@pytest.mark.parametrize("weights", ["fp32", "int8"])
def test_threads_share_a_model(weights: str) -> None:
    model, _ = head_model()
    if weights != "fp32":
        model = pyrnn.quantize(model, weights)
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((2, 300 + i % 3, 5)).astype(np.float32) for i in range(8)]
    expected = [model(x) for x in inputs]

    def run() -> None:
        results: list[Any] = [None] * 8

        def work(i: int) -> None:
            for _ in range(20):
                results[i] = model(inputs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_array_equal(got, want)

    # Plans are cached per input shape and shared (three shapes here, 300+ steps so that a call
    # computes long enough for others to get in): only calls that overlap exercise that.
    run_until_overlapped(run)


@pytest.mark.parametrize("weights", ["fp32", "fp16", "bf16", "int8"])
def test_stream_step_feed_forward_agree_and_step_allocates_nothing(isa: str, weights: str) -> None:
    model, _ = head_model()
    if weights != "fp32":
        model = pyrnn.quantize(model, weights)
    x = np.random.default_rng(3).standard_normal((2, 40, 5)).astype(np.float32)
    full = model(x)
    stream = model.stream(batch=2)
    steps = np.stack([stream.step(np.ascontiguousarray(x[:, t])) for t in range(40)], 1)
    np.testing.assert_allclose(steps, full, rtol=1e-6, atol=1e-6)
    stream.reset()
    fed = np.concatenate([stream.feed(x[:, :7]), stream.feed(x[:, 7:])], 1)
    np.testing.assert_allclose(fed, full, rtol=1e-6, atol=1e-6)

    single = model.stream()
    frame, out = np.ones(5, np.float32), np.empty(3, np.float32)
    assert peak_bytes_during(lambda: single.step(frame, out=out)) == 0
    chunk, outs = np.ones((2, 9, 5), np.float32), np.empty((2, 9, 3), np.float32)
    assert peak_bytes_during(lambda: stream.feed(chunk, out=outs)) == 0
    # The measurement sees allocations: without out, each call makes an array.
    assert peak_bytes_during(lambda: single.step(frame)) > 0


def peak_bytes_during(call: Any, repeats: int = 200) -> int:
    """Peak bytes Python allocates over `repeats` calls, after one call outside the count."""
    loop = itertools.repeat(None, repeats)  # an iterator made before measuring (iter(range) is not)
    tracemalloc.start()
    try:
        call()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in loop:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def test_stream_out_must_not_overlap_input() -> None:
    model, _ = head_model()
    stream = model.stream(batch=2)
    buffer = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="out: expected"):
        stream.step(buffer, out=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="overlaps input 'x'"):
        stream.step(buffer, out=buffer.reshape(-1)[:6].reshape(2, 3))


def test_repr_lists_layers_like_torch() -> None:
    model, _ = head_model()
    assert repr(model) == (
        "Model(\n"
        "  (input x): float32[*, *, 5]\n"
        "  linear(5, 7)\n"
        "  lstm(7, 9, batch_first=True)\n"
        "  linear(9, 3)\n"
        "  log_softmax(dim=-1)\n"
        ")"
    )


def test_pickle_state_dict_and_stream_state_round_trip() -> None:
    model, _ = head_model()
    x = np.random.default_rng(4).standard_normal((1, 6, 5)).astype(np.float32)
    twin = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(twin(x), model(x))
    weights_before = model.state_dict()
    scaled = {key: value * 0.5 for key, value in weights_before.items()}
    model.load_state_dict(scaled)
    assert not np.array_equal(model(x), twin(x))
    model.load_state_dict(weights_before)
    np.testing.assert_array_equal(model(x), twin(x))
    with pytest.raises(ValueError, match="missing keys"):
        model.load_state_dict({})

    stream = model.stream()
    for t in range(3):
        stream.step(x[0, t])
    fork, restored = stream.clone(), pickle.loads(pickle.dumps(stream))
    assert sorted(stream.state) == ["o.c", "o.h"]
    a, b, c = stream.step(x[0, 3]), fork.step(x[0, 3]), restored.step(x[0, 3])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    "given",
    [["fc.weight"], ["fc.bias"], ["lstm.weight_ih_l0"], ["head.weight"], ["lstm.bias_hh_l0"]],
)
def test_loading_some_weights_changes_those_and_what_is_made_from_them(given: list[str]) -> None:
    """The new core shares the weights not given with the old one; a folded product made from a
    given weight (fc into the LSTM's input weights) is made anew."""
    model, _ = head_model()
    x = np.random.default_rng(6).standard_normal((2, 5, 5)).astype(np.float32)
    before = model(x)
    stream = model.stream(batch=2)
    old = [stream.step(x[:, t]) for t in range(5)]
    weights_now = model.state_dict()
    changed = {key: weights_now[key] * 0.75 + 0.125 for key in given}
    model.load_state_dict(changed, strict=False)
    graph = head_model()[0].graph
    expected = pyrnn.Model(graph, {**weights_now, **changed})
    assert model(x).tobytes() == expected(x).tobytes()
    assert not np.array_equal(model(x), before)
    for key, value in model.state_dict().items():
        assert value.tobytes() == expected.state_dict()[key].tobytes(), key
    # A stream made before keeps the weights it was made with.
    stream.reset()
    for t in range(5):
        np.testing.assert_array_equal(stream.step(x[:, t]), old[t])


# -- windows along time --------------------------------------------------------------------------
def window_model(
    kernel: int, stride: int, padding: int, dilation: int, pool: tuple[Any, ...] | None
) -> tuple[pyrnn.Model, Any]:
    """conv1d (+ pooling) over (N, 4, L) -> permute -> LSTM, as a graph and as torch."""
    torch.manual_seed(kernel * 100 + stride * 10 + padding)
    conv = torch.nn.Conv1d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation)
    lstm = torch.nn.LSTM(6, 5, batch_first=True)
    nodes = [
        Node(
            "conv1d",
            ["x", "conv.weight", "conv.bias"],
            ["c"],
            {"stride": stride, "padding": [padding, padding], "dilation": dilation, "groups": 1},
        )
    ]
    last = "c"
    if pool is not None:
        kind, size, step, pad = pool
        attrs: dict[str, Any] = {"kernel_size": size, "stride": step, "padding": pad}
        attrs.update({"ceil_mode": False})
        attrs.update({"dilation": 1} if kind == "max_pool1d" else {"count_include_pad": True})
        nodes.append(Node(kind, ["c"], ["p"], attrs))
        last = "p"
    nodes += [
        Node("permute", [last], ["q"], {"dims": [0, 2, 1]}),
        lstm_node("q", "lstm", ["o", "h", "cc"]),
    ]
    constants = weights(conv=conv, lstm=lstm)
    graph = Graph(
        [InputSpec("x", "float32", [None, 4, None])],
        {"tuple": [{"tensor": "o"}, {"tensor": "h"}]},
        list(constants),
        nodes,
    )

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            y = conv(torch.from_numpy(x))
            if pool is not None:
                kind, size, step, pad = pool
                if kind == "max_pool1d":
                    y = torch.nn.functional.max_pool1d(y, size, step, pad)
                else:
                    y = torch.nn.functional.avg_pool1d(y, size, step, pad, count_include_pad=True)
            return lstm(y.transpose(1, 2))[0].numpy()

    return pyrnn.Model(graph, constants), reference


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "pool"),
    [
        (3, 1, 2, 1, None),  # causal: one output per frame, no delay
        (3, 1, 1, 1, None),  # "same": outputs one frame late
        (3, 2, 2, 1, None),  # strided
        (4, 3, 0, 2, None),  # dilated, strided, unpadded
        (5, 2, 4, 1, ("max_pool1d", 3, 2, 1)),
        (3, 1, 2, 1, ("avg_pool1d", 2, 2, 1)),
    ],
)
def test_windows_along_time_stream_like_forward(
    isa: str, kernel: int, stride: int, padding: int, dilation: int, pool: Any
) -> None:
    model, reference = window_model(kernel, stride, padding, dilation, pool)
    x = np.random.default_rng(5).standard_normal((2, 4, 50)).astype(np.float32)
    full, _ = model(x)
    np.testing.assert_allclose(full, reference(x), rtol=1e-5, atol=1e-5)
    stream = model.stream(batch=2)
    frames = [stream.step(np.ascontiguousarray(x[:, :, t]))[0] for t in range(50)]
    emitted = [frame for frame in frames if frame is not None]
    # The stream gives every output frame that does not need padding past the current frame:
    # the first once the conv (and the pool over conv outputs) has seen its window's frames.
    delay = dilation * (kernel - 1) - padding
    if pool is not None:
        delay += (pool[1] - 1 - pool[3]) * stride
    assert frames[delay] is not None and all(frame is None for frame in frames[:delay])
    np.testing.assert_allclose(np.stack(emitted, 1), full[:, : len(emitted)], rtol=1e-6, atol=1e-6)
    stream.reset()
    fed = np.concatenate([stream.feed(x[:, :, :23])[0], stream.feed(x[:, :, 23:])[0]], 1)
    np.testing.assert_array_equal(fed, np.stack(emitted, 1))
    if stride > 1 or delay > 0:
        with pytest.raises(ValueError, match="share the frame count"):
            stream.reset(0)


def test_windows_that_need_the_future_are_refused() -> None:
    model, _ = window_model(3, 1, 3, 1, None)
    with pytest.raises(ValueError, match=r"node 0 \(conv1d\) cannot stream: conv1d pads 3"):
        model.stream(batch=2)
