"""`pytest benchmarks`: the harness package (benchmarks/harness/) and goals.py are imported from
this folder, which is not an installed package."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
