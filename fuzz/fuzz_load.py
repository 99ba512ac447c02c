"""Fuzzes pyrnn.load: bytes -> a temporary file -> load, as a pyrnn file and as a plain state_dict
of some kind. Only FormatError (a ValueError), ValueError and TypeError may come out; anything
else (IndexError, KeyError, MemoryError, OverflowError, a crash) is a bug.

    python fuzz/fuzz_load.py [libFuzzer args] [corpus dirs]     # see tools/run_fuzzers.sh

check_one() is also imported by tests/test_fuzz_crashers.py to replay saved crashers."""

from __future__ import annotations

import os
import sys
import tempfile

KINDS = (None, "rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell", None)
# Inputs ending in this byte are also tried as .pt (torch.load is slow: keep it rare).
PT_MARKER = 0x7F
ALLOWED = (ValueError, TypeError)  # FormatError is a ValueError

_directory = tempfile.mkdtemp(prefix="pyrnn-fuzz-load-")


def check_one(data: bytes) -> None:
    import pyrnn

    selector = data[-1] if data else 0
    kind = KINDS[selector % len(KINDS)]
    suffixes = [".safetensors"] + ([".pt"] if selector == PT_MARKER else [])
    for suffix in suffixes:
        path = os.path.join(_directory, "input" + suffix)
        with open(path, "wb") as file:
            file.write(data)
        try:
            module = pyrnn.load(path, kind=kind, prefix="")
        except ALLOWED:
            continue
        # It loaded: it must then be a working module (a forward on zeros runs).
        _smoke(module)


def _smoke(module: object) -> None:
    import numpy as np

    import pyrnn

    assert isinstance(module, pyrnn.Module)
    config = module.config
    if config["input_size"] * config["hidden_size"] > 10**6:
        return
    x = np.zeros((2, config["input_size"]), np.float32)
    if config["kind"].endswith("_cell"):
        x = x[0]
    module(x)


def main() -> None:
    import atheris
    import numpy  # noqa: F401  (imported first: not worth instrumenting)

    with atheris.instrument_imports(include=["pyrnn"]):
        import pyrnn  # noqa: F401
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
