"""Shared command-line pieces of the perf scripts: device choice and the JSON record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as `python benchmarks/perf/SCRIPT.py` from a checkout
    sys.path.insert(0, str(REPO))

from throughput import environment  # noqa: E402

from pipeline.engine.history import json_safe  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "perf"


def pick_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.device(choice)


def write_record(benchmark: str, device: torch.device, measured: dict, out: Path | None) -> Path:
    """Write ``{"benchmark", "environment", **measured}`` as JSON, by default to RESULTS/<benchmark>_<device>.json."""
    path = out or RESULTS / f"{benchmark}_{device.type}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": benchmark, "environment": environment(device), **measured}
    path.write_text(json.dumps(json_safe(record), indent=1) + "\n", encoding="utf-8")
    return path
