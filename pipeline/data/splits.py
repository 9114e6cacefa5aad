"""Splits without leakage: stratified by label, grouped by patient, seeded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

__all__ = ["grouped_stratified_split"]

_SPLIT_NAMES = ("train", "val", "test")


def grouped_stratified_split(labels: Sequence[int], groups: Sequence[str | None], fractions: Sequence[float],
                             seed: int) -> list[str]:
    """Assign each item to train/val/test so that no group (patient) spans two splits.

    Groups are stratified by their most common label: within each label, groups are shuffled (seeded) and each
    goes to the split furthest below its target share of that label's items. Items without a group are groups
    of their own.

    Returns:
        One split name per item, in item order.
    """
    keys = [group if group is not None else f"__item_{index}" for index, group in enumerate(groups)]
    members: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    by_label: dict[int, list[str]] = {}
    for key, indices in members.items():
        label = Counter(labels[i] for i in indices).most_common(1)[0][0]
        by_label.setdefault(label, []).append(key)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        group_keys = sorted(by_label[label])
        rng.shuffle(group_keys)
        total = sum(len(members[key]) for key in group_keys)
        filled = np.zeros(len(_SPLIT_NAMES))
        targets = np.asarray(fractions, dtype=float) * total
        for key in group_keys:
            choice = int(np.argmax(targets - filled))
            assignment[key] = _SPLIT_NAMES[choice]
            filled[choice] += len(members[key])
    return [assignment[key] for key in keys]
