"""Capturing a torch.nn.Module as a pyrnn model graph (pyrnn/graph.py).

torch is imported only inside these functions, and this module only when a model is converted,
never by ``import pyrnn``.

The capture is ``torch.export.export`` with ``Dim.AUTO`` on every dim of every input:

- export's default IR keeps ``aten.lstm.input``, ``gru.input``, ``rnn_tanh/relu.input`` and the
  cells as single ops; ``run_decompositions()`` would unroll the recurrence over the example's
  steps, so it is never called;
- export records sizes symbolically, so a reshape or a zero state built from ``x.shape`` stays
  generic, and every input dim that the model does not fix stays free;
- ``torch.fx.symbolic_trace`` cannot follow code that reads shapes, and TorchScript is
  deprecated.

Two torch kernels would still fix a free size while tracing (the RNN ops' Python decomposition
loops over the steps; max_pool1d's C++ check reads the length as an int): during the export they
get an output-shape rule instead (``_shape_rules``), and torch is restored afterwards.

Sizes. Export fixes a dim whose size is 0 or 1 in the example (it specialises those sizes):
capture from examples with batch >= 2 and steps >= 2 to keep those dims free. A dim the model
fixes (the feature dim a Linear or an LSTM reads) is fixed in the graph's input spec either way,
and a free dim that the model bounds (a convolution needs at least its kernel's extent, a table
of 200 positions at most 200 steps, code that branches on a size) carries that range in the spec.

Dtypes. Inputs are float32, or int64/int32 indices (declared int64; the runtime casts int32).
Weights in float64, float16 or bfloat16 are converted from a float32 copy of the model (the
user's model is never modified). Anything else is refused.

Modes. A model with any submodule in training mode is refused (call model.eval()), and so is
dropout with train=True or batch norm on batch statistics.

Weights computed from weights alone (weight norm, a scaled or transposed table) are computed
here, once, with torch, and stored as ``_constN`` constants. An in-place op becomes its
out-of-place form when nothing reads the changed tensor afterwards; writing a weight or buffer
in place (state) is refused.

Op table, ATen -> graph (``x?`` = operand null when absent):

=============================================================  ===============================
lstm/gru/rnn_tanh/rnn_relu ``.input``                          ``rnn`` (a state nn.RNN built
                                                               as zeros becomes null)
lstm_cell, gru_cell, rnn_tanh_cell, rnn_relu_cell              ``rnn_cell``
linear                                                         ``linear``
conv1d (int padding; 'same'/'valid')                           ``conv1d`` (padding [left, right])
max_pool1d, max_pool1d_with_indices (values only); avg_pool1d  ``max_pool1d``; ``avg_pool1d``
embedding                                                      ``embedding``
layer_norm; batch_norm, _native_batch_norm_legit_no_training   ``layer_norm``; ``batch_norm``
relu sigmoid tanh silu neg exp log sqrt rsqrt abs gelu         the same unary op
leaky_relu, elu, softplus, hardtanh                            the same, every attr written
selu, celu                                                     ``elu``
relu6, clamp, clamp_min, clamp_max                             ``hardtanh`` (inf when open)
softmax, _softmax; log_softmax, _log_softmax                   ``softmax``; ``log_softmax``
add sub mul div (Tensor, Scalar; alpha), rsub, true_divide     ``add`` ``sub`` ``mul`` ``div``
reciprocal; pow (2, 1, -1, 0.5, -0.5); square                  ``div``; ``mul``/``sqrt``/...
sum, mean, amax, max (values); amin, min (values)              ``sum`` ``mean`` ``amax``; -amax(-x)
linalg_vector_norm, norm, frobenius_norm, linalg_norm (vector) ``norm``
view, _unsafe_view, reshape, view_as, reshape_as               ``reshape``
flatten.using_ints; permute                                    ``flatten``; ``permute``
transpose, swapaxes, swapdims, t, mT, numpy_T, movedim         ``permute`` (or nothing)
squeeze (all overloads); unsqueeze                             ``squeeze``; ``unsqueeze``
select (index from sizes: slice + squeeze); slice; narrow      ``select``; ``slice``
split, split_with_sizes, chunk; unbind                         ``slice`` each; ``select`` each
cat; stack; expand, expand_as                                  ``cat``; ``stack``; ``expand``
clone contiguous detach alias lift_fresh_copy, dropout         nothing: the input's value
(train=False), to/_to_copy/type_as to the same dtype
zeros ones full empty, new_*, *_like, scalar_tensor            ``full``
sym_size.int; operator add sub mul floordiv neg on sizes       ``size``; ``int_*``
operator.getitem of a multi-output op                          that output
=============================================================  ===============================

Whatever the graph cannot express is refused here, with ConversionError naming the ATen op, the
module path and the source line; never later with a wrong result.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import importlib
import math
import operator
import os
import re
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np

from .graph import ConversionError, Graph, InputSpec, Node, Operand, Structure

__all__ = ["capture"]

OPEN_END = 2**63 - 1  # slice end meaning "to the end" (what torch writes for x[a:])
_RNN_MODES = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn_tanh", "rnn_relu": "rnn_relu"}
_TRAINING_HINT = "call model.eval() before converting"
# selu is an elu with these constants (torch's, to the digit).
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def capture(module: Any, example_inputs: tuple[Any, ...]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The graph of `module` called on `example_inputs` (positional tensors), and its constants
    by name: state_dict names for parameters and buffers, ``_constN`` for tensors built in
    forward, ``_scalarN`` for scalar operands; float32 or int64 C-contiguous arrays.

    Raises ConversionError for a model the graph cannot express (see the module docstring)."""
    torch = _module("torch")

    if not isinstance(module, torch.nn.Module):
        raise TypeError(
            f"module: expected a torch.nn.Module, got {type(module).__module__}."
            f"{type(module).__qualname__}"
        )
    if not isinstance(example_inputs, tuple | list):
        raise TypeError(
            f"example_inputs: expected a tuple of tensors, got {type(example_inputs).__name__}"
        )
    _refuse_training(module)
    _check_weights(module)
    inputs = [_example_tensor(index, value) for index, value in enumerate(example_inputs)]
    target = _as_float32(module)
    program = _export(target, inputs)
    return _Converter(program, target).convert()


def _module(name: str) -> Any:
    """torch (and sympy) are optional, untyped peers: imported on use, typed as Any."""
    return importlib.import_module(name)


# -- checks before the capture ------------------------------------------------------------------
def _refuse_training(module: Any) -> None:
    for path, sub in module.named_modules():
        if sub.training:
            where = f"module {path!r} ({_type_name(type(sub))})" if path else "the model"
            raise ConversionError(
                f"{where} is in training mode: {_TRAINING_HINT} (a converted model runs "
                "inference: dropout off, batch norm on its running statistics)"
            )


def _check_weights(module: Any) -> None:
    tensors = [*module.named_parameters(), *module.named_buffers()]
    for name, tensor in tensors:
        if tensor.device.type != "cpu":
            raise ConversionError(
                f"{name} is on device {tensor.device.type!r}: move the model to the CPU "
                "(model.cpu()) before converting"
            )
        if tensor.is_complex():
            raise ConversionError(f"{name} is complex ({tensor.dtype}): not supported")


def _example_tensor(index: int, value: Any) -> Any:
    torch = _module("torch")

    where = f"example_inputs[{index}]"
    if not isinstance(value, torch.Tensor):
        raise ConversionError(
            f"{where}: expected a torch.Tensor, got {type(value).__name__}: the graph's inputs are "
            "tensors; make other arguments attributes of the module"
        )
    if value.device.type != "cpu":
        raise ConversionError(f"{where}: is on device {value.device.type!r}, expected a CPU tensor")
    if value.dtype in (torch.float32, torch.int64):
        return value.detach()
    if value.dtype == torch.int32:
        # Index inputs run as int64 (the graph's only integer type); the runtime casts int32.
        return value.detach().to(torch.int64)
    if value.is_floating_point():
        raise ConversionError(
            f"{where}: expected float32, got {value.dtype}: pyrnn computes in float32, "
            "pass the example as x.float()"
        )
    raise ConversionError(
        f"{where}: expected a float32 tensor, or int64/int32 indices, got {value.dtype}"
    )


def _as_float32(module: Any) -> Any:
    """`module` itself, or a float32 copy when some floating weight is float64, float16 or
    bfloat16: pyrnn computes in float32, and the user's module is never modified."""
    torch = _module("torch")

    tensors = [*module.parameters(), *module.buffers()]
    if all(t.dtype == torch.float32 or not t.is_floating_point() for t in tensors):
        return module
    return copy.deepcopy(module).float()


# -- the capture --------------------------------------------------------------------------------
def _export(module: Any, inputs: list[Any]) -> Any:
    torch = _module("torch")
    export = _module("torch.export")

    if not (hasattr(export, "ShapesCollection") and hasattr(getattr(export, "Dim", None), "AUTO")):
        raise ImportError(
            "converting a model needs torch.export with Dim.AUTO and ShapesCollection "
            f"(torch 2.6 or newer), found torch {torch.__version__}"
        )
    shapes = export.ShapesCollection()
    for tensor in inputs:
        # Export fixes example sizes 0 and 1 whatever it is told: say so, and it stays quiet.
        shapes[tensor] = {
            dim: export.Dim.AUTO if size > 1 else export.Dim.STATIC
            for dim, size in enumerate(tensor.shape)
        }
    try:
        with torch.no_grad(), _shape_rules(), warnings.catch_warnings():
            # Tensor attributes set in forward (nn.RNN's _flat_weights, weight_norm's weight):
            # export restores them; a graph reads the weights they are computed from.
            warnings.filterwarnings(
                "ignore",
                message=r"The tensor attributes? .* assigned during export",
                category=UserWarning,
            )
            # About torch's own conv kernel (a padded copy), not about the converted model.
            warnings.filterwarnings(
                "ignore", message="Using padding='same' with even kernel", category=UserWarning
            )
            return export.export(module, tuple(inputs), dynamic_shapes=shapes, strict=False)
    except ConversionError:
        raise
    except Exception as error:  # export raises many types; each is translated below
        raise _export_error(error) from error


def _export_error(error: BaseException) -> ConversionError:
    message = str(error)
    first = next((line.strip() for line in message.splitlines() if line.strip()), "")
    where = _error_location(error)
    at = f" at {where}" if where else ""
    kind = type(error).__name__
    data_dependent = (
        kind
        in {
            "GuardOnDataDependentSymNode",
            "DataDependentOutputException",
            "DynamicOutputShapeException",
        }
        or "data-dependent" in message.lower()
    )
    if data_dependent:
        return ConversionError(
            f"the model branches on tensor values{at} (data-dependent control flow), which a "
            "captured graph cannot follow: take the decision outside forward (a module "
            f"attribute set before converting, or two models) ({kind}: {first[:300]})"
        )
    if _packed_sequence_in(error):
        return ConversionError(
            f"packed sequences (torch.nn.utils.rnn){at} are not supported: run the RNN on the "
            f"padded batch ({kind}: {first[:200]})"
        )
    return ConversionError(f"torch.export could not capture the model{at}: {kind}: {first[:300]}")


def _packed_sequence_in(error: BaseException) -> bool:
    """Whether a frame the error passed through held a PackedSequence (a fake one does not
    trace: its lengths are data)."""
    packed = _module("torch.nn.utils.rnn").PackedSequence
    tb = error.__traceback__
    while tb is not None:
        if any(isinstance(value, packed) for value in tb.tb_frame.f_locals.values()):
            return True
        tb = tb.tb_next
    return False


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n[ \t]*([^\n]*)')


def _error_location(error: BaseException) -> str:
    """The user's source line where the capture failed: from the message (export quotes the
    call that raised), else from the traceback; "" when neither names one."""
    frames = [(path, int(line), code.strip()) for path, line, code in _FRAME.findall(str(error))]
    if not frames:
        frames = [
            (frame.filename, frame.lineno or 0, (frame.line or "").strip())
            for frame in traceback.extract_tb(error.__traceback__)
        ]
    user = [frame for frame in frames if _is_user_file(frame[0])]
    if not user:
        return ""
    path, line, code = user[-1]
    return f"{os.path.basename(path)}:{line}" + (f" `{code[:120]}`" if code else "")


def _is_user_file(path: str) -> bool:
    torch = _module("torch")

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__))
    full = os.path.abspath(path)
    return not (
        full.startswith(torch_dir + os.sep)
        or full == os.path.abspath(__file__)
        or path.startswith("<")
    )


@contextlib.contextmanager
def _shape_rules() -> Iterator[None]:
    """While exporting, a few composite ops get an output-shape rule in place of torch's own
    implementation, which would fix a free size: the fused RNN ops' Python decomposition loops
    over the steps, and max_pool1d's C++ check reads the length as a plain int. The ops stay
    single nodes in the graph either way, and real tensors still run torch's kernels."""
    torch = _module("torch")
    DispatchKey = torch._C.DispatchKey
    is_fake = _module("torch._subclasses.fake_tensor").is_fake

    aten = torch.ops.aten
    rules: dict[Any, Callable[..., Any]] = {
        aten.lstm.input: _rnn_shape,
        aten.gru.input: _rnn_shape,
        aten.rnn_tanh.input: _rnn_shape,
        aten.rnn_relu.input: _rnn_shape,
        aten.max_pool1d.default: _max_pool1d_shape,
    }
    keys = [DispatchKey.CompositeImplicitAutograd, DispatchKey.Autograd]
    saved: list[tuple[Any, Any, Any]] = []

    def patched(op: Any, rule: Callable[..., Any], original: Any) -> Callable[..., Any]:
        def kernel(*args: Any, **kwargs: Any) -> Any:
            if is_fake(args[0]):
                return rule(*args, **kwargs)
            if original is not None:
                return original(*args, **kwargs)
            with torch._C._DisablePythonDispatcher():
                return op(*args, **kwargs)

        return kernel

    try:
        for op, rule in rules.items():
            for key in keys:
                original = op.py_kernels.get(key)
                if original is not None or key == DispatchKey.CompositeImplicitAutograd:
                    saved.append((op, key, original))
                    op.py_kernels[key] = patched(op, rule, original)
            op._dispatch_cache.clear()
        yield
    finally:
        for op, key, original in saved:
            if original is None:
                op.py_kernels.pop(key, None)
            else:
                op.py_kernels[key] = original
        for op in rules:
            op._dispatch_cache.clear()


def _rnn_shape(x: Any, hx: Any, params: Any, *flags: Any) -> Any:
    """Outputs of aten.lstm/gru/rnn_*.input on fake tensors, from the shapes alone."""
    torch = _module("torch")

    bidirectional, batch_first = flags[4], flags[5]
    states = list(hx) if isinstance(hx, list | tuple) else [hx]
    batch = x.shape[0] if batch_first else x.shape[1]
    torch._check(x.dim() == 3, lambda: "RNN input must be 3-D")
    torch._check(x.shape[2] == params[0].shape[1], lambda: "RNN input size mismatch")
    for state in states:
        torch._check(state.shape[1] == batch, lambda: "RNN state batch mismatch")
    width = states[0].shape[2] * (2 if bidirectional else 1)
    out = x.new_empty((x.shape[0], x.shape[1], width))
    return (out, *(state.new_empty(state.shape) for state in states))


def _max_pool1d_shape(
    x: Any,
    kernel_size: Any,
    stride: Any = (),
    padding: Any = (0,),
    dilation: Any = (1,),
    ceil_mode: bool = False,
) -> Any:
    """aten.max_pool1d on a fake tensor: torch's output-length formula."""
    torch = _module("torch")

    kernel, pad, dilate = _one(kernel_size), _one(padding), _one(dilation)
    step = _one(stride) if len(stride) else kernel
    length = x.shape[-1]
    span = dilate * (kernel - 1) + 1
    out = (length + 2 * pad - span + (step - 1 if ceil_mode else 0)) // step + 1
    if ceil_mode and (out - 1) * step >= length + pad:
        out = out - 1  # the last window would start in the right padding
    torch._check(out >= 1, lambda: "max_pool1d: input too short for the kernel")
    return x.new_empty((*x.shape[:-1], out))


# -- conversion ---------------------------------------------------------------------------------
def _type_name(cls: Any) -> str:
    name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
    if name.startswith("torch.nn.modules."):
        return "torch.nn." + name.rsplit(".", 1)[-1]
    return name.rsplit(".", 1)[-1]


# ATen ops that only pass their input on at inference.
_ALIASES = {
    "aten.clone.default",
    "aten.contiguous.default",
    "aten.detach.default",
    "aten.detach_.default",
    "aten.alias.default",
    "aten.lift_fresh_copy.default",
    "aten.lift_fresh.default",
}
_DROPOUTS = {
    "aten.dropout.default",
    "aten.feature_dropout.default",
    "aten.alpha_dropout.default",
    "aten.feature_alpha_dropout.default",
}
_CASTS = {
    "aten._to_copy.default",
    "aten.to.dtype",
    "aten.to.dtype_layout",
    "aten.to.device",
    "aten.to.other",
    "aten.type_as.default",
}
# Ops whose result may share memory with their input: an in-place op on such a tensor, or on a
# tensor that has them, would change values the graph reads elsewhere.
_VIEWS = {
    "aten.view.default",
    "aten._unsafe_view.default",
    "aten.reshape.default",
    "aten.flatten.using_ints",
    "aten.permute.default",
    "aten.transpose.int",
    "aten.t.default",
    "aten.mT.default",
    "aten.numpy_T.default",
    "aten.swapaxes.default",
    "aten.swapdims.default",
    "aten.movedim.int",
    "aten.squeeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.unsqueeze.default",
    "aten.select.int",
    "aten.slice.Tensor",
    "aten.narrow.default",
    "aten.expand.default",
    "aten.expand_as.default",
    "aten.view_as.default",
    "aten.reshape_as.default",
    "aten.split.Tensor",
    "aten.split_with_sizes.default",
    "aten.chunk.default",
    "aten.unbind.int",
    *_ALIASES,
    *_DROPOUTS,
    *_CASTS,
}
_COPIES = {"aten.clone.default", "aten._to_copy.default", "aten.lift_fresh_copy.default"}
_SPLITS = {
    "aten.split.Tensor",
    "aten.split_with_sizes.default",
    "aten.chunk.default",
    "aten.unbind.int",
}


class _Converter:
    """Walks an ExportedProgram's graph in order and writes pyrnn graph nodes."""

    def __init__(self, program: Any, module: Any) -> None:
        torch = _module("torch")

        self.torch = torch
        self.program = program
        self.nodes: list[Node] = []
        self.env: dict[Any, Any] = {}  # fx node -> operand, or a tuple of them
        self.taken: set[str] = set()
        self.inputs: list[InputSpec] = []
        self.constant_tensors: dict[str, Any] = {}  # graph name -> torch tensor
        self.scalars: dict[tuple[str, float], str] = {}
        self.scalar_values: dict[str, np.ndarray] = {}
        self.zeros: set[str] = set()  # values known to be all zeros
        self.anonymous = 0  # _constN names given so far
        self.symbols: dict[Any, tuple[str, int]] = {}  # size symbol -> (input, dim)
        self.symbol_values: dict[Any, Operand] = {}
        self.modules = {path for path, _ in module.named_modules()}
        self.fx_node: Any = None  # the node being converted, for sources and errors
        self.handlers = self._handlers()

    # -- driver ---------------------------------------------------------------------------------
    def convert(self) -> tuple[Graph, dict[str, np.ndarray]]:
        self._refuse_mutations()
        self._placeholders()
        graph = self.program.graph
        order = {node: index for index, node in enumerate(graph.nodes)}
        for node in graph.nodes:
            if node.op == "call_function" and _is_inplace_node(node):
                self.fx_node = node
                self._check_inplace(node, order)
        output = next(node for node in graph.nodes if node.op == "output")
        needed = _needed(output)
        for node in graph.nodes:
            if node.op == "call_function" and node in needed:
                self.fx_node = node
                self._convert_node(node)
        self.fx_node = None
        leaves = list(output.args[0])
        structure = self._structure(self.program.call_spec.out_spec, iter(leaves))
        return self._finish(structure)

    def _refuse_mutations(self) -> None:
        OutputKind = _module("torch.export.graph_signature").OutputKind

        signature = self.program.graph_signature
        written = [
            str(spec.target or spec.arg.name)
            for spec in signature.output_specs
            if spec.kind != OutputKind.USER_OUTPUT
        ]
        if written:
            raise ConversionError(
                f"the model writes to {', '.join(sorted(written))} in forward: a converted "
                "graph keeps no state between calls; return the new state as an output instead"
            )

    def _placeholders(self) -> None:
        InputKind = _module("torch.export.graph_signature").InputKind

        by_name = {node.name: node for node in self.program.graph.nodes if node.op == "placeholder"}
        specs = self.program.graph_signature.input_specs
        # Constants keep their state_dict names: claim them before any other name.
        anonymous = 0
        named: list[tuple[Any, str, Any]] = []
        for spec in specs:
            node = by_name[spec.arg.name]
            if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                value = self.program.state_dict.get(spec.target)
                if value is None:
                    value = self.program.constants[spec.target]
                named.append((node, spec.target, value))
            elif spec.kind == InputKind.CONSTANT_TENSOR:
                named.append((node, f"_const{anonymous}", self.program.constants[spec.target]))
                anonymous += 1
            elif spec.kind != InputKind.USER_INPUT:
                raise ConversionError(f"model input {spec.arg.name!r} of kind {spec.kind.name}")
        self.anonymous = anonymous
        for node, name, value in named:
            self.taken.add(name)
            self.env[node] = name
            self.constant_tensors[name] = value
        for spec in specs:
            if spec.kind == InputKind.USER_INPUT:
                self._user_input(by_name[spec.arg.name])

    def _user_input(self, node: Any) -> None:
        sympy = _module("sympy")

        value = node.meta["val"]
        name = self._fresh(node.name)
        self.env[node] = name
        shape: list[int | None] = []
        ranges: list[tuple[int, int, int | None]] = []
        for dim, size in enumerate(value.shape):
            expr = _expr(size)
            if expr.is_Integer:
                shape.append(int(expr))
                continue
            shape.append(None)
            if isinstance(expr, sympy.Symbol):
                self.symbols.setdefault(expr, (name, dim))
                bounds = self.program.range_constraints.get(expr)
                if bounds is not None:
                    low = _finite(bounds.lower) or 0
                    high = _finite(bounds.upper)
                    high = high if high is not None and high < 2**31 else None
                    # export assumes free dims are >= 2 when tracing; size 1 runs the same graph.
                    low = low if low > 2 else 0
                    if low > 0 or high is not None:
                        ranges.append((dim, low, high))
        self.inputs.append(InputSpec(name, _dtype_name(value.dtype), shape, ranges))

    def _convert_node(self, node: Any) -> None:
        target = node.target
        if self._computed_from_weights(node):
            self._fold(node)
            return
        key = target if not hasattr(target, "_schema") else str(target)
        if hasattr(target, "_schema") and _is_inplace(target) and key not in _ALIASES:
            key = _functional_name(target)
            if key is None or key not in self.handlers:
                self._unsupported(str(target))
        handler = self.handlers.get(key)
        if handler is None:
            self._unsupported(_op_name(target))
        handler(node, _bind(node))

    def _computed_from_weights(self, node: Any) -> bool:
        """Whether the node computes a tensor from constants alone (a weight norm, a
        transposed or scaled weight): such a result is computed once, here, with torch."""
        target = node.target
        if not hasattr(target, "_schema") or _is_inplace(target) or str(target) in _ALIASES:
            return False
        if self.torch.Tag.nondeterministic_seeded in getattr(target, "tags", ()):
            return False
        inputs = node.all_input_nodes
        return bool(inputs) and all(
            _is_tensor_node(n) and self.env.get(n) in self.constant_tensors for n in inputs
        )

    def _fold(self, node: Any) -> None:
        torch = self.torch

        def real(value: Any) -> Any:
            if hasattr(value, "op"):
                return self.constant_tensors[self.env[value]].detach()
            if isinstance(value, list | tuple):
                return type(value)(real(v) for v in value)
            return value

        try:
            with torch.no_grad():
                result = node.target(*real(list(node.args)), **real(dict(node.kwargs)))
        except Exception as error:
            self._refuse(f"{_op_name(node.target)} on the model's weights failed: {error}")
        results = list(result) if isinstance(result, list | tuple) else [result]
        names = []
        for tensor in results:
            if not isinstance(tensor, torch.Tensor):
                self._refuse(f"{_op_name(node.target)} on the model's weights gave {tensor!r:.40}")
            name = self._fresh(f"_const{self.anonymous}")
            self.anonymous += 1
            self.constant_tensors[name] = tensor
            if tensor.numel() and not tensor.any():
                self.zeros.add(name)
            names.append(name)
        self._set(node, tuple(names) if isinstance(result, list | tuple) else names[0])

    def _finish(self, structure: Structure) -> tuple[Graph, dict[str, np.ndarray]]:
        live = set(_leaves(structure))
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(name in live for name in node.outputs):
                kept.append(node)
                live.update(x for x in node.inputs if isinstance(x, str))
        kept.reverse()
        constants: dict[str, np.ndarray] = {}
        for name, tensor in self.constant_tensors.items():
            if name in live:
                constants[name] = self._constant_array(name, tensor)
        for name, array in self.scalar_values.items():
            if name in live:
                constants[name] = array
        graph = Graph(self.inputs, structure, list(constants), kept)
        graph.validate()
        return graph, constants

    def _constant_array(self, name: str, tensor: Any) -> np.ndarray:
        torch = self.torch
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            array: np.ndarray = np.array(tensor.to(torch.float32).numpy(), dtype=np.float32)
            return array
        if tensor.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            indices: np.ndarray = np.array(tensor.to(torch.int64).numpy(), dtype=np.int64)
            return indices
        raise ConversionError(
            f"constant {name!r} has dtype {tensor.dtype}: graphs hold float32 and int64 tensors"
        )

    # -- output structure -----------------------------------------------------------------------
    def _structure(self, spec: Any, leaves: Iterator[Any]) -> Structure:
        if spec.is_leaf():
            leaf = next(leaves)
            if leaf is None:
                return {"none": None}
            operand = self.env.get(leaf) if hasattr(leaf, "op") else None
            if not isinstance(operand, str) or not _is_tensor_node(leaf):
                raise ConversionError(
                    f"the model returns {leaf!r:.60}: outputs must be tensors (or None), in "
                    "tuples, lists and dicts"
                )
            return {"tensor": operand}
        children = [self._structure(child, leaves) for child in spec.children()]
        kind = spec.type
        if kind in (tuple, list) or getattr(kind, "__name__", "") in ("namedtuple", "structseq"):
            return {"tuple" if kind is not list else "list": children}
        if kind in (dict, collections.OrderedDict, collections.defaultdict):
            # a defaultdict's context is (default_factory, keys)
            keys = list(spec.context[1] if kind is collections.defaultdict else spec.context)
            if not all(isinstance(key, str) for key in keys):
                raise ConversionError(
                    f"the model returns a dict with keys {keys!r:.80}: use str keys"
                )
            return {"dict": [[key, child] for key, child in zip(keys, children, strict=True)]}
        raise ConversionError(
            f"the model returns a {_type_name(kind)}: outputs must be tensors in tuples, lists "
            "and dicts"
        )

    # -- emitting -------------------------------------------------------------------------------
    def _fresh(self, base: str) -> str:
        name, suffix = base, 1
        while name in self.taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self.taken.add(name)
        return name

    def _emit(
        self,
        op: str,
        inputs: Sequence[Operand],
        attrs: dict[str, Any],
        outputs: int = 1,
        base: str | None = None,
    ) -> list[str]:
        base = base or (self.fx_node.name if self.fx_node is not None else op)
        names = [self._fresh(base) for _ in range(outputs)]
        self.nodes.append(Node(op, list(inputs), names, attrs, self._source()))
        return names

    def _emit1(self, op: str, inputs: Sequence[Operand], attrs: dict[str, Any]) -> str:
        return self._emit(op, inputs, attrs)[0]

    def _set(self, node: Any, value: Any) -> None:
        self.env[node] = value

    def _source(self) -> str:
        node = self.fx_node
        if node is None:
            return ""
        parts = []
        module = self._module_of(node)
        if module:
            parts.append(module)
        line = _user_line(node.meta.get("stack_trace") or "")
        if line:
            parts.append(line)
        return ", ".join(parts)[:4000]

    def _module_of(self, node: Any) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        for path, cls in reversed(list(stack.values())):
            if path and path in self.modules:
                return f"{path} ({_type_name(cls)})"
        return ""

    def _where(self) -> str:
        source = self._source() if self.fx_node is not None else ""
        return f" (in {source})" if source else ""

    def _refuse(self, message: str) -> NoReturn:
        raise ConversionError(f"{message}{self._where()}")

    def _unsupported(self, op: str) -> NoReturn:
        self._refuse(
            f"{op} is not supported: a pyrnn graph cannot express it; rewrite that part of "
            "the model with supported operations (see pyrnn.capture_torch's op table)"
        )

    # -- operands -------------------------------------------------------------------------------
    def _tensor(self, value: Any) -> str:
        if not hasattr(value, "op") or not _is_tensor_node(value):
            self._refuse(
                f"{_op_name(self.fx_node.target)}: expected a tensor operand, got {value!r:.60}"
            )
        operand = self.env[value]
        if not isinstance(operand, str):
            self._refuse(f"{_op_name(self.fx_node.target)}: operand {value} is not a tensor")
        return operand

    def _optional(self, value: Any) -> Operand:
        return None if value is None else self._tensor(value)

    def _int(self, value: Any) -> Operand:
        """An int operand: a literal, or the name of an int value computed from sizes."""
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if hasattr(value, "op"):
            operand = self.env.get(value)
            if isinstance(operand, int | str) and not _is_tensor_node(value):
                return operand
        if hasattr(value, "node") and hasattr(value.node, "expr"):  # a SymInt
            return self._expr_operand(value.node.expr)
        return self._refuse(f"{_op_name(self.fx_node.target)}: expected an int, got {value!r:.60}")

    def _static_int(self, value: Any, what: str) -> int:
        operand = self._int(value)
        if not isinstance(operand, int):
            self._refuse(f"{_op_name(self.fx_node.target)}: {what} must not depend on input sizes")
        return int(operand)

    def _int_op(self, op: str, a: Operand, b: Operand) -> Operand:
        if isinstance(a, int) and isinstance(b, int):
            folded = {
                "int_add": operator.add,
                "int_sub": operator.sub,
                "int_mul": operator.mul,
                "int_floordiv": operator.floordiv,
            }[op](a, b)
            return int(folded)
        return self._emit1(op, [a, b], {})

    def _expr_operand(self, expr: Any) -> Operand:
        """An int operand computing a symbolic size expression from the inputs' sizes."""
        sympy = _module("sympy")
        FloorDiv = _module("torch.utils._sympy.functions").FloorDiv

        if expr.is_Integer:
            return int(expr)
        if expr in self.symbol_values:
            return self.symbol_values[expr]
        if isinstance(expr, sympy.Symbol):
            if expr not in self.symbols:
                self._refuse(f"size {expr} does not come from an input's shape (data-dependent)")
            name, dim = self.symbols[expr]
            result: Operand = self._emit("size", [name], {"dim": dim}, base=f"{name}_size{dim}")[0]
        elif expr.could_extract_minus_sign():
            result = self._int_op("int_sub", 0, self._expr_operand(-expr))
        elif isinstance(expr, sympy.Add | sympy.Mul):
            terms = list(expr.args)
            result = self._expr_operand(terms[0])
            for term in terms[1:]:
                if isinstance(expr, sympy.Mul):
                    result = self._int_op("int_mul", result, self._expr_operand(term))
                elif term.could_extract_minus_sign():
                    result = self._int_op("int_sub", result, self._expr_operand(-term))
                else:
                    result = self._int_op("int_add", result, self._expr_operand(term))
        elif isinstance(expr, FloorDiv):
            result = self._int_op(
                "int_floordiv", self._expr_operand(expr.args[0]), self._expr_operand(expr.args[1])
            )
        else:
            result = self._refuse(f"size expression {expr} cannot be computed in a graph")
        self.symbol_values[expr] = result
        return result

    def _shape_operands(self, value: Any) -> list[Operand]:
        return [self._expr_operand(_expr(size)) for size in value.shape]

    def _scalar(self, value: float | int, dtype: str) -> str:
        key = (dtype, float(value))
        if key not in self.scalars:
            name = self._fresh(f"_scalar{len(self.scalars)}")
            self.scalars[key] = name
            array = np.array(value, dtype=np.float32 if dtype == "float32" else np.int64)
            self.scalar_values[name] = array
        return self.scalars[key]

    def _rank(self, value: Any) -> int:
        return int(value.meta["val"].dim())

    def _axis(self, dim: int, rank: int) -> int:
        if not -max(rank, 1) <= dim < max(rank, 1):
            self._refuse(f"{_op_name(self.fx_node.target)}: dim {dim} out of range for rank {rank}")
        return dim % max(rank, 1)

    def _out_dtype(self, node: Any) -> str:
        value = node.meta["val"]
        if value.dtype not in (self.torch.float32, self.torch.int64):
            self._refuse(
                f"{_op_name(node.target)} produces {value.dtype}: graphs compute float32 and "
                "int64 tensors"
            )
        return _dtype_name(value.dtype)

    # -- handlers -------------------------------------------------------------------------------
    def _handlers(self) -> dict[Any, Callable[[Any, dict[str, Any]], None]]:
        h: dict[Any, Callable[[Any, dict[str, Any]], None]] = {}
        for mode in _RNN_MODES:
            h[f"aten.{mode}.input"] = self._rnn
        for mode in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
            h[f"aten.{mode}_cell.default"] = self._rnn_cell
        h["aten.linear.default"] = self._linear
        h["aten.conv1d.default"] = self._conv1d
        h["aten.conv1d.padding"] = self._conv1d
        h["aten.max_pool1d.default"] = self._max_pool1d
        h["aten.max_pool1d_with_indices.default"] = self._max_pool1d
        h["aten.avg_pool1d.default"] = self._avg_pool1d
        h["aten.embedding.default"] = self._embedding
        h["aten.layer_norm.default"] = self._layer_norm
        h["aten.batch_norm.default"] = self._batch_norm
        h["aten._native_batch_norm_legit_no_training.default"] = self._batch_norm
        for name in (
            "relu",
            "sigmoid",
            "tanh",
            "silu",
            "neg",
            "exp",
            "log",
            "sqrt",
            "rsqrt",
            "abs",
        ):
            h[f"aten.{name}.default"] = self._activation(name, lambda a: {})
        h["aten.gelu.default"] = self._activation(
            "gelu", lambda a: {"approximate": a["approximate"]}
        )
        h["aten.leaky_relu.default"] = self._activation(
            "leaky_relu", lambda a: {"negative_slope": float(a["negative_slope"])}
        )
        h["aten.elu.default"] = self._activation(
            "elu",
            lambda a: {
                "alpha": float(a["alpha"]),
                "scale": float(a["scale"]),
                "input_scale": float(a["input_scale"]),
            },
        )
        h["aten.selu.default"] = self._activation(
            "elu", lambda a: {"alpha": _SELU_ALPHA, "scale": _SELU_SCALE, "input_scale": 1.0}
        )
        h["aten.celu.default"] = self._activation(
            "elu",
            lambda a: {"alpha": float(a["alpha"]), "scale": 1.0, "input_scale": 1.0 / a["alpha"]},
        )
        h["aten.hardtanh.default"] = self._activation(
            "hardtanh", lambda a: {"min_val": float(a["min_val"]), "max_val": float(a["max_val"])}
        )
        h["aten.relu6.default"] = self._activation(
            "hardtanh", lambda a: {"min_val": 0.0, "max_val": 6.0}
        )
        h["aten.clamp.default"] = self._clamp
        h["aten.clamp_min.default"] = self._clamp
        h["aten.clamp_max.default"] = self._clamp
        h["aten.softplus.default"] = self._activation(
            "softplus", lambda a: {"beta": float(a["beta"]), "threshold": float(a["threshold"])}
        )
        for overload in ("aten.softmax.int", "aten._softmax.default"):
            h[overload] = self._softmax("softmax")
        for overload in ("aten.log_softmax.int", "aten._log_softmax.default"):
            h[overload] = self._softmax("log_softmax")
        for name in ("add", "sub", "mul", "div"):
            for overload in ("Tensor", "Scalar"):
                h[f"aten.{name}.{overload}"] = self._binary(name)
        h["aten.div.Tensor_mode"] = self._binary("div")
        h["aten.div.Scalar_mode"] = self._binary("div")
        h["aten.true_divide.Tensor"] = self._binary("div")
        h["aten.rsub.Tensor"] = self._binary("rsub")
        h["aten.rsub.Scalar"] = self._binary("rsub")
        h["aten.reciprocal.default"] = self._reciprocal
        h["aten.pow.Tensor_Scalar"] = self._pow
        h["aten.square.default"] = self._pow
        h["aten.sum.dim_IntList"] = self._reduce("sum")
        h["aten.sum.default"] = self._reduce("sum")
        h["aten.mean.dim"] = self._reduce("mean")
        h["aten.mean.default"] = self._reduce("mean")
        h["aten.amax.default"] = self._reduce("amax")
        h["aten.max.default"] = self._reduce("amax")
        h["aten.max.dim"] = self._reduce("amax")
        h["aten.amin.default"] = self._reduce("amin")
        h["aten.min.default"] = self._reduce("amin")
        h["aten.min.dim"] = self._reduce("amin")
        for overload in (
            "aten.linalg_vector_norm.default",
            "aten.norm.Scalar",
            "aten.norm.ScalarOpt_dim",
            "aten.norm.ScalarOpt_dtype",
            "aten.norm.ScalarOpt_dim_dtype",
            "aten.frobenius_norm.dim",
            "aten.linalg_norm.default",
        ):
            h[overload] = self._norm
        for overload in ("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default"):
            h[overload] = self._reshape
        h["aten.view_as.default"] = self._reshape_as
        h["aten.reshape_as.default"] = self._reshape_as
        h["aten.flatten.using_ints"] = self._flatten
        h["aten.permute.default"] = self._permute
        for overload in (
            "aten.transpose.int",
            "aten.swapaxes.default",
            "aten.swapdims.default",
            "aten.t.default",
            "aten.mT.default",
            "aten.numpy_T.default",
            "aten.movedim.int",
        ):
            h[overload] = self._transpose
        for overload in ("aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims"):
            h[overload] = self._squeeze
        h["aten.unsqueeze.default"] = self._unsqueeze
        h["aten.select.int"] = self._select
        h["aten.slice.Tensor"] = self._slice
        h["aten.narrow.default"] = self._narrow
        for overload in _SPLITS:
            h[overload] = self._split
        h["aten.cat.default"] = self._cat("cat")
        h["aten.stack.default"] = self._cat("stack")
        h["aten.expand.default"] = self._expand
        h["aten.expand_as.default"] = self._expand
        for overload in _ALIASES:
            h[overload] = self._alias
        for overload in _DROPOUTS:
            h[overload] = self._dropout
        for overload in _CASTS:
            h[overload] = self._cast
        for name in ("zeros", "ones", "full", "empty"):
            h[f"aten.{name}.default"] = self._full
            h[f"aten.new_{name}.default"] = self._full
            h[f"aten.{name}_like.default"] = self._full
        h["aten.empty.memory_format"] = self._full
        h["aten.scalar_tensor.default"] = self._full
        h["aten.sym_size.int"] = self._size
        h[operator.add] = self._int_arith("int_add")
        h[operator.sub] = self._int_arith("int_sub")
        h[operator.mul] = self._int_arith("int_mul")
        h[operator.floordiv] = self._int_arith("int_floordiv")
        h[operator.neg] = self._int_arith("neg")
        h[operator.getitem] = self._getitem
        return h

    # recurrent
    def _rnn(self, node: Any, a: dict[str, Any]) -> None:
        mode = _RNN_MODES[str(node.target).split(".")[1]]
        layers, bidirectional = int(a["num_layers"]), bool(a["bidirectional"])
        if a["train"] and a["dropout"] > 0 and layers > 1:
            self._refuse(
                f"{_op_name(node.target)} runs with dropout in training mode: {_TRAINING_HINT}"
            )
        states = list(a["hx"]) if mode == "lstm" else [a["hx"]]
        h0 = self._state(states[0])
        c0 = self._state(states[1]) if mode == "lstm" else None
        weights = [self._tensor(w) for w in a["params"]]
        per = len(weights) // (layers * (2 if bidirectional else 1))
        biases = bool(a["has_biases"])
        if per * layers * (2 if bidirectional else 1) != len(weights) or per not in (
            2 + 2 * biases,
            3 + 2 * biases if mode == "lstm" else -1,
        ):
            self._refuse(
                f"{_op_name(node.target)}: {len(weights)} weights do not fit {layers} layers"
            )
        attrs = {
            "mode": mode,
            "num_layers": layers,
            "bidirectional": bidirectional,
            "batch_first": bool(a["batch_first"]),
            "has_biases": biases,
        }
        outputs = 3 if mode == "lstm" else 2
        self._set(
            node,
            tuple(self._emit("rnn", [self._tensor(a["input"]), h0, c0, *weights], attrs, outputs)),
        )

    def _state(self, value: Any) -> Operand:
        """A recurrent state operand: null when it is zeros (nn.LSTM & co. build them when the
        caller passes no state), so the core starts from zeros without reading a tensor."""
        name = self._tensor(value)
        return None if name in self.zeros else name

    def _rnn_cell(self, node: Any, a: dict[str, Any]) -> None:
        mode = str(node.target).split(".")[1].removesuffix("_cell")
        if mode == "lstm":
            h, c = (self._state(s) for s in a["hx"])
        else:
            h, c = self._state(a["hx"]), None
        operands = [
            self._tensor(a["input"]),
            h,
            c,
            self._tensor(a["w_ih"]),
            self._tensor(a["w_hh"]),
            self._optional(a["b_ih"]),
            self._optional(a["b_hh"]),
        ]
        names = self._emit("rnn_cell", operands, {"mode": mode}, 2 if mode == "lstm" else 1)
        self._set(node, tuple(names) if mode == "lstm" else names[0])

    # layers
    def _linear(self, node: Any, a: dict[str, Any]) -> None:
        operands = [self._tensor(a["input"]), self._tensor(a["weight"]), self._optional(a["bias"])]
        self._set(node, self._emit1("linear", operands, {}))

    def _conv1d(self, node: Any, a: dict[str, Any]) -> None:
        stride, dilation = _one(a["stride"]), _one(a["dilation"])
        padding = a["padding"]
        if isinstance(padding, str):
            if padding == "valid":
                pads = [0, 0]
            elif padding == "same":
                if stride != 1:
                    self._refuse("conv1d: padding='same' needs stride 1")
                total = dilation * (int(a["weight"].meta["val"].shape[-1]) - 1)
                pads = [total // 2, total - total // 2]
            else:
                self._refuse(f"conv1d: padding {padding!r} is not 'same', 'valid' or an int")
        else:
            pads = [_one(padding)] * 2
        operands = [self._tensor(a["input"]), self._tensor(a["weight"]), self._optional(a["bias"])]
        attrs = {
            "stride": stride,
            "padding": pads,
            "dilation": dilation,
            "groups": int(a["groups"]),
        }
        self._set(node, self._emit1("conv1d", operands, attrs))

    def _max_pool1d(self, node: Any, a: dict[str, Any]) -> None:
        kernel = _one(a["kernel_size"])
        attrs = {
            "kernel_size": kernel,
            "stride": _one(a["stride"]) if len(a["stride"]) else kernel,
            "padding": _one(a["padding"]),
            "dilation": _one(a["dilation"]),
            "ceil_mode": bool(a["ceil_mode"]),
        }
        name = self._emit1("max_pool1d", [self._tensor(a["self"])], attrs)
        with_indices = str(node.target) == "aten.max_pool1d_with_indices.default"
        self._set(node, (name, None) if with_indices else name)

    def _avg_pool1d(self, node: Any, a: dict[str, Any]) -> None:
        kernel = _one(a["kernel_size"])
        attrs = {
            "kernel_size": kernel,
            "stride": _one(a["stride"]) if len(a["stride"]) else kernel,
            "padding": _one(a["padding"]),
            "ceil_mode": bool(a["ceil_mode"]),
            "count_include_pad": bool(a["count_include_pad"]),
        }
        self._set(node, self._emit1("avg_pool1d", [self._tensor(a["self"])], attrs))

    def _embedding(self, node: Any, a: dict[str, Any]) -> None:
        if a["indices"].meta["val"].dtype != self.torch.int64:
            self._refuse(f"embedding: indices are {a['indices'].meta['val'].dtype}, expected int64")
        operands = [self._tensor(a["weight"]), self._tensor(a["indices"])]
        self._set(node, self._emit1("embedding", operands, {}))

    def _layer_norm(self, node: Any, a: dict[str, Any]) -> None:
        operands = [
            self._tensor(a["input"]),
            self._optional(a["weight"]),
            self._optional(a["bias"]),
        ]
        attrs = {"normalized_rank": len(a["normalized_shape"]), "eps": float(a["eps"])}
        self._set(node, self._emit1("layer_norm", operands, attrs))

    def _batch_norm(self, node: Any, a: dict[str, Any]) -> None:
        if a.get("training") or a["running_mean"] is None or a["running_var"] is None:
            self._refuse(
                f"{_op_name(node.target)} normalises with batch statistics (training mode, or "
                f"track_running_stats=False): {_TRAINING_HINT} and keep running statistics"
            )
        operands = [
            self._tensor(a["input"]),
            self._optional(a["weight"]),
            self._optional(a["bias"]),
            self._tensor(a["running_mean"]),
            self._tensor(a["running_var"]),
        ]
        name = self._emit1("batch_norm", operands, {"eps": float(a["eps"])})
        legit = str(node.target).startswith("aten._native_batch_norm_legit")
        self._set(node, (name, None, None) if legit else name)

    # element-wise
    def _activation(
        self, op: str, attrs: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            self._set(node, self._emit1(op, [self._tensor(a["self"])], attrs(a)))

        return handler

    def _clamp(self, node: Any, a: dict[str, Any]) -> None:
        low, high = a.get("min"), a.get("max")
        for bound in (low, high):
            if bound is not None and not isinstance(bound, int | float):
                self._refuse(f"{_op_name(node.target)}: bounds must be numbers, got {bound!r:.40}")
        attrs = {
            "min_val": -math.inf if low is None else float(low),
            "max_val": math.inf if high is None else float(high),
        }
        self._set(node, self._emit1("hardtanh", [self._tensor(a["self"])], attrs))

    def _softmax(self, op: str) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            dtype = a.get("dtype")
            if dtype is not None and dtype != self.torch.float32:
                self._refuse(f"{_op_name(node.target)}: dtype {dtype} (graphs compute float32)")
            dim = self._axis(int(a["dim"]), self._rank(a["self"]))
            self._set(node, self._emit1(op, [self._tensor(a["self"])], {"dim": dim}))

        return handler

    def _binary(self, op: str) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            if a.get("rounding_mode") is not None:
                self._refuse(
                    f"{_op_name(node.target)} with rounding_mode={a['rounding_mode']!r}: only "
                    "true division is supported"
                )
            dtype = self._out_dtype(node)
            if dtype == "int64" and op == "div":
                self._refuse(f"{_op_name(node.target)}: integer division")
            x, y = a["self"], a["other"]
            alpha = a.get("alpha", 1)
            if op == "rsub":  # other - alpha * self
                x, y = y, x
            if alpha != 1:
                if not isinstance(alpha, int | float):
                    self._refuse(f"{_op_name(node.target)}: alpha {alpha!r:.40} is not a number")
                if hasattr(y, "op"):
                    y = self._emit1(
                        "mul", [self._arith_operand(y, dtype), self._scalar(alpha, dtype)], {}
                    )
                else:
                    y = y * alpha
            real = "sub" if op == "rsub" else op
            operands = [self._arith_operand(x, dtype), self._arith_operand(y, dtype)]
            self._set(node, self._emit1(real, operands, {}))

        return handler

    def _arith_operand(self, value: Any, dtype: str) -> str:
        if isinstance(value, str):  # already emitted
            return value
        if isinstance(value, bool | int | float):
            if dtype == "int64" and not float(value).is_integer():
                self._refuse(f"{_op_name(self.fx_node.target)}: {value} with an int64 tensor")
            return self._scalar(value, dtype)
        if hasattr(value, "op") and _is_tensor_node(value):
            got = _dtype_name(value.meta["val"].dtype)
            if got != dtype:
                self._refuse(
                    f"{_op_name(self.fx_node.target)} mixes {got} and {dtype} tensors: the graph "
                    "has no type conversion"
                )
            return self._tensor(value)
        if hasattr(value, "op") and isinstance(value.meta.get("val"), self.torch.SymInt):
            size = self._int(value)
            if isinstance(size, int):
                return self._scalar(size, dtype)
            # A size as a 0-d tensor: the sum of that many ones (exact below 2**24 in float32).
            ones = self._emit1("full", [size], {"value": 1.0, "dtype": dtype})
            return self._emit1("sum", [ones], {"dims": [], "keepdim": False})
        return self._refuse(
            f"{_op_name(self.fx_node.target)} uses {value!r:.60} (a number computed from sizes) "
            "as a tensor operand: not supported"
        )

    def _reciprocal(self, node: Any, a: dict[str, Any]) -> None:
        dtype = self._out_dtype(node)
        operands = [self._scalar(1.0, dtype), self._arith_operand(a["self"], dtype)]
        self._set(node, self._emit1("div", operands, {}))

    def _pow(self, node: Any, a: dict[str, Any]) -> None:
        exponent = a.get("exponent", 2)
        dtype = self._out_dtype(node)
        x = self._arith_operand(a["self"], dtype)
        if exponent == 1:
            self._set(node, x)
        elif exponent == 2:
            self._set(node, self._emit1("mul", [x, x], {}))
        elif exponent == -1 and dtype == "float32":
            self._set(node, self._emit1("div", [self._scalar(1.0, dtype), x], {}))
        elif exponent == 0.5 and dtype == "float32":
            self._set(node, self._emit1("sqrt", [x], {}))
        elif exponent == -0.5 and dtype == "float32":
            self._set(node, self._emit1("rsqrt", [x], {}))
        else:
            self._refuse(
                f"{_op_name(node.target)} with exponent {exponent!r:.40}: only 2, 1, -1, 0.5, -0.5"
            )

    # reductions
    def _reduce(self, op: str) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            dtype = a.get("dtype")
            x = a["self"]
            if dtype is not None and dtype != x.meta["val"].dtype:
                self._refuse(f"{_op_name(node.target)}: dtype {dtype} (the graph has no cast)")
            rank = self._rank(x)
            dims = _dims(a.get("dim"))
            attrs = {
                "dims": sorted({self._axis(int(d), rank) for d in dims}),
                "keepdim": bool(a.get("keepdim", False)),
            }
            operand = self._tensor(x)
            if op == "amin":  # min(x) = -max(-x)
                negated = self._emit1("neg", [operand], {})
                name = self._emit1("neg", [self._emit1("amax", [negated], attrs)], {})
            else:
                name = self._emit1(op, [operand], attrs)
            multi = str(node.target) in ("aten.max.dim", "aten.min.dim")
            self._set(node, (name, None) if multi else name)

        return handler

    def _norm(self, node: Any, a: dict[str, Any]) -> None:
        name = str(node.target)
        x = a["self"]
        rank = self._rank(x)
        order = a.get("ord", a.get("p", 2))
        if name == "aten.frobenius_norm.dim" or order is None:
            order = 2
        if isinstance(order, str):
            order = 2 if order == "fro" else self._refuse(f"{name} with ord {order!r:.20}")
        dims = _dims(a.get("dim"))
        if (
            name == "aten.linalg_norm.default"
            and a.get("ord") is not None
            and (len(dims) == 2 or (not dims and rank == 2))
        ):
            self._refuse(f"{name}: a matrix norm (ord {order}); use torch.linalg.vector_norm")
        dtype = a.get("dtype")
        if dtype is not None and dtype != self.torch.float32:
            self._refuse(f"{name}: dtype {dtype} (graphs compute float32)")
        attrs = {
            "ord": float(order),
            "dims": sorted({self._axis(int(d), rank) for d in dims}),
            "keepdim": bool(a.get("keepdim", False)),
        }
        self._set(node, self._emit1("norm", [self._tensor(x)], attrs))

    # shapes
    def _reshape(self, node: Any, a: dict[str, Any]) -> None:
        sizes = a["size"] if "size" in a else a["shape"]
        operands = [self._tensor(a["self"]), *(self._int(s) for s in sizes)]
        self._set(node, self._emit1("reshape", operands, {}))

    def _reshape_as(self, node: Any, a: dict[str, Any]) -> None:
        sizes = self._shape_operands(a["other"].meta["val"])
        self._set(node, self._emit1("reshape", [self._tensor(a["self"]), *sizes], {}))

    def _flatten(self, node: Any, a: dict[str, Any]) -> None:
        rank = self._rank(a["self"])
        attrs = {
            "start_dim": self._axis(int(a["start_dim"]), rank),
            "end_dim": self._axis(int(a["end_dim"]), rank),
        }
        self._set(node, self._emit1("flatten", [self._tensor(a["self"])], attrs))

    def _permute(self, node: Any, a: dict[str, Any]) -> None:
        rank = self._rank(a["self"])
        self._permute_to(node, a["self"], [self._axis(int(d), rank) for d in a["dims"]])

    def _permute_to(self, node: Any, x: Any, order: list[int]) -> None:
        if order == sorted(order):
            self._set(node, self._tensor(x))
        else:
            self._set(node, self._emit1("permute", [self._tensor(x)], {"dims": order}))

    def _transpose(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        rank = self._rank(x)
        order = list(range(rank))
        name = str(node.target)
        if name == "aten.numpy_T.default":
            order.reverse()
        elif name == "aten.movedim.int":
            source, destination = self._axis(a["source"], rank), self._axis(a["destination"], rank)
            order.remove(source)
            order.insert(destination, source)
        elif rank >= 2:
            if name == "aten.t.default":
                first, second = 0, 1
            elif name == "aten.mT.default":
                first, second = rank - 2, rank - 1
            else:
                dims = [v for k, v in a.items() if k != "self"]
                first, second = (self._axis(int(d), rank) for d in dims)
            order[first], order[second] = order[second], order[first]
        self._permute_to(node, x, order)

    def _squeeze(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        rank = self._rank(x)
        dim = a.get("dim")
        if rank == 0 or (dim is not None and not isinstance(dim, int) and len(dim) == 0):
            self._set(node, self._tensor(x))
            return
        dims = [] if dim is None else [dim] if isinstance(dim, int) else list(dim)
        attrs = {"dims": sorted({self._axis(int(d), rank) for d in dims})}
        self._set(node, self._emit1("squeeze", [self._tensor(x)], attrs))

    def _unsqueeze(self, node: Any, a: dict[str, Any]) -> None:
        dim = self._axis(int(a["dim"]), self._rank(a["self"]) + 1)
        self._set(node, self._emit1("unsqueeze", [self._tensor(a["self"])], {"dim": dim}))

    def _select(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        dim = self._axis(int(a["dim"]), self._rank(x))
        index = self._int(a["index"])
        if isinstance(index, int):
            extent = x.meta["val"].shape[dim]
            if index < 0 and isinstance(extent, int):
                index += extent
            self._set(node, self._emit1("select", [self._tensor(x)], {"dim": dim, "index": index}))
            return
        # An index computed from sizes: take the one-wide slice and drop its dim.
        end = self._int_op("int_add", index, 1)
        part = self._emit1("slice", [self._tensor(x), index, end], {"dim": dim, "step": 1})
        self._set(node, self._emit1("squeeze", [part], {"dims": [dim]}))

    def _slice(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        dim = self._axis(int(a["dim"]), self._rank(x))
        start = 0 if a["start"] is None else self._int(a["start"])
        end = OPEN_END if a["end"] is None else self._int(a["end"])
        if isinstance(end, int):
            end = min(end, OPEN_END)
        step = self._static_int(a["step"], "the slice step")
        if start == 0 and end == OPEN_END and step == 1:
            self._set(node, self._tensor(x))
            return
        self._set(
            node, self._emit1("slice", [self._tensor(x), start, end], {"dim": dim, "step": step})
        )

    def _narrow(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        dim = self._axis(int(a["dim"]), self._rank(x))
        start, length = self._int(a["start"]), self._int(a["length"])
        if isinstance(start, int) and start < 0:
            start = self._int_op(
                "int_add", self._expr_operand(_expr(x.meta["val"].shape[dim])), start
            )
        end = self._int_op("int_add", start, length)
        self._set(
            node, self._emit1("slice", [self._tensor(x), start, end], {"dim": dim, "step": 1})
        )

    def _split(self, node: Any, a: dict[str, Any]) -> None:
        x = a["self"]
        name = str(node.target)
        dim = self._axis(int(a.get("dim", 0)), self._rank(x))
        count = len(node.meta["val"])
        operand = self._tensor(x)
        if name == "aten.unbind.int":
            self._set(
                node,
                tuple(
                    self._emit1("select", [operand], {"dim": dim, "index": i}) for i in range(count)
                ),
            )
            return
        if name == "aten.split_with_sizes.default":
            sizes = [self._static_int(s, "split sizes") for s in a["split_sizes"]]
            starts = [sum(sizes[:i]) for i in range(count)]
            ends: list[Operand] = [starts[i] + sizes[i] for i in range(count)]
            begins: list[Operand] = list(starts)
        else:
            if name == "aten.chunk.default":
                extent = self._expr_operand(_expr(x.meta["val"].shape[dim]))
                chunks = self._static_int(a["chunks"], "chunks")
                step: Operand = self._int_op(
                    "int_floordiv", self._int_op("int_add", extent, chunks - 1), chunks
                )
            else:
                step = self._int(a["split_size"])
            begins = [self._int_op("int_mul", step, i) for i in range(count)]
            ends = [*begins[1:], OPEN_END]
        parts = tuple(
            self._emit1("slice", [operand, begin, end], {"dim": dim, "step": 1})
            for begin, end in zip(begins, ends, strict=True)
        )
        self._set(node, parts)

    def _cat(self, op: str) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            tensors = list(a["tensors"])
            dtypes = {t.meta["val"].dtype for t in tensors}
            if len(dtypes) > 1:
                self._refuse(f"{_op_name(node.target)} mixes dtypes {sorted(map(str, dtypes))}")
            dim = self._axis(int(a["dim"]), self._rank(node))
            self._set(node, self._emit1(op, [self._tensor(t) for t in tensors], {"dim": dim}))

        return handler

    def _expand(self, node: Any, a: dict[str, Any]) -> None:
        if "other" in a:
            sizes = self._shape_operands(a["other"].meta["val"])
        else:
            sizes = [self._int(s) for s in a["size"]]
        self._set(node, self._emit1("expand", [self._tensor(a["self"]), *sizes], {}))

    def _alias(self, node: Any, a: dict[str, Any]) -> None:
        self._set(node, self._tensor(a["self"]))

    def _dropout(self, node: Any, a: dict[str, Any]) -> None:
        if a["train"] and a["p"] > 0:
            self._refuse(
                f"{_op_name(node.target)} with train=True drops values at random: "
                f"{_TRAINING_HINT}, and pass training=self.training to F.dropout"
            )
        self._set(node, self._tensor(a["input"]))

    def _cast(self, node: Any, a: dict[str, Any]) -> None:
        source, result = a["self"].meta["val"].dtype, node.meta["val"].dtype
        if source != result:
            self._refuse(
                f"{_op_name(node.target)} converts {source} to {result}: the graph has no type "
                "conversion"
            )
        if node.meta["val"].device.type != "cpu":
            self._refuse(f"{_op_name(node.target)} moves a tensor to {node.meta['val'].device}")
        self._set(node, self._tensor(a["self"]))

    def _full(self, node: Any, a: dict[str, Any]) -> None:
        name = str(node.target)
        value: Any = 0.0
        if ".ones" in name or "new_ones" in name:
            value = 1.0
        elif "full" in name:
            value = a["fill_value"]
        elif name == "aten.scalar_tensor.default":
            value = a["s"]
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, int | float):
            self._refuse(f"{name}: fill value {value!r:.40} is computed, not a number")
        dtype = self._out_dtype(node)
        dims = self._shape_operands(node.meta["val"])
        result = self._emit1("full", dims, {"value": float(value), "dtype": dtype})
        if value == 0:
            self.zeros.add(result)
        self._set(node, result)

    # sizes
    def _size(self, node: Any, a: dict[str, Any]) -> None:
        value = node.meta["val"]
        if isinstance(value, int):
            self._set(node, value)
            return
        dim = self._axis(int(a["dim"]), self._rank(a["self"]))
        self._set(node, self._emit1("size", [self._tensor(a["self"])], {"dim": dim}))

    def _int_arith(self, op: str) -> Callable[[Any, dict[str, Any]], None]:
        def handler(node: Any, a: dict[str, Any]) -> None:
            operands = [self._int(v) for v in node.args]
            if op == "neg":
                self._set(node, self._int_op("int_sub", 0, operands[0]))
            else:
                self._set(node, self._int_op(op, operands[0], operands[1]))

        return handler

    def _getitem(self, node: Any, a: dict[str, Any]) -> None:
        source, index = node.args
        outputs = self.env.get(source)
        if not isinstance(outputs, tuple):
            self._unsupported(
                f"indexing the result of {_op_name(getattr(source, 'target', source))}"
            )
        item = outputs[index]
        if item is None:
            self._refuse(
                f"the model uses output {index} of {_op_name(source.target)} (indices or "
                "statistics): only the values are supported"
            )
        self._set(node, item)

    # in-place ops
    def _check_inplace(self, node: Any, order: dict[Any, int]) -> None:
        """An in-place op is converted as its out-of-place form, which is exact when nothing
        reads the changed memory afterwards except through the op's own result: no later reader
        of the tensor it changed, nor of any view sharing that tensor's memory. A weight or
        buffer written in place is state, which a graph does not keep; an input written in
        place changes only the caller's tensor, which the graph leaves as it was."""
        if str(node.target) in _ALIASES:
            return
        root = node.args[0]
        while _is_inplace_node(root) or _is_alias_node(root):
            root = root.args[0]
        if root.op == "placeholder" and self.env.get(root) in self.constant_tensors:
            self._refuse(
                f"the model writes to {self.env.get(root, root.name)} in place "
                f"({_op_name(node.target)}): a converted graph keeps no state between calls; "
                "return the new value as an output instead"
            )
        members: set[Any] = set()
        stack = [root]
        while stack:
            member = stack.pop()
            if member in members:
                continue
            members.add(member)
            stack.extend(
                user
                for user in member.users
                if user is not node
                and (_is_alias_node(user) or (_is_inplace_node(user) and user.args[0] is member))
            )
        for member in members:
            for user in member.users:
                if user is not node and order[user] > order[node]:
                    self._refuse(
                        f"{_op_name(node.target)} modifies a tensor in place that the model "
                        "reads again afterwards (directly or through a view): write it out of "
                        "place"
                    )


# -- helpers ------------------------------------------------------------------------------------
def _needed(output: Any) -> set[Any]:
    """The fx nodes the outputs depend on."""
    seen: set[Any] = set()
    stack = list(output.all_input_nodes)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.all_input_nodes)
    return seen


def _bind(node: Any) -> dict[str, Any]:
    """A node's arguments by schema name, defaults filled in (every attribute written out)."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {}
    bound: dict[str, Any] = {}
    for position, argument in enumerate(schema.arguments):
        if position < len(node.args) and not argument.kwarg_only:
            bound[argument.name] = node.args[position]
        elif argument.name in node.kwargs:
            bound[argument.name] = node.kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
        else:
            bound[argument.name] = None
    return bound


def _is_inplace(target: Any) -> bool:
    schema = target._schema
    if not schema.is_mutable or not schema.arguments:
        return False
    alias = schema.arguments[0].alias_info
    return bool(alias is not None and alias.is_write)


def _is_inplace_node(node: Any) -> bool:
    return hasattr(node.target, "_schema") and _is_inplace(node.target)


def _is_alias_node(node: Any) -> bool:
    """Whether the node's result may share memory with its first operand."""
    if node.op != "call_function":
        return False
    if node.target is operator.getitem:
        return str(getattr(node.args[0], "target", "")) in _SPLITS
    return str(node.target) in _VIEWS and str(node.target) not in _COPIES


def _functional_name(target: Any) -> str | None:
    """ "aten.relu_.default" -> "aten.relu.default"."""
    namespace, name, overload = str(target).split(".", 2)
    if not name.endswith("_") or name.endswith("__"):
        return None
    return f"{namespace}.{name[:-1]}.{overload}"


def _op_name(target: Any) -> str:
    if callable(target) and getattr(target, "__module__", None) == "_operator":
        return f"operator.{target.__name__}"
    return str(target)


def _is_tensor_node(node: Any) -> bool:
    torch = _module("torch")

    return isinstance(node.meta.get("val"), torch.Tensor)


def _dtype_name(dtype: Any) -> str:
    torch = _module("torch")

    if dtype == torch.float32:
        return "float32"
    if dtype == torch.int64:
        return "int64"
    raise ConversionError(f"dtype {dtype}: graphs hold float32 and int64 tensors")


def _expr(size: Any) -> Any:
    sympy = _module("sympy")

    if isinstance(size, int):
        return sympy.Integer(size)
    return size.node.expr


def _dims(value: Any) -> list[int]:
    """A reduction's dims argument (None, an int or a list) as a list; empty means all."""
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(d) for d in value]


def _finite(bound: Any) -> int | None:
    """A range bound as an int, None when infinite."""
    return int(bound) if getattr(bound, "is_Integer", False) else None


def _one(value: Any) -> int:
    """torch passes 1-d conv and pool parameters as one-element lists."""
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ConversionError(f"expected one value for a 1-d parameter, got {value!r:.40}")
        value = value[0]
    return int(value)


def _user_line(stack_trace: str) -> str:
    """The innermost frame of the user's code in an fx stack trace, as "file.py:12"."""
    frames = re.findall(r'File "([^"]+)", line (\d+)', stack_trace)
    user = [(path, line) for path, line in frames if _is_user_file(path)]
    if not user:
        return ""
    path, line = user[-1]
    return f"{os.path.basename(path)}:{line}"


def _leaves(structure: Structure) -> list[str]:
    from .graph import structure_leaves

    return structure_leaves(structure)
