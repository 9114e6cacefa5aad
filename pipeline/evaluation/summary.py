"""The end of a run as text: every metric with its interval, the confusion matrix, the files written, the time.

``train`` and ``evaluate`` print these on standard output after their log lines.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["metrics_table", "files_written", "files_block", "time_split", "cpu_seconds"]

#: (key in metrics_<split>.json, label), in the order shown
METRIC_LABELS = (("accuracy", "accuracy"), ("auc", "AUC"), ("balanced_accuracy", "balanced accuracy"),
                 ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("macro_f1", "macro F1"),
                 ("nll", "NLL (log loss)"), ("ece", "ECE (calibration)"))
#: folders listed as one entry with a file count
COLLAPSED = ("tensorboard", "cache")


def _interval(metric: Mapping, digits: int = 4) -> str:
    if metric.get("low") is None or metric.get("high") is None:
        return "-"
    return f"[{metric['low']:.{digits}f}, {metric['high']:.{digits}f}]"


def metrics_table(report: Mapping) -> list[str]:
    """Lines of a table: each metric with its bootstrap interval, then the confusion matrix (counts, with the
    interval of each cell in whole items) for binary and multiclass tasks."""
    metrics = report["metrics"]
    level = round(100 * report.get("confidence", 0.95))
    lines = [f"{report['split']}: {report['items']} items, {report['checkpoint']} checkpoint, {level}% bootstrap "
             f"intervals ({report.get('bootstrap_samples', '?')} resamples)",
             f"  {'metric':<19}{'value':>8}   {level}% interval"]
    for key, label in METRIC_LABELS:
        if key in metrics and metrics[key]["value"] is not None:
            lines.append(f"  {label:<19}{metrics[key]['value']:>8.4f}   {_interval(metrics[key])}")
    if "confusion_matrix" in metrics:
        lines += _confusion_lines(metrics["confusion_matrix"], report["class_names"])
    return lines


def _confusion_lines(matrix: Mapping, names: list[str]) -> list[str]:
    value, low, high = matrix["value"], matrix.get("low"), matrix.get("high")
    cells = [[f"{value[r][c]}" + (f" [{low[r][c]}, {high[r][c]}]" if low is not None else "")
              for c in range(len(names))] for r in range(len(names))]
    width = max(len(text) for text in [*names, *(cell for row in cells for cell in row)]) + 2
    label_width = max(len(name) for name in names) + 2
    lines = ["  confusion matrix (rows: true class, columns: predicted; intervals in items)",
             "  " + " " * label_width + "".join(f"{name:>{width}}" for name in names)]
    for name, row in zip(names, cells, strict=True):
        lines.append(f"  {name:<{label_width}}" + "".join(f"{cell:>{width}}" for cell in row))
    return lines


def files_written(folder: Path, since: float) -> list[str]:
    """Paths (relative to ``folder``) of the files changed at or after ``since`` (a ``time.time()``), sorted, with
    the ``tensorboard/`` and ``cache/`` folders as one entry each (``tensorboard/ (4 files)``)."""
    folder = Path(folder)
    names, collapsed = [], {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.stat().st_mtime < since - 1.0 or path.name.startswith("."):  # 1 s: coarse file-system clocks
            continue
        relative = path.relative_to(folder)
        if relative.parts[0] in COLLAPSED and len(relative.parts) > 1:
            collapsed[relative.parts[0]] = collapsed.get(relative.parts[0], 0) + 1
        else:
            names.append(relative.as_posix())
    return names + [f"{name}/ ({count} file{'s' * (count != 1)})" for name, count in sorted(collapsed.items())]


def files_block(folder: Path, names: Iterable[str], width: int = 100) -> list[str]:
    """``files written in FOLDER:`` and the names, several to a line."""
    lines, line = [f"files written in {folder}/:"], " "
    for name in names:
        if len(line) + len(name) + 2 > width and line.strip():
            lines.append(line)
            line = " "
        line += f" {name}"
    if line.strip():
        lines.append(line)
    return lines


def cpu_seconds() -> float:
    """User and system CPU time of this process so far, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_split(phases: Mapping[str, float], total: float, threads: int) -> str:
    """``time: 68.2 s wall, 121.4 s CPU on 2 threads (load average 1.9): start-up 9.3 s, ...``; the phases are
    shown in order, nested ones as ``name (part a, part b)`` when given as ``{"name": (s, {"a": s, "b": s})}``."""
    parts = []
    for name, seconds in phases.items():
        if isinstance(seconds, tuple):
            seconds, inner = seconds
            detail = ", ".join(f"{key} {value:.1f}" for key, value in inner.items())
            parts.append(f"{name} {seconds:.1f} s ({detail})")
        else:
            parts.append(f"{name} {seconds:.1f} s")
    accounted = sum(value[0] if isinstance(value, tuple) else value for value in phases.values())
    parts.append(f"other {max(total - accounted, 0.0):.1f} s")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"time: {total:.1f} s wall, {cpu_seconds():.1f} s CPU on {threads} thread{'s' * (threads != 1)} "
            f"(load average {load:.1f}): " + ", ".join(parts))

