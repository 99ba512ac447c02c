"""Writes the hostile-file corpus: malformed model files that pyrnn.load must refuse with
FormatError. Seeded and deterministic; rerun after changing a case, never hand-edit the files:

    python tests/hostile/make_corpus.py            # rewrites tests/hostile/corpus/
    python tests/hostile/make_corpus.py --check    # exits 1 if the committed files differ

Each case is (name, bytes, kind, expected message fragment). `kind` is passed to pyrnn.load
(None for pyrnn files). MANIFEST.json records every case for tests/test_hostile_files.py.
The files are built by hand here, not by pyrnn.save, so a bug in the writer cannot hide one in
the reader; `valid_file()` is the base that every mutation starts from, and it must load.
`valid_graph_file()` is the same for graph files (format version 2, a pyrnn.Model): the graph
cases are mutations of `GRAPH` and its constants. `quantized_file()` and `quantized_graph_file()`
are the bases of quantised models (int8 matrices with their scales)."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SEED = 20261125
# The base module: RNN(input_size=2, hidden_size=3), float32.
CONFIG = {
    "batch_first": False,
    "bias": True,
    "bidirectional": False,
    "dropout": 0.0,
    "hidden_size": 3,
    "input_size": 2,
    "kind": "rnn",
    "nonlinearity": "tanh",
    "num_layers": 1,
}
SHAPES = {
    "weight_ih_l0": (3, 2),
    "weight_hh_l0": (3, 3),
    "bias_ih_l0": (3,),
    "bias_hh_l0": (3,),
}


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    return {key: rng.uniform(-0.5, 0.5, shape).astype("<f4") for key, shape in SHAPES.items()}


def raw_header(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def safetensors(header: bytes | str | dict[str, Any], data: bytes, pad: bool = True) -> bytes:
    """A safetensors file: 8-byte little-endian header length, the header, the data."""
    if isinstance(header, dict):
        header = raw_header(header)
    elif isinstance(header, str):
        header = header.encode()
    if pad:  # the format pads the header with spaces to a multiple of 8
        header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


class BF16(np.ndarray):
    """A uint16 array of bfloat16 bits, stored as BF16."""


def bf16(values: np.ndarray) -> np.ndarray:
    """bfloat16 bits of float32 `values` (truncated: any bits are a valid bfloat16)."""
    bits = (np.asarray(values, "<f4").view("<u4") >> 16).astype("<u2")
    return bits.view(BF16)


def layout(
    tensors: dict[str, np.ndarray], metadata: dict[str, str] | None
) -> tuple[dict[str, Any], bytes]:
    """The header dict and data bytes of `tensors`, laid out back to back in key order."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    dtypes = {"<f2": "F16", "<f4": "F32", "<f8": "F64", "<i8": "I64", "|i1": "I8"}
    for key, array in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[key] = {
            "dtype": "BF16" if isinstance(array, BF16) else dtypes[array.dtype.str],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(blob)],
        }
        data += blob
    return header, data


def pyrnn_metadata(config: Any = None, **override: str) -> dict[str, str]:
    metadata = {
        "format": "pyrnn",
        "version": "1",
        "config": json.dumps(CONFIG if config is None else config, sort_keys=True),
    }
    metadata.update(override)
    return {key: value for key, value in metadata.items() if value is not None}


def valid_file() -> bytes:
    header, data = layout(weights(), pyrnn_metadata())
    return safetensors(header, data)


def with_header(edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The valid file with its header dict edited (data unchanged)."""
    header, data = layout(weights(), pyrnn_metadata())
    edit(header)
    return safetensors(header, data)


def header_text_edit(old: bytes, new: bytes) -> bytes:
    """The valid file with its header's JSON text edited (for what json.dumps cannot write)."""
    header, data = layout(weights(), pyrnn_metadata())
    text = raw_header(header)
    assert old in text
    return safetensors(text.replace(old, new, 1), data)


def with_config(**changes: Any) -> bytes:
    config = {**CONFIG, **changes}
    config = {key: value for key, value in config.items() if value is not ...}
    header, data = layout(weights(), pyrnn_metadata(config))
    return safetensors(header, data)


def plain(tensors: dict[str, np.ndarray]) -> bytes:
    header, data = layout(tensors, None)
    return safetensors(header, data)


def lstm_weights(hidden: int = 2, inputs: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    shapes = {
        "weight_ih_l0": (4 * hidden, inputs),
        "weight_hh_l0": (4 * hidden, hidden),
        "bias_ih_l0": (4 * hidden,),
        "bias_hh_l0": (4 * hidden,),
    }
    return {key: rng.uniform(-0.5, 0.5, shape).astype("<f4") for key, shape in shapes.items()}


# -- quantised modules (format version 1, weight_dtype in the config) ------------------------
def int8(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 matrix, float32 scales): symmetric, one scale per row, max |w| / 127."""
    scales = (np.abs(values).max(axis=1) / 127).astype("<f4")
    return np.rint(values / scales[:, None]).astype("i1"), scales


def quantized_weights(dtype: str = "int8") -> dict[str, np.ndarray]:
    """The base RNN's tensors stored as `dtype` (matrices narrow, biases float32)."""
    tensors: dict[str, np.ndarray] = {}
    for key, value in weights().items():
        if not key.startswith("weight_"):
            tensors[key] = value
        elif dtype == "int8":
            tensors[key], tensors[key + "_scale"] = int8(value)
        else:
            tensors[key] = value.astype("<f2") if dtype == "fp16" else bf16(value)
    return tensors


def quantized_file(dtype: str = "int8", config: Any = None, **changes: np.ndarray | None) -> bytes:
    """A quantised base RNN, with tensors replaced, added or (None) removed."""
    tensors = {**quantized_weights(dtype), **changes}
    tensors = {key: value for key, value in tensors.items() if value is not None}
    declared = {**CONFIG, "weight_dtype": dtype} if config is None else config
    header, data = layout(tensors, pyrnn_metadata(declared))
    return safetensors(header, data)


def scale_with(value: float) -> np.ndarray:
    scales = quantized_weights()["weight_hh_l0_scale"].copy()
    scales[1] = value
    return scales


def quantized_cases() -> Iterator[Case]:
    """Quantised module files whose dtypes or int8 scales are hostile."""
    finite = "every scale must be finite and > 0"
    yield "q_scale_nan", quantized_file(weight_hh_l0_scale=scale_with(np.nan)), None, finite
    yield "q_scale_inf", quantized_file(weight_hh_l0_scale=scale_with(np.inf)), None, finite
    yield "q_scale_zero", quantized_file(weight_hh_l0_scale=scale_with(0.0)), None, finite
    yield "q_scale_negative", quantized_file(weight_hh_l0_scale=scale_with(-0.5)), None, finite
    yield (
        "q_scale_shape",
        quantized_file(weight_hh_l0_scale=np.ones(2, "<f4")),
        None,
        "int8 scales must be F32 of shape [3]",
    )
    yield (
        "q_scale_f16",
        quantized_file(weight_hh_l0_scale=np.ones(3, "<f2")),
        None,
        "int8 scales must be F32 of shape [3]",
    )
    yield (
        "q_int8_without_scale",
        quantized_file(weight_hh_l0_scale=None),
        None,
        "int8 tensor 'weight_hh_l0' has no scale tensor 'weight_hh_l0_scale'",
    )
    yield (
        "q_scale_without_int8",
        quantized_file("fp16", weight_ih_l0_scale=np.ones(3, "<f4")),
        None,
        "a scale with no int8 tensor",
    )
    yield (
        "q_scale_of_bias",
        quantized_file(bias_ih_l0_scale=np.ones(3, "<f4")),
        None,
        "a scale with no int8 tensor",
    )
    yield (
        "q_int8_declared_f16_stored",
        quantized_file(weight_ih_l0=weights()["weight_ih_l0"].astype("<f2")),
        None,
        "weight_dtype 'int8' stores its weight matrices as I8), got 'F16'",
    )
    yield (
        "q_fp16_declared_bf16_stored",
        quantized_file("fp16", weight_hh_l0=bf16(weights()["weight_hh_l0"])),
        None,
        "weight_dtype 'fp16' stores its weight matrices as F16), got 'BF16'",
    )
    yield (
        "q_fp32_declared_int8_stored",
        quantized_file(config=CONFIG),
        None,
        "the file's weight_dtype is fp32",
    )
    yield (
        "q_bias_bf16",
        quantized_file(bias_ih_l0=bf16(weights()["bias_ih_l0"])),
        None,
        "biases stay float32 with weight_dtype 'int8'), got 'BF16'",
    )
    yield (
        "q_bias_f16",
        quantized_file("fp16", bias_hh_l0=weights()["bias_hh_l0"].astype("<f2")),
        None,
        "biases stay float32 with weight_dtype 'fp16'), got 'F16'",
    )
    yield (
        "q_bias_int8",
        quantized_file(bias_hh_l0=int8(weights()["bias_hh_l0"][None])[0][0]),
        None,
        "got 'I8'",
    )
    yield (
        "q_weight_dtype_unknown",
        quantized_file(config={**CONFIG, "weight_dtype": "int4"}),
        None,
        "weight_dtype: expected one of",
    )
    yield (
        "q_plain_int8",
        plain(quantized_weights()),
        "rnn",
        "got 'I8'",
    )


# -- graph files (format version 2) --------------------------------------------------------
# x (N, T, 2) through a tanh RNN of 3 units, its last step through a linear layer; int64 token
# ids shifted by an int64 constant and looked up in an embedding table.
GRAPH: dict[str, Any] = {
    "inputs": [
        {"name": "x", "dtype": "float32", "shape": [None, None, 2], "ranges": [[1, 1, None]]},
        {"name": "ids", "dtype": "int64", "shape": [None]},
    ],
    "outputs": {
        "tuple": [
            {"tensor": "logits"},
            {"dict": [["h", {"tensor": "h_n"}], ["vectors", {"tensor": "vectors"}]]},
        ]
    },
    "constants": [
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "fc.weight",
        "fc.bias",
        "embed.weight",
        "offset",
    ],
    "nodes": [
        {
            "op": "rnn",
            "inputs": [
                "x",
                None,
                None,
                "rnn.weight_ih_l0",
                "rnn.weight_hh_l0",
                "rnn.bias_ih_l0",
                "rnn.bias_hh_l0",
            ],
            "outputs": ["seq", "h_n"],
            "attrs": {
                "mode": "rnn_tanh",
                "num_layers": 1,
                "bidirectional": False,
                "batch_first": True,
                "has_biases": True,
            },
            "source": "rnn (torch.nn.RNN), model.py:10",
        },
        {
            "op": "select",
            "inputs": ["seq"],
            "outputs": ["last"],
            "attrs": {"dim": 1, "index": -1},
            "source": "model.py:11",
        },
        {
            "op": "linear",
            "inputs": ["last", "fc.weight", "fc.bias"],
            "outputs": ["logits"],
            "attrs": {},
            "source": "fc (torch.nn.Linear), model.py:12",
        },
        {
            "op": "add",
            "inputs": ["ids", "offset"],
            "outputs": ["shifted"],
            "attrs": {},
            "source": "model.py:13",
        },
        {
            "op": "embedding",
            "inputs": ["embed.weight", "shifted"],
            "outputs": ["vectors"],
            "attrs": {},
            "source": "embed (torch.nn.Embedding), model.py:13",
        },
    ],
}
GRAPH_SHAPES = {
    "rnn.weight_ih_l0": (3, 2),
    "rnn.weight_hh_l0": (3, 3),
    "rnn.bias_ih_l0": (3,),
    "rnn.bias_hh_l0": (3,),
    "fc.weight": (2, 3),
    "fc.bias": (2,),
    "embed.weight": (5, 2),
}


def graph_constants() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 2)
    tensors = {
        key: rng.uniform(-0.5, 0.5, shape).astype("<f4") for key, shape in GRAPH_SHAPES.items()
    }
    tensors["offset"] = np.array(1, "<i8")
    return tensors


def graph_metadata(description: Any = None, **override: str | None) -> dict[str, str]:
    text = json.dumps(GRAPH if description is None else description, separators=(",", ":"))
    metadata: dict[str, str | None] = {"format": "pyrnn", "version": "2", "graph": text}
    metadata.update(override)
    return {key: value for key, value in metadata.items() if value is not None}


def valid_graph_file() -> bytes:
    header, data = layout(graph_constants(), graph_metadata())
    return safetensors(header, data)


def with_graph(edit: Callable[[dict[str, Any]], None]) -> bytes:
    """The valid graph file with its graph edited (tensors unchanged)."""
    graph = json.loads(json.dumps(GRAPH))
    edit(graph)
    header, data = layout(graph_constants(), graph_metadata(graph))
    return safetensors(header, data)


def with_graph_text(text: str) -> bytes:
    header, data = layout(graph_constants(), graph_metadata())
    header["__metadata__"]["graph"] = text
    return safetensors(header, data)


def with_graph_tensors(**changes: np.ndarray | None) -> bytes:
    """The valid graph file with tensors replaced, added or (None) removed."""
    tensors = {**graph_constants(), **changes}
    tensors = {key: value for key, value in tensors.items() if value is not None}
    header, data = layout(tensors, graph_metadata())
    return safetensors(header, data)


def node(graph: dict[str, Any], op: str) -> dict[str, Any]:
    return next(item for item in graph["nodes"] if item["op"] == op)


def set_attr(op: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(graph: dict[str, Any]) -> None:
        node(graph, op)["attrs"][key] = value

    return edit


def set_node(op: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(graph: dict[str, Any]) -> None:
        node(graph, op)[key] = value

    return edit


def append_node(
    item: dict[str, Any], output: str | None = None
) -> Callable[[dict[str, Any]], None]:
    """Adds `item` at the end; `output` (when given) replaces the logits output."""

    def edit(graph: dict[str, Any]) -> None:
        graph["nodes"].append({"attrs": {}, "source": "", **item})
        if output is not None:
            graph["outputs"]["tuple"][0] = {"tensor": output}

    return edit


def graph_cases() -> Iterator[Case]:
    """Graph files (format version 2) whose metadata, graph or tensors are hostile."""
    yield (
        "graph_missing",
        safetensors(*layout(graph_constants(), graph_metadata(graph=None))),
        None,
        "version 2 lacks 'graph'",
    )
    yield (
        "graph_version_3",  # int64 tensors are refused in any other version: none here
        safetensors(
            *layout(
                {**graph_constants(), "offset": np.array(1.0, "<f4")}, graph_metadata(version="3")
            )
        ),
        None,
        "version '3' is not supported",
    )
    yield "graph_not_json", with_graph_text("{nodes: []}"), None, "metadata 'graph' is not JSON"
    yield (
        "graph_nan",
        with_graph_text(json.dumps(GRAPH).replace('"index": -1', '"index": NaN')),
        None,
        "NaN is not JSON",
    )
    yield (
        "graph_duplicate_key",
        with_graph_text(json.dumps(GRAPH)[:-1] + ', "nodes": []}'),
        None,
        "duplicate key 'nodes'",
    )
    yield (
        "graph_deeply_nested",
        with_graph_text("[" * 100_000 + "]" * 100_000),
        None,
        "metadata 'graph' is not JSON (nested too deeply)",
    )
    yield (
        "graph_int_5000_digits",
        with_graph_text(json.dumps(GRAPH).replace('"index": -1', '"index": ' + "9" * 5000)),
        None,
        "metadata 'graph' is not JSON",
    )
    yield "graph_is_list", with_graph_text("[]"), None, "graph: expected a JSON object"
    yield (
        "graph_unknown_field",
        with_graph(lambda g: g.__setitem__("training", True)),
        None,
        "unknown fields ['training']",
    )
    yield "graph_unknown_op", with_graph(set_node("linear", "op", "attention")), None, "unknown op"
    yield (
        "graph_op_not_string",
        with_graph(set_node("linear", "op", ["linear"])),
        None,
        "unknown op ['linear']",
    )

    def dangle(graph: dict[str, Any]) -> None:
        node(graph, "linear")["inputs"][0] = "nowhere"

    yield "graph_dangling_edge", with_graph(dangle), None, "'nowhere' is not defined before"

    def cycle(graph: dict[str, Any]) -> None:
        node(graph, "select")["inputs"][0] = "logits"  # made by the node after it

    yield "graph_cyclic_edge", with_graph(cycle), None, "(dangling or cyclic edge)"

    def self_loop(graph: dict[str, Any]) -> None:
        node(graph, "select")["inputs"][0] = "last"

    yield "graph_self_loop", with_graph(self_loop), None, "(dangling or cyclic edge)"
    yield (
        "graph_duplicate_output_name",
        with_graph(set_node("linear", "outputs", ["seq"])),
        None,
        "value 'seq' is defined twice",
    )
    yield (
        "graph_output_shadows_constant",
        with_graph(set_node("linear", "outputs", ["fc.bias"])),
        None,
        "value 'fc.bias' is defined twice",
    )
    yield (
        "graph_duplicate_constant",
        with_graph(lambda g: g["constants"].append("offset")),
        None,
        "value 'offset' is defined twice",
    )
    yield (
        "graph_duplicate_input",
        with_graph(lambda g: g["inputs"][1].__setitem__("name", "x")),
        None,
        "value 'x' is defined twice",
    )
    yield (
        "graph_output_undefined",
        with_graph(lambda g: g["outputs"]["tuple"].__setitem__(0, {"tensor": "missing"})),
        None,
        "outputs: 'missing' is not a value of the graph",
    )
    nested: dict[str, Any] = {"tensor": "logits"}
    for _ in range(40):
        nested = {"tuple": [nested]}
    yield (
        "graph_outputs_deeply_nested",
        with_graph(lambda g: g.__setitem__("outputs", nested)),
        None,
        "nested more than 32 levels deep",
    )
    yield (
        "graph_outputs_unknown_kind",
        with_graph(lambda g: g.__setitem__("outputs", {"set": [{"tensor": "logits"}]})),
        None,
        "unknown structure kind 'set'",
    )
    yield (
        "graph_outputs_dict_key_repeated",
        with_graph(
            lambda g: g.__setitem__(
                "outputs", {"dict": [["a", {"tensor": "logits"}], ["a", {"tensor": "h_n"}]]}
            )
        ),
        None,
        "dict key 'a' is repeated",
    )
    yield (
        "graph_output_is_int",
        with_graph(
            append_node({"op": "size", "inputs": ["x"], "outputs": ["n"], "attrs": {"dim": 0}}, "n")
        ),
        None,
        "'n' is an int, not a tensor",
    )
    yield (
        "graph_too_many_operands",
        with_graph(set_node("select", "inputs", ["seq", "seq"])),
        None,
        "expected 1..1 inputs, got 2",
    )
    yield (
        "graph_too_many_outputs",
        with_graph(set_node("select", "outputs", ["a", "b", "c", "d"])),
        None,
        "outputs must be a list of 1 to 3 names",
    )
    yield (
        "graph_attr_missing",
        with_graph(lambda g: node(g, "rnn")["attrs"].pop("has_biases")),
        None,
        "missing fields ['has_biases']",
    )
    yield (
        "graph_attr_unknown",
        with_graph(set_attr("select", "keepdim", True)),
        None,
        "unknown fields ['keepdim']",
    )
    yield (
        "graph_attr_int_as_string",
        with_graph(set_attr("rnn", "num_layers", "1")),
        None,
        "attr 'num_layers': expected an int",
    )
    yield (
        "graph_attr_int_as_bool",
        with_graph(set_attr("select", "dim", True)),
        None,
        "attr 'dim': expected an int",
    )
    yield (
        "graph_attr_bool_as_int",
        with_graph(set_attr("rnn", "batch_first", 1)),
        None,
        "attr 'batch_first': expected true or false",
    )
    yield (
        "graph_attr_int_2pow62",
        with_graph(set_attr("select", "index", 2**62 + 1)),
        None,
        "attr 'index': expected an int",
    )
    yield (
        "graph_attr_unknown_mode",
        with_graph(set_attr("rnn", "mode", "transformer")),
        None,
        "transformer",
    )
    yield (
        "graph_attr_num_layers_huge",
        with_graph(set_attr("rnn", "num_layers", 10**9)),
        None,
        "num_layers",
    )
    yield (
        "graph_int_literal_2pow63",
        with_graph(
            append_node(
                {
                    "op": "full",
                    "inputs": [2**63],
                    "outputs": ["f"],
                    "attrs": {"value": 0.0, "dtype": "float32"},
                }
            )
        ),
        None,
        "does not fit in 64 bits",
    )
    yield (
        "graph_input_dtype",
        with_graph(lambda g: g["inputs"][0].__setitem__("dtype", "float16")),
        None,
        "dtype must be one of",
    )
    yield (
        "graph_input_rank_9",
        with_graph(lambda g: g["inputs"][0].__setitem__("shape", [None] * 9)),
        None,
        "at most 8 dims",
    )
    yield (
        "graph_input_dim_2pow31",
        with_graph(lambda g: g["inputs"][0].__setitem__("shape", [None, None, 2**31])),
        None,
        "in [0, 2**31)",
    )
    yield (
        "graph_input_range_reversed",
        with_graph(lambda g: g["inputs"][0].__setitem__("ranges", [[1, 9, 3]])),
        None,
        "a range is [dim, min, max]",
    )

    # Constants against the file's tensors.
    yield (
        "graph_constant_missing",
        with_graph_tensors(**{"fc.bias": None}),
        None,
        "missing ['fc.bias'], unexpected []",
    )
    yield (
        "graph_tensor_extra",
        with_graph_tensors(stray=np.zeros(3, "<f4")),
        None,
        "missing [], unexpected ['stray']",
    )
    yield (
        "graph_constant_rank_9",
        with_graph_tensors(**{"fc.bias": np.zeros((1,) * 8 + (2,), "<f4")}),
        None,
        "graph constants have at most 8",
    )
    yield (
        "graph_dtype_BF16",
        with_graph_tensors(**{"fc.bias": bf16(graph_constants()["fc.bias"])}),
        None,
        "got 'BF16'",
    )
    yield (
        "graph_dtype_I32",
        with_header_of(valid_graph_file_parts(), "offset", "dtype", "I32"),
        None,
        "got 'I32'",
    )
    # I64 is for graph files only: a version 1 file (or a plain state_dict) keeps the old rules.
    yield (
        "dtype_I64_version_1",
        plain_with_dtype(pyrnn_metadata(), "bias_ih_l0", "I64"),
        None,
        "got 'I64'",
    )
    yield (
        "dtype_I64_plain",
        plain_with_dtype(None, "bias_ih_l0", "I64"),
        "rnn",
        "got 'I64'",
    )
    # Weights the core checks when it builds the graph.
    yield (
        "graph_weight_int64",
        with_graph_tensors(**{"fc.weight": np.zeros((2, 3), "<i8")}),
        None,
        "the graph does not build",
    )
    yield (
        "graph_weight_wrong_shape",
        with_graph_tensors(**{"rnn.weight_hh_l0": np.zeros((3, 4), "<f4")}),
        None,
        "the graph does not build",
    )

    # Shapes that contradict each other only once input sizes are known: the load-time probe.
    yield (
        "graph_shape_contradiction",
        with_graph_tensors(**{"fc.weight": np.zeros((2, 4), "<f4")}),
        None,
        "the graph cannot run",
    )
    yield (
        "graph_ids_as_float",
        with_graph_tensors(offset=np.array(1.0, "<f4")),
        None,
        "the graph cannot run",
    )
    yield (
        "graph_select_out_of_range",
        with_graph(set_attr("select", "dim", 5)),
        None,
        "the graph cannot run",
    )
    yield (
        "graph_range_beyond_sizes",
        with_graph(lambda g: g["inputs"][0].__setitem__("ranges", [[0, 2**31 - 1, None]])),
        None,
        "the graph cannot run",
    )
    # Absurd sizes: refused from the shapes, before anything is allocated.
    yield (
        "graph_full_2pow62_float32",
        with_graph(
            append_node(
                {
                    "op": "full",
                    "inputs": [2**31, 2**31],
                    "outputs": ["f"],
                    "attrs": {"value": 1.0, "dtype": "float32"},
                },
                "f",
            )
        ),
        None,
        "more than this machine's physical memory",
    )
    yield (
        "graph_full_2pow63",
        with_graph(
            append_node(
                {
                    "op": "full",
                    "inputs": [2**31, 2**31, 4],
                    "outputs": ["f"],
                    "attrs": {"value": 1.0, "dtype": "float32"},
                },
                "f",
            )
        ),
        None,
        "more than 2^62 elements",
    )
    yield (
        "graph_expand_2pow46",
        with_graph(
            append_node(
                {"op": "expand", "inputs": ["x", 2**20, 2**20, -1, -1, -1], "outputs": ["big"]},
                "big",
            )
        ),
        None,
        "more than this machine's physical memory",
    )
    yield (
        "graph_full_intermediate_2pow60",  # no output: the arena would hold it
        with_graph(
            append_node(
                {
                    "op": "full",
                    "inputs": [2**30, 2**30],
                    "outputs": ["f"],
                    "attrs": {"value": 1.0, "dtype": "float32"},
                }
            ),
        ),
        None,
        "more than this machine's physical memory",
    )
    yield (
        "graph_reshape_absurd",
        with_graph(
            append_node(
                {"op": "reshape", "inputs": ["x", 2**31 - 1, 2**31 - 1, -1], "outputs": ["r"]}, "r"
            )
        ),
        None,
        "the graph cannot run",
    )


# The base graph quantised to int8: the recurrent layer's and the linear layer's matrices.
GRAPH_QUANTIZED = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"]


def quantized_graph_constants() -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for key, value in graph_constants().items():
        if key in GRAPH_QUANTIZED:
            tensors[key], tensors[key + "_scale"] = int8(value)
        else:
            tensors[key] = value
    return tensors


def quantized_graph_file(
    edit: Callable[[dict[str, Any]], None] | None = None, **changes: np.ndarray | None
) -> bytes:
    graph = {**json.loads(json.dumps(GRAPH)), "weight_dtype": "int8", "quantized": GRAPH_QUANTIZED}
    if edit is not None:
        edit(graph)
    tensors = {**quantized_graph_constants(), **changes}
    tensors = {key: value for key, value in tensors.items() if value is not None}
    header, data = layout(tensors, graph_metadata(graph))
    return safetensors(header, data)


def quantized_graph_cases() -> Iterator[Case]:
    """Quantised graph files whose dtypes, scales or quantized list are hostile."""
    scales = quantized_graph_constants()["fc.weight_scale"].copy()
    for name, value in (("nan", np.nan), ("inf", np.inf), ("zero", 0.0), ("negative", -1.0)):
        bad = scales.copy()
        bad[0] = value
        yield (
            f"graph_q_scale_{name}",
            quantized_graph_file(**{"fc.weight_scale": bad}),
            None,
            "every scale must be finite and > 0",
        )
    yield (
        "graph_q_scale_shape",
        quantized_graph_file(**{"fc.weight_scale": np.ones(3, "<f4")}),
        None,
        "int8 scales must be F32 of shape [2]",
    )
    yield (
        "graph_q_int8_without_scale",
        quantized_graph_file(**{"rnn.weight_hh_l0_scale": None}),
        None,
        "int8 tensors with no scale: ['rnn.weight_hh_l0']",
    )
    yield (
        "graph_q_scale_without_int8",
        quantized_graph_file(**{"embed.weight_scale": np.ones(5, "<f4")}),
        None,
        "a scale with no int8 tensor: ['embed.weight_scale']",
    )
    yield (
        "graph_q_declared_int8_stored_f16",
        quantized_graph_file(**{"fc.weight": graph_constants()["fc.weight"].astype("<f2")}),
        None,
        "weight_dtype 'int8' stores it as I8, got 'F16'",
    )
    yield (
        "graph_q_bias_int8",
        quantized_graph_file(**{"fc.bias": np.ones(2, "i1")}),
        None,
        "only the graph's quantized weight matrices are stored narrow), got 'I8'",
    )
    yield (
        "graph_q_bias_bf16",
        quantized_graph_file(**{"fc.bias": bf16(graph_constants()["fc.bias"])}),
        None,
        "got 'BF16'",
    )

    def quantize_embedding(graph: dict[str, Any]) -> None:
        graph["quantized"] = [*GRAPH_QUANTIZED, "embed.weight"]

    table, table_scales = int8(graph_constants()["embed.weight"])
    yield (
        "graph_q_embedding_int8",
        quantized_graph_file(
            quantize_embedding, **{"embed.weight": table, "embed.weight_scale": table_scales}
        ),
        None,
        "'embed.weight' is a int8 weight; this op takes float32",
    )

    def unknown_type(graph: dict[str, Any]) -> None:
        graph["weight_dtype"] = "int4"

    yield (
        "graph_q_weight_dtype_unknown",
        quantized_graph_file(unknown_type),
        None,
        "'weight_dtype' must be one of",
    )

    def not_a_constant(graph: dict[str, Any]) -> None:
        graph["quantized"] = [*GRAPH_QUANTIZED, "seq"]

    yield (
        "graph_q_quantized_not_constant",
        quantized_graph_file(not_a_constant),
        None,
        "'seq' is not a constant",
    )

    def no_weight_dtype(graph: dict[str, Any]) -> None:
        del graph["weight_dtype"]

    yield (
        "graph_q_quantized_without_weight_dtype",
        quantized_graph_file(no_weight_dtype),
        None,
        "missing fields ['weight_dtype']",
    )


def valid_graph_file_parts() -> tuple[dict[str, Any], bytes]:
    return layout(graph_constants(), graph_metadata())


def with_header_of(parts: tuple[dict[str, Any], bytes], key: str, field: str, value: Any) -> bytes:
    header, data = parts
    header[key][field] = value
    return safetensors(header, data)


def plain_with_dtype(metadata: dict[str, str] | None, key: str, dtype: str) -> bytes:
    """The base RNN's tensors with `key` stored as 8-byte `dtype` (same byte count as float64)."""
    tensors = {**weights(), key: weights()[key].astype("<f8")}
    header, data = layout(tensors, metadata)
    header[key]["dtype"] = dtype
    return safetensors(header, data)


# -- .pt files -------------------------------------------------------------------------------
class _Exploit:
    """Unpickling this runs exec(): if a loader ever executes it, PYRNN_PWNED appears in
    os.environ (harmless, and what the tests look for)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("import os; os.environ['PYRNN_PWNED'] = '1'",))


def torch_zip(obj: Any) -> bytes:
    """obj saved in torch's zip format, by hand: a zip with archive/data.pkl (protocol 2) and
    archive/version, as torch.save writes it (no tensors needed for these cases)."""
    return stored_zip(
        {
            "archive/data.pkl": pickle.dumps(obj, protocol=2),
            "archive/byteorder": b"little",
            "archive/version": b"3\n",
        }
    )


def stored_zip(members: dict[str, bytes]) -> bytes:
    """A zip archive of `members`, uncompressed, with fixed dates (np.savez stamps the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, payload in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def torch_save(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def torch_state(dtype: str = "float32") -> dict[str, Any]:
    import torch

    return {key: torch.from_numpy(value.astype(dtype)) for key, value in weights().items()}


# -- the cases -------------------------------------------------------------------------------
Case = tuple[str, bytes, "str | None", str]


def cases() -> Iterator[Case]:
    good = valid_file()
    # Framing: length prefix and header bytes.
    yield "empty", b"", None, "too short"
    yield "short_prefix", good[:5], None, "too short"
    yield "header_length_past_end", struct.pack("<Q", len(good)) + good[8:], None, "exceeds"
    yield "header_length_2pow63", struct.pack("<Q", 2**63) + good[8:], None, "exceeds"
    yield "header_length_max", b"\xff" * 8 + good[8:], None, "exceeds"
    yield "header_length_zero", struct.pack("<Q", 0) + good[8:], None, "not valid JSON"
    yield "header_not_utf8", safetensors(b'{"\xff\xfe": 1}', b""), None, "not valid JSON"
    yield "header_not_json", safetensors("{not json at all}", b""), None, "not valid JSON"
    yield "header_is_list", safetensors("[1, 2, 3]", b""), None, "must be a JSON object"
    yield "header_is_string", safetensors('"weights"', b""), None, "must be a JSON object"
    yield "header_is_null", safetensors("null", b""), None, "must be a JSON object"
    yield "header_deeply_nested", safetensors("[" * 100_000 + "]" * 100_000, b""), None, "JSON"
    yield (
        "header_nan_offset",
        safetensors(
            raw_header(layout(weights(), pyrnn_metadata())[0]).replace(b"[0,", b"[NaN,", 1),
            layout(weights(), None)[1],
        ),
        None,
        "NaN is not JSON",
    )
    text = raw_header(layout(weights(), pyrnn_metadata())[0])
    first = text.index(b'"weight_ih_l0"')
    entry_end = text.index(b"}", first) + 1
    duplicated = text[:entry_end] + b"," + text[first:entry_end] + text[entry_end:]
    yield (
        "duplicate_tensor_key",
        safetensors(duplicated, layout(weights(), None)[1]),
        None,
        ("duplicate key 'weight_ih_l0'"),
    )
    meta_dup = text.replace(b'"format":"pyrnn",', b'"format":"pyrnn","format":"other",', 1)
    yield (
        "duplicate_metadata_key",
        safetensors(meta_dup, layout(weights(), None)[1]),
        None,
        ("duplicate key 'format'"),
    )
    dup_config = json.dumps(CONFIG, sort_keys=True)[:-1] + ', "hidden_size": 4}'
    header, data = layout(weights(), pyrnn_metadata())
    header["__metadata__"]["config"] = dup_config
    yield "duplicate_config_key", safetensors(header, data), None, "duplicate key 'hidden_size'"

    # Tensor entries.
    def set_entry(key: str, field: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(header: dict[str, Any]) -> None:
            header[key][field] = value

        return edit

    def delete(key: str, field: str | None = None) -> Callable[[dict[str, Any]], None]:
        def edit(header: dict[str, Any]) -> None:
            if field is None:
                del header[key]
            else:
                del header[key][field]

        return edit

    yield (
        "metadata_not_object",
        with_header(lambda h: h.__setitem__("__metadata__", ["pyrnn"])),
        None,
        "__metadata__ must map strings to strings",
    )
    yield (
        "metadata_value_not_string",
        with_header(lambda h: h["__metadata__"].__setitem__("version", 1)),
        None,
        "__metadata__ must map strings to strings",
    )
    yield (
        "entry_not_object",
        with_header(lambda h: h.__setitem__("bias_ih_l0", [0, 12])),
        None,
        "expected an object",
    )
    yield (
        "entry_missing_dtype",
        with_header(delete("bias_ih_l0", "dtype")),
        None,
        ("missing ['dtype']"),
    )
    yield (
        "entry_missing_offsets",
        with_header(delete("bias_ih_l0", "data_offsets")),
        None,
        ("missing ['data_offsets']"),
    )
    yield (
        "entry_extra_field",
        with_header(set_entry("bias_ih_l0", "scale", 2)),
        None,
        ("unknown ['scale']"),
    )
    yield "dtype_I32", with_header(set_entry("bias_ih_l0", "dtype", "I32")), None, "got 'I32'"
    yield "dtype_BOOL", with_header(set_entry("bias_ih_l0", "dtype", "BOOL")), None, "got 'BOOL'"
    yield (
        "dtype_BF16",
        safetensors(
            *layout({**weights(), "bias_ih_l0": bf16(weights()["bias_ih_l0"])}, pyrnn_metadata())
        ),
        None,
        "got 'BF16'",
    )
    yield "dtype_not_string", with_header(set_entry("bias_ih_l0", "dtype", 7)), None, "got 7"
    yield (
        "shape_negative",
        with_header(set_entry("bias_ih_l0", "shape", [-3])),
        None,
        ("non-negative ints"),
    )
    yield (
        "shape_float",
        with_header(set_entry("bias_ih_l0", "shape", [3.0])),
        None,
        ("non-negative ints"),
    )
    yield (
        "shape_bool",
        with_header(set_entry("bias_ih_l0", "shape", [True, 3])),
        None,
        ("non-negative ints"),
    )
    yield (
        "shape_not_list",
        with_header(set_entry("bias_ih_l0", "shape", 3)),
        None,
        ("non-negative ints"),
    )
    yield (
        "shape_overflows_int64",
        with_header(set_entry("bias_ih_l0", "shape", [2**40, 2**40])),
        None,
        "more than 2**63-1 elements",
    )
    yield (
        "shape_huge_times_zero",
        with_header(set_entry("bias_ih_l0", "shape", [0, 2**62, 4])),
        None,
        "more than 2**63-1 elements",
    )
    yield (
        "shape_bytes_mismatch",
        with_header(set_entry("bias_ih_l0", "shape", [4])),
        None,
        ("needs 16 bytes, data_offsets give 12"),
    )
    bias_begin = layout(weights(), None)[0]["bias_ih_l0"]["data_offsets"][0]
    yield (
        "offsets_reversed",
        with_header(set_entry("bias_ih_l0", "data_offsets", [bias_begin + 12, bias_begin])),
        None,
        "reversed, or past the end",
    )
    yield (
        "offsets_past_end",
        with_header(
            set_entry("bias_hh_l0", "data_offsets", [bias_begin + 12, bias_begin + 12 + 2**40])
        ),
        None,
        "reversed, or past the end",
    )
    yield (
        "offsets_negative",
        with_header(set_entry("weight_ih_l0", "data_offsets", [-24, 0])),
        None,
        "reversed, or past the end",
    )
    yield (
        "offsets_overlap",
        with_header(set_entry("bias_ih_l0", "data_offsets", [bias_begin - 4, bias_begin + 8])),
        None,
        "overlap",
    )
    yield (
        "offsets_three_values",
        with_header(set_entry("bias_ih_l0", "data_offsets", [bias_begin, bias_begin + 12, 0])),
        None,
        "two ints",
    )
    yield (
        "offsets_strings",
        with_header(set_entry("bias_ih_l0", "data_offsets", ["0", "12"])),
        None,
        "two ints",
    )
    header, data = layout(weights(), pyrnn_metadata())
    yield (
        "offsets_gap",
        safetensors(
            {
                **header,
                "bias_hh_l0": {**header["bias_hh_l0"], "data_offsets": [len(data), len(data) + 12]},
            },
            data + b"\0" * 12,
        ),
        None,
        "belong to no tensor",
    )
    yield (
        "trailing_bytes",
        safetensors(header, data + b"hidden payload"),
        None,
        ("trailing bytes belong to no tensor"),
    )

    # Metadata and config.
    yield "no_metadata_no_kind", plain(weights()), None, "no pyrnn metadata"
    yield (
        "version_2_without_graph",
        with_header(lambda h: h["__metadata__"].__setitem__("version", "2")),
        None,
        "version 2 lacks 'graph'",
    )
    yield (
        "version_3",
        with_header(lambda h: h["__metadata__"].__setitem__("version", "3")),
        None,
        "version '3' is not supported",
    )
    yield (
        "header_int_5000_digits",
        header_text_edit(b'"shape":[3]', b'"shape":[' + b"9" * 5000 + b"]"),
        None,
        "header is not valid JSON (Exceeds the limit",
    )
    yield (
        "config_missing",
        with_header(lambda h: h["__metadata__"].pop("config")),
        None,
        ("lacks 'config'"),
    )
    header, data = layout(weights(), pyrnn_metadata())
    header["__metadata__"]["config"] = "{kind: rnn}"
    yield "config_not_json", safetensors(header, data), None, "'config' is not JSON"
    header["__metadata__"]["config"] = '["rnn", 2, 3]'
    yield "config_is_list", safetensors(header, data), None, "'config' must be a JSON object"
    header["__metadata__"]["config"] = '{"kind": "rnn", "input_size": 2, "hidden_size": NaN}'
    yield "config_nan", safetensors(header, data), None, "'config' is not JSON"
    header["__metadata__"]["config"] = '{"kind": "rnn", "hidden_size": ' + "7" * 5000 + "}"
    yield "config_int_5000_digits", safetensors(header, data), None, "'config' is not JSON"
    yield "config_size_string", with_config(hidden_size="3"), None, "hidden_size: expected an int"
    yield "config_size_float", with_config(input_size=2.0), None, "input_size: expected an int"
    yield "config_size_bool", with_config(num_layers=True), None, "num_layers: expected an int"
    yield (
        "config_size_negative",
        with_config(hidden_size=-3),
        None,
        "hidden_size: expected an int >= 1",
    )
    yield "config_size_zero", with_config(input_size=0), None, "input_size: expected an int >= 1"
    yield "config_bias_string", with_config(bias="yes"), None, "bias: expected a bool"
    yield "config_dropout_string", with_config(dropout="0.5"), None, "dropout: expected a float"
    yield "config_unknown_kind", with_config(kind="transformer"), None, "kind: expected one of"
    yield "config_kind_list", with_config(kind=["rnn"]), None, "kind: expected one of"
    yield "config_unknown_field", with_config(attention=True), None, "unknown fields ['attention']"
    yield "config_missing_field", with_config(hidden_size=...), None, "missing required fields"
    yield "config_bad_nonlinearity", with_config(nonlinearity="sigmoid"), None, "nonlinearity"
    yield "config_terabytes", with_config(hidden_size=10**9), None, "more than this machine"
    yield "config_layers_10e12", with_config(num_layers=10**12), None, "exceeds the core's limit"
    # Fits in memory by the estimate, but would list 4 * 10**6 expected tensors: counted first.
    yield (
        "config_layers_10e6",
        with_config(num_layers=10**6),
        None,
        ("has 4000000 tensors, the file only 4"),
    )
    yield (
        "config_larger_than_tensors",
        with_config(hidden_size=1000),
        None,
        ("tensor 'weight_ih_l0' has shape (3, 2)"),
    )
    yield "config_proj_on_rnn", with_config(proj_size=1), None, "only LSTM supports a projection"

    # Tensors against the config.
    yield "tensor_missing", with_header(delete("bias_hh_l0")), None, "trailing bytes"
    tensors = weights()
    del tensors["bias_hh_l0"]
    header, data = layout(tensors, pyrnn_metadata())
    yield "tensor_missing_consistent", safetensors(header, data), None, "missing ['bias_hh_l0']"
    tensors = {**weights(), "weight_ih_l1": np.zeros((3, 3), "<f4")}
    header, data = layout(tensors, pyrnn_metadata())
    yield "tensor_extra", safetensors(header, data), None, "unexpected ['weight_ih_l1']"
    tensors = {**weights(), "weight_hh_l0": np.zeros((3, 4), "<f4")}
    header, data = layout(tensors, pyrnn_metadata())
    yield "tensor_wrong_shape", safetensors(header, data), None, "'weight_hh_l0' has shape (3, 4)"
    tensors = {**weights(), "bias_ih_l0": np.zeros((1, 3), "<f4")}
    header, data = layout(tensors, pyrnn_metadata())
    yield "tensor_wrong_rank", safetensors(header, data), None, "'bias_ih_l0' has shape (1, 3)"

    # Plain state_dicts loaded by kind: sizes inferred from shapes.
    lstm = lstm_weights()
    yield (
        "plain_rows_not_gates",
        plain({**lstm, "weight_ih_l0": np.zeros((7, 3), "<f4")}),
        ("lstm"),
        "(4*hidden_size, input_size)",
    )
    yield (
        "plain_w_ih_1d",
        plain({**lstm, "weight_ih_l0": np.zeros(8, "<f4")}),
        "lstm",
        ("(4*hidden_size, input_size)"),
    )
    yield (
        "plain_w_ih_empty",
        plain({**lstm, "weight_ih_l0": np.zeros((0, 3), "<f4")}),
        "lstm",
        ("(4*hidden_size, input_size)"),
    )
    yield (
        "plain_w_hr_scalar",
        plain({**lstm, "weight_hr_l0": np.zeros((), "<f4")}),
        "lstm",
        ("'weight_hr_l0' has shape ()"),
    )
    yield (
        "plain_huge_layer_index",
        plain({**lstm, "weight_ih_l999999999": np.zeros((8, 2), "<f4")}),
        "lstm",
        "more than this machine",
    )
    yield (
        "plain_missing_w_hh",
        plain({k: v for k, v in lstm.items() if k != "weight_hh_l0"}),
        "lstm",
        "missing ['weight_hh_l0']",
    )
    yield (
        "plain_no_prefix_match",
        plain({"encoder." + k: v for k, v in lstm.items()}),
        ("lstm"),
        "no 'weight_ih_l0' under the prefix",
    )

    # Files of other formats, under a .safetensors name: recognised and named, never unpickled.
    arrays = {f"{key}.npy": npy(value) for key, value in weights().items()}
    yield "npz_archive", stored_zip(arrays), None, "a numpy .npz archive"
    yield "npz_archive_with_kind", stored_zip(arrays), "rnn", "a numpy .npz archive"
    yield "zip_archive", stored_zip({"weights.json": b"{}"}), None, "a zip archive holding"
    yield "zip_no_directory", b"PK\x03\x04" + bytes(60), None, "directory cannot be read"
    yield "npy_array", npy(weights()["weight_ih_l0"]), None, "a numpy .npy array"
    yield "hdf5", b"\x89HDF\r\n\x1a\n" + bytes(248), None, "an HDF5 file"
    yield "pickle_plain", pickle.dumps(weights(), protocol=2), "rnn", "a Python pickle"
    yield "pickle_exec_renamed", pickle.dumps(_Exploit(), protocol=4), "rnn", "a Python pickle"
    yield (
        "torch_zip_without_kind",
        torch_zip({"weight_ih_l0": _Exploit()}),
        None,
        "a PyTorch checkpoint (torch.save file), which has no pyrnn metadata",
    )

    # .pt files: read only through torch.load(weights_only=True).
    yield (
        "pickle_exec.pt",
        torch_zip({"weight_ih_l0": _Exploit()}),
        "rnn",
        "refused by torch.load(weights_only=True)",
    )
    yield (
        "pickle_exec_legacy.pt",
        pickle.dumps(_Exploit(), protocol=2),
        "rnn",
        "refused by torch.load(weights_only=True)",
    )
    yield (
        "pickle_exec_proto5.pt",
        pickle.dumps(_Exploit(), protocol=5),
        "rnn",
        "refused by torch.load",
    )
    saved = torch_save(torch_state())
    yield "pt_truncated.pt", saved[: len(saved) // 2], "rnn", "torch"
    yield "pt_garbage.pt", bytes(range(256)) * 4, "rnn", "torch"
    yield "pt_empty.pt", b"", "rnn", "torch"
    yield "pt_list.pt", torch_save(list(torch_state().values())), "rnn", "flat state_dict"
    yield "pt_nested.pt", torch_save({"state_dict": torch_state()}), "rnn", "expected a tensor"
    yield (
        "pt_int_tensor.pt",
        torch_save({**torch_state(), "bias_ih_l0": torch_state("float32")["bias_ih_l0"].int()}),
        "rnn",
        "dtype must be float16",
    )
    yield (
        "pt_wrong_shape.pt",
        torch_save({**torch_state(), "weight_hh_l0": torch_state()["weight_hh_l0"][:, :2]}),
        "rnn",
        "'weight_hh_l0' has shape (3, 2)",
    )


def all_cases() -> Iterator[Case]:
    yield from cases()
    yield from graph_cases()
    yield from quantized_cases()
    yield from quantized_graph_cases()


def file_name(name: str) -> str:
    return name if name.endswith(".pt") else name + ".safetensors"


def build() -> dict[str, bytes]:
    files: dict[str, bytes] = {
        "valid.safetensors": valid_file(),
        "valid_graph.safetensors": valid_graph_file(),
        "valid_int8.safetensors": quantized_file(),
        "valid_graph_int8.safetensors": quantized_graph_file(),
    }
    manifest = {}
    for name, payload, kind, expect in all_cases():
        path = file_name(name)
        if path in files:
            raise SystemExit(f"duplicate case name {name}")
        files[path] = payload
        manifest[path] = {"kind": kind, "expect": expect}
    files["MANIFEST.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return files


def main() -> int:
    files = build()
    if "--check" in sys.argv[1:]:
        stale = [
            name
            for name, payload in files.items()
            if not (CORPUS / name).is_file() or (CORPUS / name).read_bytes() != payload
        ]
        extra = sorted({p.name for p in CORPUS.iterdir()} - set(files)) if CORPUS.is_dir() else []
        for name in stale + extra:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale or extra else 0
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.iterdir():
        if old.name not in files:
            old.unlink()
    for name, payload in files.items():
        (CORPUS / name).write_bytes(payload)
    print(f"wrote {len(files) - 1} files to {os.path.relpath(CORPUS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
