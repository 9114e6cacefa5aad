"""Evaluate a finished run on a split: MONAI SupervisedEvaluator inference, then metrics with intervals."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from ignite.engine import Events
from monai.engines import SupervisedEvaluator
from monai.utils import CommonKeys as Keys

from pipeline.config import Config, parse_config
from pipeline.data import DatasetInfo
from pipeline.engine.checkpoint import BEST_CHECKPOINT, CHECKPOINT_DIR, load_checkpoint
from pipeline.engine.components import autocast_dtype, make_network, prepare_data, select_device
from pipeline.engine.history import json_safe
from pipeline.engine.outputs import probabilities
from pipeline.errors import ConfigError, DataError
from pipeline.evaluation import metrics_with_intervals, write_evaluation_figures

__all__ = ["load_run_config", "load_run_summary", "checkpoint_path", "load_weights", "predict_split", "evaluate_run"]

logger = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> Config:
    """The resolved configuration a run was trained with."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a medvp run directory (no config.yaml)")
    return parse_config(yaml.safe_load(path.read_text(encoding="utf-8")), str(path), run_dir)


def load_run_summary(run_dir: Path) -> tuple[dict, DatasetInfo]:
    """A finished run's ``train_summary.json`` and the dataset description it records (task, classes, shape)."""
    path = run_dir / "train_summary.json"
    if not path.is_file():
        raise DataError(f"{run_dir}: no train_summary.json; did training finish?")
    summary = json.loads(path.read_text(encoding="utf-8"))
    info = DatasetInfo(task=summary["task"], class_names=list(summary["class_names"]),
                       in_channels=summary["in_channels"], spatial_dims=summary["spatial_dims"],
                       spatial_shape=tuple(summary["input_shape"][1:]))
    return summary, info


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``best``: the highest validation AUC; ``last``: the latest epoch checkpoint."""
    directory = run_dir / CHECKPOINT_DIR
    if which == "best":
        path = directory / BEST_CHECKPOINT
    else:
        epochs = sorted(directory.glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
        path = epochs[-1] if epochs else directory / "checkpoint_epoch=?.pt"
    if not path.is_file():
        raise DataError(f"{run_dir}: no {which} checkpoint ({path.name}); did training finish an epoch?")
    return path


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load a checkpoint (a plain state dict, or an epoch checkpoint's ``network``) safely (no pickled code)."""
    state = load_checkpoint(path)
    if "network" in state and isinstance(state["network"], dict):
        state = state["network"]
    network.load_state_dict(state)


def predict_split(config: Config, run_dir: Path, split: str, which: str = "best") -> tuple[np.ndarray, np.ndarray, str,
                                                                                              list[str]]:
    """Probabilities and labels of every item of ``split``, in dataset order.

    Returns:
        (probabilities, labels, task, class names); binary probabilities are the positive class's, shape (N,).
    """
    device = select_device(config)
    data = prepare_data(config, splits=(split,), cache_dir=run_dir / "cache", device=device)
    info = data.info
    loader = data.loaders[split]
    network = make_network(config, info, tuple(loader.dataset[0]["image"].shape))
    load_weights(network, checkpoint_path(run_dir, which))
    network.to(device)
    amp_dtype = autocast_dtype(config, device)
    evaluator = SupervisedEvaluator(device=device, val_data_loader=loader, network=network,
                                    amp=amp_dtype is not None, amp_kwargs={"dtype": amp_dtype} if amp_dtype else None,
                                    decollate=False)
    collected: dict[str, list[torch.Tensor]] = {"probabilities": [], "labels": []}

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _collect(engine: SupervisedEvaluator) -> None:
        collected["probabilities"].append(probabilities(engine.state.output[Keys.PRED], info.task).cpu())
        collected["labels"].append(engine.state.output[Keys.LABEL].cpu())

    evaluator.run()
    probs = torch.cat(collected["probabilities"]).numpy()
    labels = torch.cat(collected["labels"]).numpy()
    if info.task == "binary":
        probs, labels = probs.reshape(-1), labels.reshape(-1)
    return probs, labels.astype(np.int64), info.task, info.class_names


def evaluate_run(run_dir: Path, split: str = "test", which: str | None = None) -> dict:
    """Write ``metrics_<split>.json``, ``predictions_<split>.csv`` and the split's figures (``roc_<split>.png``,
    ``calibration_<split>.png``, ``confusion_<split>.png``) into ``run_dir``.

    Returns:
        the report as written to ``metrics_<split>.json``, plus ``files`` (the paths written) and ``seconds``
        (``inference``, ``bootstrap``, ``figures``: where the time went).
    """
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split {split!r}: expected train, val or test")
    which = which or config.evaluation.checkpoint
    started = time.perf_counter()
    probs, labels, task, class_names = predict_split(config, run_dir, split, which)
    predicted = time.perf_counter()
    metrics = metrics_with_intervals(probs, labels, task, len(class_names),
                                     bootstrap_samples=config.evaluation.bootstrap_samples,
                                     confidence=config.evaluation.confidence, seed=config.training.seed)
    bootstrapped = time.perf_counter()
    report = {"split": split, "checkpoint": which, "items": int(len(labels)), "task": task,
              "class_names": class_names, "confidence": config.evaluation.confidence,
              "bootstrap_samples": config.evaluation.bootstrap_samples, "metrics": metrics}
    files = [run_dir / f"metrics_{split}.json", run_dir / f"predictions_{split}.csv"]
    files[0].write_text(json.dumps(json_safe(report), indent=1), encoding="utf-8")
    _write_predictions(files[1], probs, labels, task, class_names)
    figures_started = time.perf_counter()
    files += write_evaluation_figures(run_dir, split, probs, labels, task, class_names,
                                      f"{run_dir.name}, {split} ({len(labels)} items, {which} checkpoint)")
    logger.debug("%s %s: accuracy %.4f, AUC %.4f (%d items)", run_dir.name, split, metrics["accuracy"]["value"],
                 metrics["auc"]["value"], len(labels))
    seconds = {"inference": predicted - started, "bootstrap": bootstrapped - predicted,
               "figures": time.perf_counter() - figures_started}
    return {**report, "files": files, "seconds": seconds}


def _write_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, task: str, class_names: list[str]) -> None:
    table = np.stack([1 - probs, probs], axis=1) if task == "binary" else probs
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        label_columns = ["label"] if labels.ndim == 1 else [f"label_{name}" for name in class_names]
        writer.writerow(["index", *label_columns, *[f"probability_{name}" for name in class_names]])
        for index, (label, row) in enumerate(zip(labels, table, strict=True)):
            label_values = [int(label)] if labels.ndim == 1 else [int(v) for v in label]
            writer.writerow([index, *label_values, *[f"{value:.6f}" for value in row]])
