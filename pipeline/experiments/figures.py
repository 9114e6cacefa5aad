"""The benchmark report's figures: training curves as small multiples (one panel per arm and training-set size,
the reference arm in grey in each), a forest plot of paired differences, and learning curves against n.

Figures are drawn on matplotlib's object API (``Figure``), so no global backend is chosen here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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


def _panels(arms: list[str], sizes: list[str]) -> tuple[int, int, list[tuple[str, str, int, int]]]:
    """Grid shape and (arm, n, row, column) per panel: arms by rows and sizes by columns, or, with one size,
    the arms wrapped four to a row."""
    if len(sizes) > 1:
        return len(arms), len(sizes), [(arm, n, r, c) for r, arm in enumerate(arms) for c, n in enumerate(sizes)]
    columns = min(4, len(arms))
    rows = -(-len(arms) // columns)
    return rows, columns, [(arm, sizes[0], i // columns, i % columns) for i, arm in enumerate(arms)]


def plot_curves(section: Section, path: Path) -> Path:
    """Per-arm small multiples (one panel per arm and training-set size): validation loss (solid, ±sd band) and
    training loss (dotted) over epochs, mean over seeds, with the reference arm in grey in every panel."""
    arms = list(dict.fromkeys(arm for arm, _ in section.runs))
    colour = colormaps["tab10"](0)  # one strong colour: each arm has its own panel
    rows, columns, panels = _panels(arms, section.sizes)
    figure = Figure(figsize=(max(6.0, 2.8 * columns + 0.6), 1.9 * rows + 0.9), constrained_layout=True)
    axes = figure.subplots(rows, columns, sharey=True, squeeze=False)
    for arm, n, row, column in panels:
        axis = axes[row, column]
        shown = [(arm, colour)] if arm == section.reference else [(section.reference, _GREY), (arm, colour)]
        for name, line_colour in shown:
            results = section.runs.get((name, n))
            if not results:
                continue
            epochs, mean, sd = _mean_band(results, "val_loss")
            axis.plot(epochs, mean, color=line_colour, marker="." if len(epochs) == 1 else None)
            axis.fill_between(epochs, mean - sd, mean + sd, color=line_colour, alpha=0.15)
            epochs, train, _ = _mean_band(results, "train_classification")
            axis.plot(epochs, train, color=line_colour, linestyle=":", marker="." if len(epochs) == 1 else None)
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(arm if len(section.sizes) == 1 else f"{arm}, n = {n}", fontsize=8)
    for index in range(len(panels), rows * columns):
        axes[index // columns, index % columns].set_visible(False)
    figure.supxlabel("epoch", fontsize=8)
    figure.suptitle(f"{section.name}: classification loss, mean over seeds\nvalidation (solid, ±sd band) and "
                    f"train (dotted); {section.reference} in grey in every panel", fontsize=9)
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
    labels = [f"{arm} − {reference}" if n == "full" and len(section.sizes) == 1 else f"n={n}: {arm} − {reference}"
              for n, arm, reference in rows]
    axes[0].set_yticks(positions, labels, fontsize=7)
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
