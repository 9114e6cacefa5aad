"""The names medvp uses for the kinds of classification task and for the dataset splits, in one place.

Both are ``StrEnum``: a member equals its text (``Task.BINARY == "binary"``), formats as it and is written to
JSON as it, so configurations, run summaries and result files keep their plain strings. A leaf module: the
standard library only.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Task", "Split", "SPLITS", "TASKS"]


class Task(StrEnum):
    BINARY = "binary"  # one logit, BCE
    MULTICLASS = "multiclass"  # one logit per class, cross-entropy
    MULTILABEL = "multilabel"  # one logit per label, BCE


class Split(StrEnum):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"


SPLITS: tuple[Split, ...] = tuple(Split)
TASKS: tuple[Task, ...] = tuple(Task)
