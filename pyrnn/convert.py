"""Converting torch.nn recurrent modules into pyrnn modules. torch is imported only here, and
only when from_torch is called."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._base import Module
from .cells import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN


def from_torch(module: Any) -> Module:
    """A pyrnn module with the configuration and weights of a torch.nn RNN, LSTM, GRU, RNNCell,
    LSTMCell or GRUCell. Raises TypeError naming the type for anything else."""
    import torch  # deferred: pyrnn never needs torch except to convert

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
            "module: expected torch.nn.RNN, LSTM, GRU, RNNCell, LSTMCell or GRUCell, "
            f"got {type(module).__module__}.{type(module).__qualname__}"
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
