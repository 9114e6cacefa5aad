"""Run every (arm, seed) of a benchmark spec, saving each result as it finishes; finished runs are skipped."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import load_config
from pipeline.engine import RunDir, predict_split, train
from pipeline.engine.history import json_safe
from pipeline.errors import ConfigError
from pipeline.evaluation import classification_metrics
from pipeline.experiments.spec import BenchmarkSpec, arm_overrides

__all__ = ["run_benchmark", "run_one", "result_path", "BenchmarkProgress"]

logger = logging.getLogger(__name__)

_HISTORY_KEYS = ("epoch", "train_classification", "train_variance", "train_accuracy", "val_loss", "val_accuracy",
                 "val_auc")


def _code_commit() -> str | None:
    """The git commit of the code that ran (None outside a git checkout), so results name what produced them."""
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                               text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() or None


def result_path(spec: BenchmarkSpec, arm: str, seed: int) -> Path:
    return spec.results / arm / f"seed_{seed}.json"


def _split_metrics(run_dir: Path, split: str, which: str) -> dict:
    config = RunDir(run_dir).config()
    probabilities, labels, task, class_names = predict_split(config, run_dir, split, which)
    metrics = classification_metrics(probabilities, labels, task, len(class_names))
    metrics.pop("confusion_matrix", None)
    return metrics


def spec_record(spec: BenchmarkSpec) -> dict:
    """The spec as the results folder keeps it (``spec.json``, read by the report); paths under the working
    directory are written relative to it, so committed results carry no machine's absolute paths."""
    record = spec.model_dump(mode="json")
    for key in ("base_config", "results", "runs"):
        path = Path(record[key])
        if path.is_relative_to(Path.cwd()):
            record[key] = path.relative_to(Path.cwd()).as_posix()
    return record


def run_one(spec: BenchmarkSpec, arm: str, seed: int) -> dict:
    """Train one (arm, seed), measure it, and write its result JSON. The test split is read only here, after
    training, with the checkpoint that validation AUC chose (and, for comparison, the last one)."""
    run_dir = spec.runs / spec.name / arm / f"seed_{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run starts over
    overrides = [*arm_overrides(spec, arm), f"training.seed={seed}", "evaluation.splits=[]",
                 "training.progress_bar=false"]
    config = load_config(spec.base_config, overrides)
    started = time.perf_counter()
    trained = train(config, run_dir)
    selected = {split: _split_metrics(run_dir, split, "best") for split in ("train", "val", "test")}
    run = RunDir(run_dir)
    summary, history = run.summary(), run.history()
    result = {
        "spec": spec.name, "arm": arm, "seed": seed, "overrides": overrides,
        "selection": "checkpoint with the highest validation AUC (first reached)",
        "test": selected["test"], "val": selected["val"], "train": selected["train"],
        "test_last_epoch": _split_metrics(run_dir, "test", "last"),
        "gaps": {
            "accuracy_train_minus_val": selected["train"]["accuracy"] - selected["val"]["accuracy"],
            "accuracy_train_minus_test": selected["train"]["accuracy"] - selected["test"]["accuracy"],
            "loss_train_minus_val": selected["train"]["nll"] - selected["val"]["nll"],
            "loss_train_minus_test": selected["train"]["nll"] - selected["test"]["nll"],
        },
        "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run,
        "train_seconds": trained.seconds, "wall_seconds": time.perf_counter() - started,
        "hardware": summary.hardware, "versions": summary.versions, "commit": _code_commit(),
        "history": [{key: record[key] for key in _HISTORY_KEYS} for record in history],
    }
    path = result_path(spec, arm, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(result), indent=1), encoding="utf-8")
    return result


@dataclass
class BenchmarkProgress:
    done: int
    total: int
    seconds_per_run: float | None


def run_benchmark(spec: BenchmarkSpec, report=print, shard: tuple[int, int] = (1, 1),
                  time_limit_minutes: float | None = None) -> BenchmarkProgress:
    """Run the spec's missing (arm, seed) pairs, seeds in the outer loop so that a partial benchmark covers
    every arm; ``report`` receives one progress line per run.

    Args:
        shard: ``(k, n)``: run only every n-th pair starting at the k-th (1-based), so n processes (on one card
            or several machines sharing the results folder) split one benchmark without running a pair twice.
        time_limit_minutes: start no new run once this part has used the limit, or when the mean run time so
            far says the next run would overrun it; a later call carries on where this one stopped.
    """
    index, count = shard
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {index}/{count}: expected K/N with 1 <= K <= N")
    spec.results.mkdir(parents=True, exist_ok=True)
    (spec.results / "spec.json").write_text(json.dumps(spec_record(spec), indent=1), encoding="utf-8")
    pairs = [(arm, seed) for seed in spec.seeds for arm in spec.arms]
    mine = pairs[index - 1::count]
    done = sum(result_path(spec, arm, seed).is_file() for arm, seed in pairs)
    durations: list[float] = []
    started_part = time.perf_counter()
    if done:
        report(f"{done}/{len(pairs)} runs already finished: skipped")
    for arm, seed in mine:
        if result_path(spec, arm, seed).is_file():
            continue
        if time_limit_minutes is not None and durations:
            used = time.perf_counter() - started_part
            if used + sum(durations) / len(durations) > time_limit_minutes * 60:
                report(f"time limit of {time_limit_minutes:g} min reached: {done}/{len(pairs)} runs finished; "
                       "run the same command again to continue")
                break
        started = time.perf_counter()
        result = run_one(spec, arm, seed)
        durations.append(time.perf_counter() - started)
        done = sum(result_path(spec, a, s).is_file() for a, s in pairs)
        remaining = sum(not result_path(spec, a, s).is_file() for a, s in mine)
        eta = remaining * sum(durations) / len(durations) / 60
        report(f"[{done}/{len(pairs)}] {arm} seed {seed}: test accuracy {result['test']['accuracy']:.4f}, "
               f"AUC {result['test']['auc']:.4f} ({durations[-1]:.0f} s; ETA {eta:.1f} min)")
    return BenchmarkProgress(done, len(pairs), sum(durations) / len(durations) if durations else None)
