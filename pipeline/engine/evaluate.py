"""Evaluate a finished run on a split: MONAI SupervisedEvaluator inference, then metrics with intervals."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator
from monai.utils import CommonKeys as Keys

from pipeline.config import Config
from pipeline.engine.builders import make_network
from pipeline.engine.checkpoint import write_run_file
from pipeline.engine.data_setup import prepare_data
from pipeline.engine.device import autocast_dtype, select_device
from pipeline.engine.history import json_safe
from pipeline.engine.outputs import probabilities
from pipeline.engine.rundir import RunDir
from pipeline.errors import ConfigError
from pipeline.evaluation import metrics_with_intervals
from pipeline.kinds import SPLITS, Split, Task

__all__ = ["load_run_config", "predict_split", "evaluate_run"]

logger = logging.getLogger(__name__)


def load_run_config(run_dir: Path) -> Config:
    """The resolved configuration a run was trained with (see :meth:`RunDir.config`)."""
    return RunDir(run_dir).config()


def predict_split(config: Config, run_dir: Path, split: str, which: str = "best") -> tuple[np.ndarray, np.ndarray, str,
                                                                                              list[str]]:
    """Probabilities and labels of every item of ``split``, in dataset order.

    Returns:
        (probabilities, labels, task, class names); binary probabilities are the positive class's, shape (N,).
    """
    run = RunDir(run_dir)
    device = select_device(config)
    data = prepare_data(config, splits=(split,), cache_dir=run.cache_dir, device=device)
    info = data.info
    loader = data.loaders[split]
    network = make_network(config, info, tuple(loader.dataset[0]["image"].shape))
    run.load_weights(network, which)
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
    if info.task == Task.BINARY:
        probs, labels = probs.reshape(-1), labels.reshape(-1)
    return probs, labels.astype(np.int64), info.task, info.class_names


def evaluate_run(run_dir: Path, split: str = Split.TEST, which: str | None = None) -> dict:
    """Write ``metrics_<split>.json`` and ``predictions_<split>.csv`` into ``run_dir`` and return the metrics."""
    run = RunDir(run_dir)
    config = run.config()
    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: expected {', '.join(SPLITS)}")
    which = which or config.evaluation.checkpoint
    probs, labels, task, class_names = predict_split(config, run.path, split, which)
    metrics = metrics_with_intervals(probs, labels, task, len(class_names),
                                     bootstrap_samples=config.evaluation.bootstrap_samples,
                                     confidence=config.evaluation.confidence, seed=config.training.seed)
    report = {"split": split, "checkpoint": which, "items": int(len(labels)), "task": task,
              "class_names": class_names, "confidence": config.evaluation.confidence,
              "bootstrap_samples": config.evaluation.bootstrap_samples, "metrics": metrics}
    write_run_file(run.metrics_file(split), json.dumps(json_safe(report), indent=1))
    _write_predictions(run.predictions_file(split), probs, labels, task, class_names)
    logger.info("%s %s: accuracy %.4f, AUC %.4f (%d items)", run.path.name, split, metrics["accuracy"]["value"],
                metrics["auc"]["value"], len(labels))
    return report


def _write_predictions(path: Path, probs: np.ndarray, labels: np.ndarray, task: str, class_names: list[str]) -> None:
    table = np.stack([1 - probs, probs], axis=1) if task == Task.BINARY else probs
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        label_columns = ["label"] if labels.ndim == 1 else [f"label_{name}" for name in class_names]
        writer.writerow(["index", *label_columns, *[f"probability_{name}" for name in class_names]])
        for index, (label, row) in enumerate(zip(labels, table, strict=True)):
            label_values = [int(label)] if labels.ndim == 1 else [int(v) for v in label]
            writer.writerow([index, *label_values, *[f"{value:.6f}" for value in row]])
