"""Batched prediction with MONAI's SupervisedEvaluator, and the predictions table."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from ignite.handlers import ProgressBar
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureTyped
from monai.utils import CommonKeys as Keys

from pipeline.engine.outputs import probabilities
from pipeline.errors import DataError
from pipeline.inference.inputs import InputItem
from pipeline.inference.model import LoadedModel
from pipeline.kinds import Task

__all__ = ["Predictions", "usable_items", "prediction_dataset", "predict", "class_table", "write_predictions"]

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """Items in input order and their class probabilities ``(N, K)`` (binary: both classes)."""

    items: list[InputItem]
    probabilities: np.ndarray
    class_names: list[str]
    task: str

    def predicted(self) -> list[str]:
        """The predicted class of each item (multi-label: every class at or above 0.5, joined by ``;``)."""
        if self.task == Task.MULTILABEL:
            return [";".join(name for name, p in zip(self.class_names, row, strict=True) if p >= 0.5)
                    for row in self.probabilities]
        return [self.class_names[index] for index in self.probabilities.argmax(axis=1)]


def _preprocessed_size(model: LoadedModel, item: InputItem) -> tuple[int, ...]:
    """The spatial size an item has after the model's preprocessing (orientation and spacing change it)."""
    image = item.image.clone() if hasattr(item.image, "clone") else item.image
    return tuple(int(size) for size in model.preprocessing({"image": image, "label": np.float32(0)})["image"].shape[1:])


def usable_items(model: LoadedModel, items: Sequence[InputItem]) -> list[InputItem]:
    """The items whose shape the model takes; the others are skipped with a logged reason.

    Raises:
        DataError: when no item is left.
    """
    channels, spatial = model.input_shape[0], tuple(model.input_shape[1:])
    kept = []
    for item in items:
        shape = tuple(item.image.shape)
        if model.reads_files:
            if item.path is None:
                logger.warning("skipped %s: a foreign bundle's preprocessing reads image files, not arrays", item.name)
            else:
                kept.append(item)
        elif shape[0] != channels or len(shape) - 1 != len(spatial):
            logger.warning("skipped %s: image of shape %s (channel first), the model takes %d channel(s) of %dD "
                           "images", item.name, list(shape), channels, len(spatial))
        elif not model.resizes and _preprocessed_size(model, item) != spatial:
            logger.warning("skipped %s: image of size %s after preprocessing, the model was trained on %s "
                           "(without resizing)", item.name, list(_preprocessed_size(model, item)), list(spatial))
        else:
            kept.append(item)
    if not kept:
        raise DataError("no input image fits the model (see the warnings above)")
    return kept


def prediction_dataset(model: LoadedModel, items: Sequence[InputItem], keep_meta: bool = False) -> Dataset:
    """A MONAI dataset of the items, preprocessed as in training.

    medvp's preprocessing is training's item path, which also types a ``label``; a placeholder 0 fills it.
    ``keep_meta``: images stay MetaTensors with their affine after preprocessing (for display); otherwise plain
    tensors, as in training.
    """
    if model.reads_files:
        data = [{"image": str(item.path)} for item in items]
    else:
        data = [{"image": item.image.clone() if hasattr(item.image, "clone") else item.image,
                 "label": np.float32(0)} for item in items]
    transform = model.preprocessing if keep_meta or model.reads_files else Compose(
        [model.preprocessing, EnsureTyped(keys=("image", "label"), track_meta=False, allow_missing_keys=True)])
    return Dataset(data, transform=transform)


def predict(model: LoadedModel, items: Sequence[InputItem], batch_size: int = 64, progress: bool = False,
            device: torch.device | None = None) -> Predictions:
    """Class probabilities of ``items`` (as returned by :func:`usable_items`), batched, in input order."""
    device = device or torch.device("cpu")
    loader = DataLoader(prediction_dataset(model, items), batch_size=batch_size, shuffle=False, num_workers=0)
    network = model.network.to(device)
    evaluator = SupervisedEvaluator(device=device, val_data_loader=loader, network=network, decollate=False)
    collected: list[torch.Tensor] = []

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _collect(engine: SupervisedEvaluator) -> None:
        collected.append(probabilities(engine.state.output[Keys.PRED], model.task).cpu())

    if progress:
        ProgressBar(persist=False, desc="predict").attach(evaluator)
    evaluator.run()
    return Predictions(items=list(items), probabilities=class_table(torch.cat(collected).numpy(), model.task),
                       class_names=model.class_names, task=model.task)


def class_table(probs: np.ndarray, task: str) -> np.ndarray:
    """Probabilities with one column per class: a binary task's positive-class column becomes ``[1 - p, p]``."""
    return np.concatenate([1 - probs, probs], axis=1) if task == Task.BINARY else probs


def write_predictions(path: Path, predictions: Predictions) -> None:
    """CSV: ``item, predicted, probability_<class>...``, one row per item, in input order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "predicted", *[f"probability_{name}" for name in predictions.class_names]])
        for item, predicted, row in zip(predictions.items, predictions.predicted(), predictions.probabilities,
                                        strict=True):
            writer.writerow([item.name, predicted, *[f"{value:.8f}" for value in row]])
