"""Converting torch modules: the six torch.nn recurrent types into pyrnn modules, anything else
into a pyrnn.Model (a captured graph). torch is imported only when from_torch is called."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Module
from .cells import GRUCell, LSTMCell, RNNCell
from .model import Model
from .modules import GRU, LSTM, RNN


def from_torch(module: Any, *example_inputs: Any) -> Module | Model:
    """Converts a torch module with its weights.

    A torch.nn RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell becomes the pyrnn module of the same
    type (no example needed). Any other nn.Module is captured as a graph from one call on
    ``example_inputs`` (tensors as its forward takes them) and becomes a pyrnn.Model; every
    input dimension the module does not fix stays free, so examples should have batch >= 2 and
    steps >= 2. Anything the capture cannot express faithfully raises pyrnn.ConversionError
    naming the op, the module and the source line."""
    import torch  # deferred: pyrnn never needs torch except to convert

    nn = torch.nn
    recurrent = (nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell)
    if isinstance(module, nn.Module) and not isinstance(module, recurrent):
        if not example_inputs:
            raise TypeError(
                f"example_inputs: converting a {type(module).__qualname__} captures one call of "
                "its forward; pass example tensors, e.g. from_torch(model, torch.randn(4, 100, 40))"
            )
        from .capture_torch import capture

        graph, constants = capture(module, example_inputs)
        return Model(graph, constants)
    return _recurrent_module(module)


def _recurrent_module(module: Any) -> Module:
    import torch

    nn = torch.nn
    converted: Module
    if isinstance(module, nn.RNN | nn.LSTM | nn.GRU):
        common: dict[str, Any] = {
            "input_size": module.input_size,
            "hidden_size": module.hidden_size,
            "num_layers": module.num_layers,
            "bias": module.bias,
            "batch_first": module.batch_first,
            "dropout": float(module.dropout),
            "bidirectional": module.bidirectional,
        }
        if isinstance(module, nn.LSTM):
            converted = LSTM(**common, proj_size=module.proj_size)
        elif isinstance(module, nn.GRU):
            converted = GRU(**common)
        else:
            converted = RNN(**common, nonlinearity=module.nonlinearity)
    elif isinstance(module, nn.RNNCell):
        converted = RNNCell(module.input_size, module.hidden_size, module.bias, module.nonlinearity)
    elif isinstance(module, nn.LSTMCell):
        converted = LSTMCell(module.input_size, module.hidden_size, module.bias)
    elif isinstance(module, nn.GRUCell):
        converted = GRUCell(module.input_size, module.hidden_size, module.bias)
    else:
        raise TypeError(
            "module: expected a torch.nn.Module, got "
            f"{type(module).__module__}.{type(module).__qualname__}"
        )
    on_meta = [key for key, value in module.state_dict().items() if value.is_meta]
    if on_meta:
        raise ValueError(
            f"module: expected weights with data, got {len(on_meta)} on the meta device, which "
            f"have none ({', '.join(on_meta[:3])}{', ...' if len(on_meta) > 3 else ''}); "
            "materialise them first (e.g. module.to_empty(device='cpu'), then load the weights)"
        )
    with torch.no_grad():
        weights = {
            key: value.detach().to("cpu", torch.float32).numpy().astype(np.float32, copy=True)
            for key, value in module.state_dict().items()
        }
    converted.load_state_dict(weights, strict=True)
    return converted
