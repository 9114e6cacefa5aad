"""Training curves: loss and accuracy, train against validation, so the generalization gap is visible."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_curves"]


def plot_curves(history: Sequence[dict], path: Path, title: str = "") -> None:
    """Write a two-panel PNG from per-epoch records (``epoch``, ``train_classification``, ``val_loss``,
    ``train_accuracy``, ``val_accuracy``, and ``val_auc`` when present)."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_axis.plot(epochs, [r["train_classification"] for r in history], "o-", label="train (classification term)")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("classification loss")
    loss_axis.legend()
    accuracy_axis.plot(epochs, [r["train_accuracy"] for r in history], "o-", label="train accuracy")
    accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], "s-", label="validation accuracy")
    accuracy_axis.plot(epochs, [r["val_auc"] for r in history], "^--", label="validation AUC")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("score")
    accuracy_axis.legend()
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
