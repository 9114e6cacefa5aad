"""Per-epoch records of a run: CSV and JSON written after every epoch, and the curves plot."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ignite.engine import Engine, Events

from pipeline.evaluation import plot_curves
from pipeline.kinds import SelectionMetric

if TYPE_CHECKING:  # rundir writes its summary with json_safe from here
    from pipeline.engine.rundir import RunDir

__all__ = ["EpochHistory", "json_safe", "write_table"]

COLUMNS = ("epoch", "lr", "train_loss", "train_classification", "train_variance", "train_accuracy",
           "val_loss", "val_accuracy", "val_auc", "epoch_seconds")


def json_safe(value: object) -> object:
    """Replace NaN and infinities (not valid JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_table(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Write ``rows`` as CSV with ``columns``."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


class EpochHistory:
    """Collect train and validation metrics after each epoch; rewrite the run's ``metrics.csv`` and ``metrics.json``
    (see :class:`~pipeline.engine.rundir.RunDir`) so that a crash keeps everything up to the last finished epoch,
    and ``curves.png`` when training ends and during training at most every ``plot_every`` seconds (drawing it
    costs about half a CPU second: on every epoch of a short run that was a tenth of the demo's time).

    Attach it to the trainer after the validation handler, so the epoch's validation metrics exist. With ``write``
    False (the other processes of a distributed run) it keeps the records, for checkpoints, and writes nothing.
    """

    def __init__(self, run: RunDir, evaluator: Engine, title: str = "", write: bool = True,
                 plot_every: float = 30.0, selection: SelectionMetric = SelectionMetric.VAL_AUC) -> None:
        self.run = run
        self.selection = selection
        self.evaluator = evaluator
        self.title = title
        self.write = write
        self.plot_every = plot_every
        self.records: list[dict] = []
        self._epoch_start = 0.0
        self._plotted = time.perf_counter()

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.EPOCH_STARTED, self._start)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._record)
        trainer.add_event_handler(Events.COMPLETED, lambda _: self.plot())

    def plot(self) -> None:
        """Redraw ``curves.png`` from the records so far."""
        if self.write and self.records:
            plot_curves(self.records, self.run.curves, self.title, self.selection)
        self._plotted = time.perf_counter()

    def state_dict(self) -> dict[str, list[dict]]:
        """The records so far, for a checkpoint: a resumed run continues the history instead of restarting it."""
        return {"records": [dict(record) for record in self.records]}

    def load_state_dict(self, state: dict[str, list[dict]]) -> None:
        self.records = [dict(record) for record in state["records"]]

    def _start(self, trainer: Engine) -> None:
        self._epoch_start = time.perf_counter()

    def _record(self, trainer: Engine) -> None:
        train, val = trainer.state.metrics, self.evaluator.state.metrics
        record = {
            "epoch": trainer.state.epoch,
            "lr": trainer.optimizer.param_groups[0]["lr"],
            "train_loss": float(train["train_loss"]),
            "train_classification": float(train["train_classification"]),
            "train_variance": float(train["train_variance"]),
            "train_accuracy": float(train["train_accuracy"]),
            "val_loss": float(val["val_loss"]),
            "val_accuracy": float(val["val_accuracy"]),
            "val_auc": float(val["val_auc"]),
            "epoch_seconds": time.perf_counter() - self._epoch_start,
        }
        self.records.append(record)
        if not self.write:
            return
        write_table(self.run.history_csv, self.records, COLUMNS)
        self.run.history_json.write_text(json.dumps(json_safe(self.records), indent=1), encoding="utf-8")
        if time.perf_counter() - self._plotted >= self.plot_every:
            self.plot()
