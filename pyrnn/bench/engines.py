"""The engines timed on a sequence workload: pyrnn, PyTorch and ONNX Runtime, each with one
thread and with its default thread count. An engine prepares a Runner for a module and an input;
a missing library raises Unavailable, which the report shows instead of crashing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._base import Module
from ..threads import get_num_threads, set_num_threads


class Unavailable(Exception):
    """This engine cannot run here (library missing, or it cannot express the model)."""


@dataclass
class Runner:
    """run() computes the whole output; it is timed only inside context() (threads set)."""

    run: Callable[[], np.ndarray]
    context: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    threads: str = "1"


@dataclass(frozen=True)
class Engine:
    name: str  # as shown in the table, e.g. "torch-1t"
    library: str  # "pyrnn", "torch" or "onnxruntime"
    prepare: Callable[[Module, np.ndarray], Runner] = field(repr=False)


# -- pyrnn ----------------------------------------------------------------------------------
_pyrnn_default_threads: int | None = None


def pyrnn_threads(
    threads: int | None,
) -> tuple[Callable[[], contextlib.AbstractContextManager[Any]], str]:
    """A context running pyrnn with `threads` threads (None: its default, the count it started
    with in this process), and that count as the table shows it."""
    global _pyrnn_default_threads
    if _pyrnn_default_threads is None:  # before any engine changes it
        _pyrnn_default_threads = get_num_threads()
    count = threads if threads is not None else _pyrnn_default_threads

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        previous = get_num_threads()
        set_num_threads(count)
        try:
            yield
        finally:
            set_num_threads(previous)

    return context, str(count)


def _pyrnn_engine(threads: int | None) -> Callable[[Module, np.ndarray], Runner]:
    def prepare(module: Module, x: np.ndarray) -> Runner:
        context, count = pyrnn_threads(threads)
        return Runner(run=lambda: module(x)[0], context=context, threads=count)

    return prepare


# -- PyTorch ----------------------------------------------------------------------------------
_torch_default_threads: int | None = None


def import_torch() -> Any:
    """The torch module (its default thread count recorded first); Unavailable if missing."""
    global _torch_default_threads
    try:
        import torch
    except ImportError as error:
        raise Unavailable(f"torch is not installed ({error})") from None
    if _torch_default_threads is None:  # before any engine changes it
        _torch_default_threads = torch.get_num_threads()
    return torch


def float32_weights(module: Module, peer: str) -> None:
    """Raises Unavailable when `module` stores reduced-precision weights (pyrnn.quantize): a
    peer given the same module needs them as float32."""
    if module.weight_dtype != "fp32":
        raise Unavailable(
            f"{peer} runs float32 weights; this model stores {module.weight_dtype} weights "
            "(pyrnn.quantize): compare the float32 model it was made from"
        )


def torch_module(module: Module) -> Any:
    """The torch.nn RNN/LSTM/GRU with `module`'s configuration and weights, in eval mode."""
    torch = import_torch()
    float32_weights(module, "torch")
    config = dict(module.config)
    kind = config.pop("kind")
    classes = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    if kind not in classes:
        raise Unavailable(f"no torch sequence module for kind {kind!r}")
    network = classes[kind](**config)
    network.load_state_dict({k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return network.eval()


def _torch_engine(threads: int | None) -> Callable[[Module, np.ndarray], Runner]:
    def prepare(module: Module, x: np.ndarray) -> Runner:
        torch = import_torch()
        network = torch_module(module)
        tensor = torch.from_numpy(x)
        count = threads if threads is not None else _torch_default_threads
        assert count is not None

        @contextlib.contextmanager
        def context() -> Iterator[None]:
            previous = torch.get_num_threads()
            torch.set_num_threads(count)
            try:
                with torch.inference_mode():
                    yield
            finally:
                torch.set_num_threads(previous)

        def run() -> np.ndarray:
            with torch.inference_mode():  # cheap when already inside; makes run() safe alone
                output: np.ndarray = network(tensor)[0].numpy()
                return output

        return Runner(run=run, context=context, threads=str(count))

    return prepare


# -- ONNX Runtime -----------------------------------------------------------------------------
def _ort_engine(threads: int | None) -> Callable[[Module, np.ndarray], Runner]:
    def prepare(module: Module, x: np.ndarray) -> Runner:
        try:
            import onnxruntime as ort
        except ImportError as error:
            raise Unavailable(f"onnxruntime is not installed ({error})") from None
        try:
            from ..onnx_export import to_onnx

            model = to_onnx(module, initial_state=False)
        except ImportError as error:
            raise Unavailable(f"onnx is not installed ({error})") from None
        except ValueError as error:
            raise Unavailable(str(error)) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads if threads is not None else 0  # 0 = ORT's default
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        return Runner(
            run=lambda: session.run(["output"], {"input": x})[0],
            threads=str(threads) if threads is not None else "default",
        )

    return prepare


def sequence_engines() -> list[Engine]:
    """pyrnn at its default thread count first (the ratios are against it) and with 1 thread,
    then each peer with 1 thread and its default."""
    return [
        Engine("pyrnn", "pyrnn", _pyrnn_engine(None)),
        Engine("pyrnn-1t", "pyrnn", _pyrnn_engine(1)),
        Engine("torch-1t", "torch", _torch_engine(1)),
        Engine("torch", "torch", _torch_engine(None)),
        Engine("ort-1t", "onnxruntime", _ort_engine(1)),
        Engine("ort", "onnxruntime", _ort_engine(None)),
    ]
