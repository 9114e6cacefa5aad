"""Figures without pyplot's global state, and the training curves.

Every medvp figure is a ``matplotlib.figure.Figure`` drawn on its own Agg canvas (:func:`new_figure`), so
importing medvp selects no backend and drawing a figure changes no global matplotlib state (a notebook or GUI
that imports medvp keeps its own backend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.errors import writing
from pipeline.kinds import SelectionMetric

__all__ = ["new_figure", "save_figure", "plot_curves", "curves_figure", "best_epoch"]


#: the panels of curves.png: (y label, [(metrics.csv column, line style, legend label), ...])
CURVE_PANELS = (
    ("loss", [("train_loss", "o-", "train total (classification + weighted variance)"),
              ("train_classification", "o--", "train classification term"),
              ("val_loss", "s-", "validation classification loss")]),
    ("feature variance", [("train_variance", "o-", "train variance term (unweighted)")]),
    ("score", [("train_accuracy", "o-", "train accuracy"), ("val_accuracy", "s-", "validation accuracy"),
               ("val_auc", "^-", "validation AUC")]),
    ("learning rate", [("lr", "o-", "learning rate (during the epoch)")]),
)


def new_figure(width: float, height: float, **layout) -> Figure:
    """A figure of ``width`` x ``height`` inches on an Agg canvas (PNG output, no display, no pyplot)."""
    figure = Figure(figsize=(width, height), **layout)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Write ``figure`` as PNG to ``path`` (its folder is created) and return the path.

    Raises:
        StorageError: the disk is full or the folder cannot be written (one line naming the file).
    """
    path = Path(path)
    with writing(path, "the figure"):
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi)
    return path


def best_epoch(history: Sequence[dict], selection: SelectionMetric = SelectionMetric.VAL_AUC) -> int | None:
    """The epoch of the best ``selection`` (the first, on ties: the best checkpoint's), None without one."""
    best = selection.best(history)
    return None if best is None else int(best["epoch"])


def _series(axis: Axes, epochs: list[int], values: list[float | None], style: str, label: str) -> None:
    """One curve; a single epoch is drawn as a short level line, so it reads as a line and not a stray dot."""
    values = [math.nan if value is None else float(value) for value in values]
    if len(epochs) == 1:
        axis.plot([epochs[0] - 0.3, epochs[0], epochs[0] + 0.3], values * 3, style, label=label, markevery=[1])
    else:
        axis.plot(epochs, values, style, label=label)


def plot_curves(history: Sequence[dict], path: Path, title: str = "",
                selection: SelectionMetric = SelectionMetric.VAL_AUC) -> Path:
    """Write ``curves.png`` (:func:`curves_figure`) from per-epoch records (the columns of ``metrics.csv``)."""
    return save_figure(curves_figure(history, title, selection), path)


def curves_figure(history: Sequence[dict], title: str = "",
                  selection: SelectionMetric = SelectionMetric.VAL_AUC) -> Figure:
    """The training curves from per-epoch records.

    Four panels over epochs (integer ticks): the classification loss (train and validation) with the train
    total, the variance term (train: validation computes no penalty), accuracy and AUC, and the learning rate.
    A dashed line marks the epoch of the best ``selection`` (the checkpoint evaluation uses).
    """
    epochs = [int(record["epoch"]) for record in history]
    figure = new_figure(11, 7.5, layout="constrained")
    axes = figure.subplots(2, 2, sharex=True).ravel()
    for axis, (ylabel, curves) in zip(axes, CURVE_PANELS, strict=True):
        for column, style, label in curves:
            _series(axis, epochs, [record.get(column) for record in history], style, label)
        axis.set_ylabel(ylabel)
    loss_axis, variance_axis, score_axis, lr_axis = axes
    best = best_epoch(history, selection)
    marked = "AUC" if selection is SelectionMetric.VAL_AUC else "loss"
    for axis in (loss_axis, variance_axis, score_axis, lr_axis):
        if best is not None:
            axis.axvline(best, color="0.4", linestyle=":", linewidth=1.2,
                         label=f"best validation {marked} (epoch {best})" if axis is score_axis else None)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if epochs:
            axis.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    for axis in (score_axis, lr_axis):
        axis.set_xlabel("epoch")
    if title:
        figure.suptitle(title)
    return figure
