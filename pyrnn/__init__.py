"""pyrnn: exact, fast CPU inference for PyTorch-compatible RNN, LSTM and GRU networks.

Importing pyrnn never imports torch or onnx; they are needed only to convert or compare.
"""

from __future__ import annotations

from ._base import IncompatibleKeys, Module
from .cells import GRUCell, LSTMCell, RNNCell
from .convert import from_torch
from .graph import ConversionError, GraphError
from .io import FormatError, load, save
from .isa import active_isa, available_isas, cpu_info, set_isa
from .model import Model
from .model_stream import ModelStream
from .modules import GRU, LSTM, RNN
from .onnx_import import from_onnx
from .packed import PackedSequence, pack_padded_sequence, pad_packed_sequence
from .quantize import quantize
from .stream import Stream
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"


def get_include() -> str:
    """The directory to add to a C, C++ or Cython extension's include path for pyrnn's C API
    (``#include <pyrnn/capi.h>``; Cython: ``from pyrnn cimport capi``)."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")


__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "ConversionError",
    "FormatError",
    "GRUCell",
    "GraphError",
    "IncompatibleKeys",
    "LSTMCell",
    "Model",
    "ModelStream",
    "Module",
    "PackedSequence",
    "RNNCell",
    "Stream",
    "active_isa",
    "available_isas",
    "cpu_info",
    "from_onnx",
    "from_torch",
    "get_include",
    "get_num_threads",
    "load",
    "pack_padded_sequence",
    "pad_packed_sequence",
    "quantize",
    "save",
    "set_isa",
    "set_num_threads",
]
