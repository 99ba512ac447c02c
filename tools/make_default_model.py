"""Writes pyrnn/models/default.safetensors, the model `pyrnn bench` runs when given no --model.

A speech-style acoustic model: a 2-layer unidirectional LSTM over 40 log-mel filterbank features
(one frame per 10 ms) with 128 hidden units, the shape of small keyword-spotting and streaming
ASR front ends. Weights are PyTorch's default initialisation drawn from a fixed seed: the model
is for timing, not for recognising speech. Re-run after changing anything here and commit the
result; the file must never be edited by hand.

    python tools/make_default_model.py            # writes the bundled file
    python tools/make_default_model.py --check    # fails if the committed file differs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import pyrnn

SEED = 20240611
CONFIG = dict(input_size=40, hidden_size=128, num_layers=2)
TARGET = Path(__file__).resolve().parent.parent / "pyrnn" / "models" / "default.safetensors"


def build() -> pyrnn.LSTM:
    return pyrnn.LSTM(**CONFIG, seed=SEED)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as folder:
            fresh = Path(folder) / "default.safetensors"
            pyrnn.save(build(), fresh)
            # Compare contents, not bytes: safetensors may order the metadata differently.
            committed, expected = pyrnn.load(TARGET), pyrnn.load(fresh)
            same = committed.config == expected.config and all(
                np.array_equal(value, expected.state_dict()[key])
                for key, value in committed.state_dict().items()
            )
            if not same:
                print(f"{TARGET} differs from what this script writes; re-run it", file=sys.stderr)
                return 1
        print(f"{TARGET} is up to date")
        return 0
    pyrnn.save(build(), TARGET)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
