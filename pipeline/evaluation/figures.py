"""The figures of an evaluated split: ROC curves, a reliability diagram, confusion matrices.

``write_evaluation_figures`` writes ``roc_<split>.png``, ``calibration_<split>.png`` and
``confusion_<split>.png`` from the same probabilities and labels the metrics are computed from
(``pipeline.evaluation.metrics``): the ECE in the reliability diagram's title is the one in ``metrics_<split>.json``.
Figures name classes, never items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from pipeline.evaluation.metrics import (
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    predicted_labels,
    top_label_confidence,
)
from pipeline.evaluation.plots import new_figure, save_figure
from pipeline.kinds import Task

__all__ = ["roc_curve", "plot_roc", "plot_calibration", "plot_confusion", "write_evaluation_figures",
           "evaluation_figure_names"]

CALIBRATION_BINS = 15


def evaluation_figure_names(split: str) -> tuple[str, str, str]:
    return f"roc_{split}.png", f"calibration_{split}.png", f"confusion_{split}.png"


def roc_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1).

    Written here because medvp does not depend on scikit-learn, and MONAI's ``compute_roc_auc`` returns only the
    area. Tied scores move both rates at once, so the trapezoidal area under this curve is MONAI's AUC.
    """
    order = np.argsort(-scores, kind="mergesort")
    scores, targets = scores[order], targets[order].astype(np.float64)
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(targets)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    positives, negatives = targets.sum(), len(targets) - targets.sum()
    tpr = np.r_[0.0, true_positives / positives] if positives else np.full(len(last_of_tie) + 1, np.nan)
    fpr = np.r_[0.0, false_positives / negatives] if negatives else np.full(len(last_of_tie) + 1, np.nan)
    return fpr, tpr


def _one_vs_rest(probabilities: np.ndarray, labels: np.ndarray, task: str,
                 class_names: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, scores, 0/1 targets) per curve: the positive class for binary, each class or label otherwise."""
    if task == Task.BINARY:
        return [(class_names[-1], probabilities, labels)]
    if task == Task.MULTICLASS:
        return [(name, probabilities[:, index], (labels == index).astype(np.int64))
                for index, name in enumerate(class_names)]
    return [(name, probabilities[:, index], labels[:, index]) for index, name in enumerate(class_names)]


def plot_roc(path: Path, probabilities: np.ndarray, labels: np.ndarray, task: str, class_names: list[str],
             title: str = "") -> Path:
    """ROC curve(s) with their AUC: the positive class (binary), one-vs-rest per class or per label."""
    figure = new_figure(5.5, 5.2, layout="constrained")
    axis = figure.subplots()
    for name, scores, targets in _one_vs_rest(probabilities, labels, task, class_names):
        fpr, tpr = roc_curve(scores, targets)
        area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids; NaN with one class
        axis.plot(fpr, tpr, drawstyle="default", label=f"{name} (AUC {area:.3f})")
    axis.plot([0, 1], [0, 1], linestyle=":", color="0.5", label="chance")
    axis.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="false positive rate (1 - specificity)",
             ylabel="true positive rate (sensitivity)", aspect="equal")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title("ROC" + (" (one-vs-rest)" if task != Task.BINARY else ""), fontsize=10)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def plot_calibration(path: Path, probabilities: np.ndarray, labels: np.ndarray, task: str, title: str = "") -> Path:
    """Reliability diagram of the predicted class's probability (each label's, for multilabel) over
    :data:`CALIBRATION_BINS` equal-width bins, with the expected calibration error; item counts per bin below."""
    confidence, correct = top_label_confidence(probabilities, labels, task)
    bins = calibration_bins(confidence, correct, CALIBRATION_BINS)
    ece = expected_calibration_error(confidence, correct, CALIBRATION_BINS)
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1 / CALIBRATION_BINS
    figure = new_figure(5.5, 6.2, layout="constrained")
    reliability, counts = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = bins["count"] > 0
    reliability.bar(centres[filled], bins["accuracy"][filled], width=width, edgecolor="black", alpha=0.75,
                    label="accuracy in bin")
    reliability.plot(bins["confidence"][filled], bins["accuracy"][filled], "o", color="black", markersize=3,
                     label="mean confidence in bin")
    reliability.plot([0, 1], [0, 1], linestyle=":", color="0.4", label="perfect calibration")
    reliability.set(ylim=(0, 1.02), ylabel="accuracy")
    reliability.grid(alpha=0.3)
    reliability.legend(fontsize=8, loc="upper left")
    reliability.set_title(f"reliability: ECE {ece:.4f} ({CALIBRATION_BINS} bins)", fontsize=10)
    if title:
        figure.suptitle(title, fontsize=10)
    counts.bar(centres, bins["count"], width=width, color="0.6", edgecolor="black")
    counts.set(xlim=(0, 1), xlabel="confidence (probability of the predicted class)", ylabel="items")
    counts.grid(alpha=0.3)
    return save_figure(figure, path)


def _draw_matrix(axis: Axes, matrix: np.ndarray, names: list[str], title: str) -> None:
    """Counts in each cell with the share of the true class (row), shaded by that share."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            axis.text(col, row, f"{matrix[row, col]}\n{shares[row, col]:.0%}", ha="center", va="center",
                      fontsize=9, color="white" if shares[row, col] > 0.6 else "black")
    ticks = range(len(names))
    axis.set_xticks(ticks, names, rotation=30 if max(map(len, names)) > 8 else 0, ha="right")
    axis.set_yticks(ticks, names)
    axis.set(xlabel="predicted", ylabel="true")
    axis.set_title(title, fontsize=9)


def plot_confusion(path: Path, probabilities: np.ndarray, labels: np.ndarray, task: str, class_names: list[str],
                   title: str = "") -> Path:
    """The confusion matrix (binary, multiclass: rows true class, columns predicted), or one 2x2 matrix per label
    (multilabel); each cell with its count and its share of the true class."""
    predictions = predicted_labels(probabilities, task)
    if task == Task.MULTILABEL:
        columns = min(4, len(class_names))
        rows = -(-len(class_names) // columns)
        figure = new_figure(3.0 * columns, 3.0 * rows + 0.4, layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
        for index, name in enumerate(class_names):
            matrix = confusion_matrix(labels[:, index], predictions[:, index], 2)
            _draw_matrix(axes[index], matrix, ["no", "yes"], name)
        for axis in axes[len(class_names):]:
            axis.set_axis_off()
    else:
        size = max(5.0, 0.9 * len(class_names) + 2.5)
        figure = new_figure(size, size * 0.9, layout="constrained")
        _draw_matrix(figure.subplots(), confusion_matrix(labels, predictions, len(class_names)), class_names,
                     "rows: true class; columns: predicted (share of the row)")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def write_evaluation_figures(out_dir: Path, split: str, probabilities: np.ndarray, labels: np.ndarray, task: str,
                             class_names: list[str], title: str = "") -> list[Path]:
    """Write ``roc_<split>.png``, ``calibration_<split>.png`` and ``confusion_<split>.png`` into ``out_dir``.

    Args:
        probabilities: binary ``(N,)`` positive-class probabilities; multiclass and multilabel ``(N, C)``.
        labels: binary and multiclass ``(N,)`` class indices; multilabel ``(N, C)`` 0/1.
        title: a prefix for the figures' titles (e.g. the run's name and the split); no item names.
    """
    roc_name, calibration_name, confusion_name = evaluation_figure_names(split)
    heading = title or split
    return [
        plot_roc(out_dir / roc_name, probabilities, labels, task, class_names, heading),
        plot_calibration(out_dir / calibration_name, probabilities, labels, task, heading),
        plot_confusion(out_dir / confusion_name, probabilities, labels, task, class_names, heading),
    ]
