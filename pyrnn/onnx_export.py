"""Exporting pyrnn sequence modules as ONNX graphs of the standard LSTM, GRU and RNN operators.

The one place that knows ONNX's weight layout (the importer, pyrnn/onnx_import.py, converts
through from_onnx_gates). PyTorch (and pyrnn's state_dict) stacks gate rows
LSTM (i, f, g, o) and GRU (r, z, n); ONNX wants LSTM (i, o, f, c) and GRU (z, r, h), with both
biases in one tensor [Wb, Rb] and a leading direction axis. PyTorch's GRU applies the reset gate
after the recurrent matmul, which is ONNX's linear_before_reset=1. onnx is imported only inside
to_onnx, never by ``import pyrnn``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import Module
from .io import PathArgument, _path_argument

if TYPE_CHECKING:
    import onnx

__all__ = ["GATE_ORDER", "ONNX_OPSET", "from_onnx_gates", "to_onnx"]

# Opset 17 has every operator used here in its current form (Squeeze/Slice take axes as inputs)
# and is run by every onnxruntime since 1.12; IR version 8 is what that opset needs.
ONNX_OPSET = 17
_IR_VERSION = 8

# For each kind, the PyTorch gate index that goes to each ONNX gate position.
GATE_ORDER: dict[str, tuple[int, ...]] = {
    "lstm": (0, 3, 1, 2),  # ONNX i, o, f, c  <-  PyTorch i=0, o=3, f=1, g=2
    "gru": (1, 0, 2),  # ONNX z, r, h  <-  PyTorch z=1, r=0, n=2
    "rnn": (0,),
}
_OPERATOR = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _reorder_gates(weight: np.ndarray, kind: str) -> np.ndarray:
    """Rows of a PyTorch (G*H, ...) weight or (G*H,) bias, regrouped into ONNX's gate order."""
    order = GATE_ORDER[kind]
    gates = weight.reshape(len(order), -1, *weight.shape[1:])
    return np.ascontiguousarray(gates[list(order)].reshape(weight.shape), dtype=np.float32)


def from_onnx_gates(weight: np.ndarray, kind: str) -> np.ndarray:
    """Rows of an ONNX (G*H, ...) weight or (G*H,) bias, regrouped into PyTorch's gate order
    (the inverse of the export's reordering)."""
    order = GATE_ORDER[kind]
    gates = weight.reshape(len(order), -1, *weight.shape[1:])
    torch_order = [order.index(gate) for gate in range(len(order))]
    return np.ascontiguousarray(gates[torch_order].reshape(weight.shape), dtype=np.float32)


def to_onnx(
    module: Module, path: PathArgument | None = None, *, initial_state: bool = True
) -> onnx.ModelProto:
    """The ONNX graph of a pyrnn RNN, LSTM or GRU (written to `path` when given).

    Graph inputs: ``input`` of shape (T, N, I), or (N, T, I) with batch_first; when
    `initial_state` is true also ``h0`` (L*D, N, H) and, for LSTM, ``c0`` (L*D, N, H), all
    required (pass zeros for PyTorch's default). Outputs: ``output`` (shaped like torch's),
    ``h_n`` and, for LSTM, ``c_n``. T and N are dynamic. Stacked layers become chained operator
    nodes. Raises TypeError for cells, ValueError for LSTM proj_size (ONNX has no projection) and
    for a quantised module.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module: expected a pyrnn RNN, LSTM or GRU, got {type(module).__name__}")
    if module.weight_dtype != "fp32":
        raise ValueError(
            f"module: its weights are stored as {module.weight_dtype} (pyrnn.quantize); ONNX "
            "export writes float32 weights: export the float32 model it was made from"
        )
    destination = None if path is None else _path_argument(path)
    config = module.config
    kind = config["kind"]
    if kind not in _OPERATOR:
        raise TypeError(
            f"module: expected a pyrnn RNN, LSTM or GRU, got the cell {type(module).__name__}; "
            "export the equivalent 1-layer sequence module and feed it T=1 steps"
        )
    if config.get("proj_size", 0):
        raise ValueError(
            f"module: LSTM with proj_size={config['proj_size']} cannot be exported, the ONNX LSTM "
            "operator has no projection; export a model without proj_size or run it with pyrnn"
        )

    import onnx  # deferred: only exporting needs onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = config["hidden_size"]
    layers = config["num_layers"]
    directions = 2 if config["bidirectional"] else 1
    batch_first = config["batch_first"]
    weights = module.state_dict()
    suffixes = ["", "_reverse"][:directions]

    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    feature_count = config["input_size"]
    graph_inputs = [
        helper.make_tensor_value_info(
            "input",
            TensorProto.FLOAT,
            ["N", "T", feature_count] if batch_first else ["T", "N", feature_count],
        )
    ]
    state_names = ["h0", "c0"] if kind == "lstm" else ["h0"]
    if initial_state:
        graph_inputs += [
            helper.make_tensor_value_info(
                name, TensorProto.FLOAT, [layers * directions, "N", hidden]
            )
            for name in state_names
        ]

    x = "input"
    if batch_first:
        nodes.append(helper.make_node("Transpose", ["input"], ["input_tnf"], perm=[1, 0, 2]))
        x = "input_tnf"
    if directions == 1:
        constant("axis_1", np.array([1], np.int64))
    else:
        constant("merge_directions", np.array([0, 0, -1], np.int64))

    final_h: list[str] = []
    final_c: list[str] = []
    for layer in range(layers):

        def stacked(role: str, layer: int = layer) -> np.ndarray:
            return np.stack(
                [_reorder_gates(weights[f"{role}_l{layer}{s}"], kind) for s in suffixes]
            )

        inputs = [
            x,
            constant(f"W_l{layer}", stacked("weight_ih")),
            constant(f"R_l{layer}", stacked("weight_hh")),
        ]
        inputs.append(
            constant(
                f"B_l{layer}",
                np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1),
            )
            if config["bias"]
            else ""
        )
        inputs.append("")  # sequence_lens: every sequence runs all T steps
        if initial_state:
            starts = constant(f"state_start_l{layer}", np.array([layer * directions], np.int64))
            ends = constant(f"state_end_l{layer}", np.array([(layer + 1) * directions], np.int64))
            axis0 = "state_axis" if layer else constant("state_axis", np.array([0], np.int64))
            for name in state_names:
                nodes.append(
                    helper.make_node("Slice", [name, starts, ends, axis0], [f"{name}_l{layer}"])
                )
                inputs.append(f"{name}_l{layer}")

        attributes: dict[str, Any] = {
            "hidden_size": hidden,
            "direction": "bidirectional" if directions == 2 else "forward",
        }
        if kind == "gru":
            attributes["linear_before_reset"] = 1  # PyTorch: r * (W_hn h + b_hn)
        if kind == "rnn":
            activation = "Relu" if config["nonlinearity"] == "relu" else "Tanh"
            attributes["activations"] = [activation] * directions
        outputs = [f"Y_l{layer}", f"Y_h_l{layer}"] + ([f"Y_c_l{layer}"] if kind == "lstm" else [])
        nodes.append(
            helper.make_node(
                _OPERATOR[kind], inputs, outputs, name=f"{kind}_l{layer}", **attributes
            )
        )
        final_h.append(outputs[1])
        if kind == "lstm":
            final_c.append(outputs[2])

        # Y is (T, D, N, H); the next layer and the output want (T, N, D*H).
        if directions == 1:
            nodes.append(helper.make_node("Squeeze", [outputs[0], "axis_1"], [f"X_l{layer + 1}"]))
        else:
            nodes.append(
                helper.make_node("Transpose", [outputs[0]], [f"Y_tndh_l{layer}"], perm=[0, 2, 1, 3])
            )
            nodes.append(
                helper.make_node(
                    "Reshape", [f"Y_tndh_l{layer}", "merge_directions"], [f"X_l{layer + 1}"]
                )
            )
        x = f"X_l{layer + 1}"

    features_out = directions * hidden
    if batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
        output_shape: list[Any] = ["N", "T", features_out]
    else:
        nodes.append(helper.make_node("Identity", [x], ["output"]))
        output_shape = ["T", "N", features_out]
    graph_outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)]
    state_shape = [layers * directions, "N", hidden]
    for name, parts in [("h_n", final_h), ("c_n", final_c)][: len(state_names)]:
        nodes.append(helper.make_node("Concat", parts, [name], axis=0))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, state_shape))

    graph = helper.make_graph(
        nodes, f"pyrnn_{kind}", graph_inputs, graph_outputs, initializer=initializers
    )
    model = helper.make_model(
        graph,
        producer_name="pyrnn",
        opset_imports=[helper.make_operatorsetid("", ONNX_OPSET)],
    )
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    if destination is not None:
        onnx.save(model, destination)
    return model
