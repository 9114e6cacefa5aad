"""The benchmark report's figures: training curves as small multiples (one panel per arm and training-set size,
the reference arm in grey in each), a forest plot of paired differences, and learning curves against n.

Figures are drawn on matplotlib's object API (``Figure``), so no global backend is chosen here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from pipeline.experiments.statistics import summarize

if TYPE_CHECKING:
    from pipeline.experiments.report import Section

__all__ = ["arm_colours", "plot_curves", "plot_forest", "plot_learning_curves"]

_GREY = (0.55, 0.55, 0.55, 1.0)


def arm_colours(count: int) -> list[tuple]:
    """One colour per arm, none repeated up to 20 arms (tab10, or tab20 beyond 10 arms)."""
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(index % palette.N) for index in range(count)]


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path


def _mean_band(results: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    length = min(len(r["history"]) for r in results)
    values = np.asarray([[h[key] for h in r["history"][:length]] for r in results], dtype=float)
    return np.arange(1, length + 1), values.mean(0), values.std(0)


def plot_curves(section: Section, path: Path) -> Path:
    """Per-arm small multiples (rows: arms; columns: training-set sizes): validation loss (solid, ±sd band) and
    training loss (dotted) over epochs, mean over seeds, with the reference arm in grey in every panel."""
    arms = list(dict.fromkeys(arm for arm, _ in section.runs))
    colours = dict(zip(arms, arm_colours(len(arms)), strict=True))
    figure = Figure(figsize=(2.8 * len(section.sizes) + 0.6, 1.9 * len(arms) + 0.8), constrained_layout=True)
    axes = np.atleast_2d(figure.subplots(len(arms), len(section.sizes), sharex="col", sharey=True, squeeze=False))
    for row, arm in enumerate(arms):
        for column, n in enumerate(section.sizes):
            axis = axes[row, column]
            shown = [(arm, colours[arm])] if arm == section.reference else [(section.reference, _GREY),
                                                                            (arm, colours[arm])]
            for name, colour in shown:
                results = section.runs.get((name, n))
                if not results:
                    continue
                epochs, mean, sd = _mean_band(results, "val_loss")
                axis.plot(epochs, mean, color=colour, marker="." if len(epochs) == 1 else None)
                axis.fill_between(epochs, mean - sd, mean + sd, color=colour, alpha=0.15)
                epochs, train, _ = _mean_band(results, "train_classification")
                axis.plot(epochs, train, color=colour, linestyle=":")
            axis.grid(alpha=0.3)
            if row == 0:
                axis.set_title(f"n = {n}", fontsize=9)
            if column == 0:
                axis.set_ylabel(arm, fontsize=8)
            if row == len(arms) - 1:
                axis.set_xlabel("epoch", fontsize=8)
    figure.suptitle(f"{section.name}: classification loss, validation (solid, ±sd) and train (dotted); "
                    f"{section.reference} in grey", fontsize=9)
    return _save(figure, path)


def plot_forest(section: Section, metrics: tuple[str, ...], path: Path) -> Path:
    """Paired differences against the reference with 95% intervals: one panel per outcome, one row per
    (n, comparison); a filled marker where the Holm-adjusted p is below 0.05."""
    rows = list(dict.fromkeys((c["size"], c["arm"], c["reference"]) for c in section.comparisons))
    index = {(c["size"], c["arm"], c["reference"], c["metric"]): c for c in section.comparisons}
    titles = {c["metric"]: c["title"] for c in section.comparisons}
    figure = Figure(figsize=(3.2 * len(metrics) + 2.2, 0.28 * len(rows) + 1.2), constrained_layout=True)
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    positions = np.arange(len(rows))[::-1]
    for axis, metric in zip(axes, metrics, strict=True):
        for position, (n, arm, reference) in zip(positions, rows, strict=True):
            c = index.get((n, arm, reference, metric))
            if c is None:
                continue
            significant = c.get("p_holm") is not None and c["p_holm"] < 0.05
            axis.plot([c["low"], c["high"]], [position, position], color="black", linewidth=1)
            axis.plot([c["mean"]], [position], marker="o", color="black",
                      markerfacecolor="black" if significant else "white")
        axis.axvline(0, color=_GREY, linewidth=0.8)
        axis.set_title(f"Δ {titles.get(metric, metric)}", fontsize=9)
        axis.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(positions, [f"n={n}: {arm} − {reference}" for n, arm, reference in rows], fontsize=7)
    figure.suptitle(f"{section.name}: paired differences, 95% intervals (filled: Holm p < 0.05)", fontsize=9)
    return _save(figure, path)


def plot_learning_curves(section: Section, path: Path) -> Path:
    """Outcome against training-set size, one panel per outcome, a line per arm: mean with its 95% interval."""
    outcomes = (("test", "auc", "test AUC"), ("test", "accuracy", "test accuracy"), ("test", "nll", "test NLL"),
                ("gaps", "accuracy_train_minus_val", "train−val accuracy gap"))
    arms = list(dict.fromkeys(arm for arm, _ in section.runs))
    colours = dict(zip(arms, arm_colours(len(arms)), strict=True))
    numeric = [n for n in section.sizes if n != "full"]
    figure = Figure(figsize=(3.3 * len(outcomes) + 1.8, 3.2), constrained_layout=True)
    axes = figure.subplots(1, len(outcomes), squeeze=False)[0]
    for axis, (part, metric, title) in zip(axes, outcomes, strict=True):
        for offset, arm in enumerate(arms):
            xs, means, lows, highs = [], [], [], []
            for n in numeric:
                results = section.runs.get((arm, n))
                if not results:
                    continue
                s = summarize([r[part][metric] for r in results])
                xs.append(int(n) * (1 + 0.02 * (offset - len(arms) / 2)))  # spread the arms' markers a little
                means.append(s["mean"])
                lows.append(s["mean"] - (s["low"] if s["low"] is not None else s["mean"]))
                highs.append((s["high"] if s["high"] is not None else s["mean"]) - s["mean"])
            if xs:
                axis.errorbar(xs, means, yerr=[lows, highs], color=colours[arm], marker="o", markersize=3,
                              capsize=2, linewidth=1, label=arm)
        axis.set_xscale("log")
        axis.set_xlabel("training items n (log scale)", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.suptitle(f"{section.name}: learning curves (mean and 95% interval over seeds)", fontsize=9)
    return _save(figure, path)
