"""The comparison script: pyrnn vs PyTorch vs ONNX Runtime on every workload, in one run.
Same as `pyrnn bench --compare`; any `pyrnn bench` option may follow, e.g.

    python benchmarks/compare.py --json results.json --png results.png
"""

from __future__ import annotations

import sys

from pyrnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--compare", *sys.argv[1:]]))
