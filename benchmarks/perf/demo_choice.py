"""How the demo's size was chosen: validation AUC and CPU time of candidate demo configurations.

Each candidate is `configs/pneumoniamnist_demo.yaml` with a few overrides (network width, epochs, batch size),
trained with `pipeline.engine.train` on the official train split and validated on the official validation split.
The test split is never read. The demo keeps the cheapest candidate (CPU seconds of training) whose best
validation AUC is within TOLERANCE of the former demo's (the first candidate).

    python benchmarks/perf/demo_choice.py [--threads 1] [--out benchmarks/results/perf/demo_choice_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
from _common import REPO, write_record

from pipeline.config import load_config
from pipeline.engine import train
from pipeline.logs import configure_logging

TOLERANCE = 0.002

#: (name, overrides); the first is the former demo
CANDIDATES = (
    ("former: 32/32/64/64, batch 64, 15 epochs", []),
    ("16/16/32/32, batch 64, 15 epochs", ["model.options.channels=[16,16,32,32]"]),
    ("16/16/32/32, batch 64, 10 epochs", ["model.options.channels=[16,16,32,32]", "training.max_epochs=10"]),
    ("16/16/32/32, batch 64, 8 epochs", ["model.options.channels=[16,16,32,32]", "training.max_epochs=8"]),
    ("32/32/64/64, batch 64, 8 epochs", ["training.max_epochs=8"]),
    ("32/32/64/64, batch 64, 10 epochs", ["training.max_epochs=10"]),
)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_candidate(name: str, overrides: list[str], root: Path) -> dict:
    config = load_config(REPO / "configs" / "pneumoniamnist_demo.yaml",
                         [*overrides, f"output.root={root}", "output.name=candidate", "training.progress_bar=false",
                          "evaluation.splits=[]"])
    cpu, wall = _cpu(), time.perf_counter()
    result = train(config, root / name.replace("/", "-").replace(" ", "_").replace(",", ""))
    history = [record["val_auc"] for record in result_history(result.run_dir)]
    return {"name": name, "overrides": overrides, "best_val_auc": result.best_val_auc, "best_epoch": result.best_epoch,
            "val_auc_per_epoch": history, "train_cpu_seconds": round(_cpu() - cpu, 1),
            "train_wall_seconds": round(time.perf_counter() - wall, 1)}


def result_history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU seconds compare best at 1)")
    parser.add_argument("--only", type=int, nargs="*", default=None, help="candidate indices to run")
    parser.add_argument("--merge", type=Path, nargs="*", default=None,
                        help="instead of training, combine the runs of earlier outputs (candidates run in parallel)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.merge:
        runs = [run for path in args.merge for run in json.loads(path.read_text(encoding="utf-8"))["runs"]]
        threads = {json.loads(path.read_text(encoding="utf-8"))["threads"] for path in args.merge}
        _write(runs, threads.pop() if len(threads) == 1 else sorted(threads), args.out)
        return
    configure_logging("quiet")
    torch.set_num_threads(args.threads)
    chosen = [CANDIDATES[i] for i in args.only] if args.only is not None else list(CANDIDATES)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for name, overrides in chosen:
            runs.append(run_candidate(name, overrides, Path(folder)))
            print(runs[-1], flush=True)
    _write(runs, args.threads, args.out)


def _write(runs: list[dict], threads: int | list[int], out: Path | None) -> None:
    former = next((run for run in runs if run["name"].startswith("former")), None)
    keep = None
    if former is not None:
        eligible = [run for run in runs if run["best_val_auc"] >= former["best_val_auc"] - TOLERANCE]
        keep = min(eligible, key=lambda run: run["train_cpu_seconds"])["name"]
    path = write_record("demo_choice", torch.device("cpu"),
                        {"rule": f"cheapest training (CPU s) with best validation AUC within {TOLERANCE} of the "
                                 "former demo's; the test split is not read", "threads": threads,
                         "runs": runs, "chosen": keep}, out)
    print(f"chosen: {keep}; written: {path}")


if __name__ == "__main__":
    main()
