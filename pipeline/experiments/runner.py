"""Run every (arm, seed) of a benchmark spec, saving each result as it finishes; finished runs are skipped."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.config import load_config
from pipeline.engine import RunDir, predict_split, train
from pipeline.engine.checkpoint import delete_checkpoints, write_run_file
from pipeline.engine.history import json_safe
from pipeline.errors import ConfigError
from pipeline.evaluation import classification_metrics
from pipeline.experiments.provenance import Provenance, require_clean
from pipeline.experiments.spec import (
    BenchmarkSpec,
    base_config_digest,
    cell_overrides,
    cells,
    describe_unsettled,
    is_stale,
    n_key,
    unsettled,
)
from pipeline.experiments.subsets import FULL, subset_overrides

__all__ = ["run_benchmark", "run_one", "record_spec", "result_path", "BenchmarkProgress"]

logger = logging.getLogger(__name__)

_HISTORY_KEYS = ("epoch", "train_classification", "train_variance", "train_accuracy", "val_loss", "val_accuracy",
                 "val_auc")


def result_path(spec: BenchmarkSpec, arm: str, seed: int, n: int | str = FULL) -> Path:
    """``<results>/<arm>/seed_<seed>.json`` for a full-data spec, ``<results>/<arm>/n_<n>/seed_<seed>.json`` for a
    spec with subset sizes."""
    if spec.n_train == [FULL]:
        return spec.results / arm / f"seed_{seed}.json"
    return spec.results / arm / f"n_{n_key(n)}" / f"seed_{seed}.json"


def recorded_state(spec: BenchmarkSpec, arm: str, seed: int, n: int | str = FULL) -> str:
    """``missing`` (no result, or one cut short by a crash while it was written), ``current`` (a result trained
    with what the spec now names) or ``stale`` (its recorded overrides or base config differ: the spec's settings
    for the cell, or its base config, changed after it ran, e.g. re-tuned)."""
    path = result_path(spec, arm, seed, n)
    if not path.is_file():
        return "missing"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        logger.warning("%s: not a complete result (cut short?): the cell runs again", path)
        return "missing"
    return "stale" if is_stale(spec, result) else "current"


def _state_reader(spec: BenchmarkSpec) -> Callable[[int | str, int, str], str]:
    """:func:`recorded_state` by (n, seed, arm), reading a result file again only when it changed (a benchmark
    asks about every cell after each run, and another process may write any of them)."""
    seen: dict[Path, tuple[int, str]] = {}

    def state(n: int | str, seed: int, arm: str) -> str:
        path = result_path(spec, arm, seed, n)
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            return "missing"
        if seen.get(path, (None,))[0] != stamp:
            seen[path] = (stamp, recorded_state(spec, arm, seed, n))
        return seen[path][1]

    return state


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


def record_spec(spec: BenchmarkSpec) -> Path:
    """Write the results folder's ``spec.json`` (:func:`spec_record`), which the report reads: every benchmark
    invocation does, and ``medvp benchmark SPEC --record-spec`` does only this, after a spec's description or
    conclusion was edited."""
    spec.results.mkdir(parents=True, exist_ok=True)
    path = spec.results / "spec.json"
    write_run_file(path, json.dumps(spec_record(spec), indent=1), after="no run started")
    return path


def _run_dir(spec: BenchmarkSpec, arm: str, seed: int, n: int | str) -> Path:
    """``<runs>/<spec>/<arm>/n_<n>/seed_<seed>``: where one cell trains (its checkpoints, curves and logs)."""
    return spec.runs / spec.name / arm / f"n_{n_key(n)}" / f"seed_{seed}"


def run_one(spec: BenchmarkSpec, arm: str, seed: int, n: int | str = FULL,
            provenance: Provenance | None = None, keep_checkpoints: bool = False) -> dict:
    """Train one (arm, n, seed), measure it, and write its result JSON. The test split is read only here, after
    training, with the checkpoint that the validation selection metric chose (and, for comparison, the last one).

    ``provenance`` (commit, dirty flag, CPU, threads, versions) is recorded as given; by default it is taken
    now, refusing uncommitted changes under pipeline/. Once the result is written the run's checkpoints are
    deleted (:func:`delete_checkpoints`; the result holds everything the report reads) unless
    ``keep_checkpoints``."""
    provenance = provenance or require_clean(allow_dirty=False)
    run_dir = _run_dir(spec, arm, seed, n)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an interrupted run starts over
    overrides = cell_overrides(spec, arm, seed, n)
    config = load_config(spec.base_config, overrides)
    data, subset = subset_overrides(config.data.path, n, seed, spec.runs / "subsets")
    if data:  # the subset's own file, in place of the dataset
        overrides += data
        config = load_config(spec.base_config, overrides)
    started = time.perf_counter()
    trained = train(config, run_dir)
    selected = {split: _split_metrics(run_dir, split, "best") for split in ("train", "val", "test")}
    run = RunDir(run_dir)
    summary, history = run.summary(), run.history()
    result = {
        "spec": spec.name, "arm": arm, "seed": seed, "n_train": n, "subset": subset,
        "overrides": [o for o in overrides if not o.startswith("data.path=")],
        "base_config_digest": base_config_digest(spec.base_config),
        "selection": f"checkpoint with the {config.training.selection_metric.description} (first reached)",
        "test": selected["test"], "val": selected["val"], "train": selected["train"],
        "test_last_epoch": _split_metrics(run_dir, "test", "last"),
        # the last epoch's generalization gap: overfitting shows here when the selected checkpoint stopped early
        "train_last_epoch": _split_metrics(run_dir, "train", "last"),
        "val_last_epoch": _split_metrics(run_dir, "val", "last"),
        "gaps": {
            "accuracy_train_minus_val": selected["train"]["accuracy"] - selected["val"]["accuracy"],
            "accuracy_train_minus_test": selected["train"]["accuracy"] - selected["test"]["accuracy"],
            "loss_train_minus_val": selected["train"]["nll"] - selected["val"]["nll"],
            "loss_train_minus_test": selected["train"]["nll"] - selected["test"]["nll"],
        },
        "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run,
        "train_seconds": trained.seconds, "wall_seconds": time.perf_counter() - started,
        "hardware": summary.hardware, **provenance,
        "history": [{key: record[key] for key in _HISTORY_KEYS} for record in history],
    }
    path = result_path(spec, arm, seed, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_run_file(path, json.dumps(json_safe(result), indent=1))  # atomic: a crash leaves no half-written result
    if not keep_checkpoints:
        delete_checkpoints(run_dir)
    return result


@contextmanager
def claimed(spec: BenchmarkSpec, arm: str, seed: int, n: int | str = FULL) -> Iterator[bool]:
    """Hold the cell's lock file (``<runs>/<spec>/<arm>/n_<n>/seed_<seed>.lock``) while the body runs; yields
    False, without waiting, when another process holds it. Two ``medvp benchmark`` processes on one spec (a second
    command by mistake, or parts given overlapping cells) would otherwise train one cell into the same run folder,
    each deleting the other's files. ``filelock`` (a PyTorch dependency) gives the operating system's lock, which
    ends with its process, so a killed run leaves no stale claim."""
    path = _run_dir(spec, arm, seed, n).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@dataclass
class BenchmarkProgress:
    done: int
    total: int
    seconds_per_run: float | None


def run_benchmark(spec: BenchmarkSpec, report=print, shard: tuple[int, int] = (1, 1),
                  time_limit_minutes: float | None = None, allow_dirty: bool = False,
                  arms: list[str] | None = None, sizes: list[str] | None = None,
                  seeds: list[int] | None = None, keep_checkpoints: bool = False) -> BenchmarkProgress:
    """Run the spec's missing (n, seed, arm) cells, smallest n first and seeds before arms so that a partial
    benchmark covers every arm; ``report`` receives one progress line per run.

    Args:
        shard: ``(k, n)``: run only every n-th cell starting at the k-th (1-based), so n processes (on one card
            or several machines sharing the results folder) split one benchmark without running a cell twice.
        time_limit_minutes: start no new run once this part has used the limit, or when the mean run time so
            far says the next run would overrun it; a later call carries on where this one stopped.
        arms, sizes, seeds: run only these arms / subset sizes / seeds (as named in the spec) this time; the rest
            stay to do (processes given disjoint seeds split a benchmark in the order the spec lists them).
        allow_dirty: record results from a checkout with uncommitted changes under pipeline/ (marked
            ``dirty: true``; the report flags them) instead of refusing.
        keep_checkpoints: keep each finished run's checkpoints (default: delete them once its result is written).
    """
    index, count = shard
    if not 1 <= index <= count:
        raise ConfigError(f"--shard {index}/{count}: expected K/N with 1 <= K <= N")
    provenance = require_clean(allow_dirty)
    record_spec(spec)
    todo = cells(spec)
    unknown = [*sorted(set(arms or []) - set(spec.arms)), *sorted(set(sizes or []) - {n_key(n) for n in spec.n_train}),
               *sorted(set(seeds or []) - set(spec.seeds))]
    if unknown:
        raise ConfigError(f"--arms/--n/--seeds {unknown}: not among {spec.name}'s arms {spec.arms}, n_train "
                          f"{spec.n_train} or seeds {spec.seeds}")
    chosen = [(n, seed, arm) for n, seed, arm in todo if (arms is None or arm in arms)
              and (sizes is None or n_key(n) in sizes) and (seeds is None or seed in seeds)]
    mine = chosen[index - 1::count]
    state = _state_reader(spec)
    finished = lambda n, seed, arm: state(n, seed, arm) == "current"  # noqa: E731
    done = sum(finished(*cell) for cell in todo)
    durations: list[float] = []
    started_part = time.perf_counter()
    if done:
        report(f"{done}/{len(todo)} runs already finished: skipped")
    stale = sum(state(*cell) == "stale" for cell in mine)
    if stale:
        report(f"{stale} result(s) were trained with settings the spec no longer names: they run again")
    if unsettled(spec):
        report("not run (tuned arms without settings at that n; `medvp tune` finds them for arm_settings_by_n): " +
               describe_unsettled(spec))
    for n, seed, arm in mine:
        if finished(n, seed, arm):
            continue
        if time_limit_minutes is not None and durations:
            used = time.perf_counter() - started_part
            if used + sum(durations) / len(durations) > time_limit_minutes * 60:
                report(f"time limit of {time_limit_minutes:g} min reached: {done}/{len(todo)} runs finished; "
                       "run the same command again to continue")
                break
        where = "" if spec.n_train == [FULL] else f" n={n_key(n)}"
        started = time.perf_counter()
        with claimed(spec, arm, seed, n) as mine_now:
            if not mine_now:
                report(f"{arm}{where} seed {seed}: being run by another process: skipped")
                continue
            if finished(n, seed, arm):  # another process finished it between the check and the claim
                continue
            result = run_one(spec, arm, seed, n, provenance, keep_checkpoints=keep_checkpoints)
        durations.append(time.perf_counter() - started)
        done = sum(finished(*cell) for cell in todo)
        remaining = sum(not finished(*cell) for cell in mine)
        eta = remaining * sum(durations) / len(durations) / 60
        report(f"[{done}/{len(todo)}] {arm}{where} seed {seed}: test accuracy {result['test']['accuracy']:.4f}, "
               f"AUC {result['test']['auc']:.4f} ({durations[-1]:.0f} s; ETA {eta:.1f} min)")
    return BenchmarkProgress(done, len(todo), sum(durations) / len(durations) if durations else None)
