"""The perf harness lives beside its scripts in benchmarks/perf (not in the package): make it importable here."""

import sys
from pathlib import Path

PERF = Path(__file__).resolve().parents[2] / "benchmarks" / "perf"
if str(PERF) not in sys.path:
    sys.path.insert(0, str(PERF))
