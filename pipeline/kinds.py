"""The names medvp uses for the kinds of classification task, the dataset splits and the validation metric that
selects a checkpoint, in one place.

Both are ``StrEnum``: a member equals its text (``Task.BINARY == "binary"``), formats as it and is written to
JSON as it, so configurations, run summaries and result files keep their plain strings. A leaf module: the
standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

__all__ = ["Task", "Split", "SelectionMetric", "SPLITS", "TASKS"]


class Task(StrEnum):
    BINARY = "binary"  # one logit, BCE
    MULTICLASS = "multiclass"  # one logit per class, cross-entropy
    MULTILABEL = "multilabel"  # one logit per label, BCE


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class SelectionMetric(StrEnum):
    """The validation metric that keeps the best checkpoint, drives early stopping and scores a tuning trial.

    ``val_auc`` (highest wins) ranks the images and cannot see the 0.5 threshold: a network whose scores all sit on
    one side of it can still have a high AUC. ``val_loss`` (lowest wins: the loss's classification term, i.e. the
    validation NLL of BCE or cross-entropy) is a proper scoring rule, so it also rewards calibrated scores.
    """

    VAL_AUC = "val_auc"
    VAL_LOSS = "val_loss"

    @property
    def higher_is_better(self) -> bool:
        return self is SelectionMetric.VAL_AUC

    @property
    def description(self) -> str:
        """``highest validation AUC`` or ``lowest validation loss``."""
        return "highest validation AUC" if self.higher_is_better else "lowest validation loss"

    def score(self, value: float) -> float:
        """``value`` as a score where higher is better (what ignite's Checkpoint and EarlyStopping compare)."""
        return float(value) if self.higher_is_better else -float(value)

    def is_better(self, value: float, than: float) -> bool:
        """Strictly better (a NaN never is)."""
        return self.score(value) > self.score(than)

    def best(self, records: Sequence[dict]) -> dict | None:
        """The record (e.g. an epoch of a run's history) with the best value of this metric: the first on ties, as
        the best checkpoint keeps it; records without a value, or with NaN, never count. None without one."""
        best = None
        for record in records:
            value = record.get(self.value)
            if value is None or math.isnan(value):
                continue
            if best is None or self.is_better(value, best[self.value]):
                best = record
        return best


SPLITS: tuple[Split, ...] = tuple(Split)
TASKS: tuple[Task, ...] = tuple(Task)
