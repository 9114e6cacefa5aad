"""Splits without leakage: stratified by label, grouped by patient, seeded; and the keyed patient column of a run's
``splits.csv``."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import StorageError

__all__ = ["grouped_stratified_split", "SECRET_FILE", "run_secret", "keyed_patients"]

#: the run's random key for its patient column; kept in the run directory, never exported (bundles copy named files)
SECRET_FILE = ".patient_key"

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


def run_secret(run_dir: Path) -> bytes:
    """The run's random 32-byte key, created (readable by the owner only) the first time it is asked for.

    A resumed run or a later evaluation reuses it, so a run's ``splits.csv`` names a patient the same way throughout.
    """
    path = run_dir / SECRET_FILE
    try:
        with open(path, "x", encoding="ascii", opener=lambda name, flags: os.open(name, flags, 0o600)) as handle:
            handle.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    except OSError as error:
        raise StorageError(f"{path}: cannot write the run's patient key ({error.strerror or error})") from None
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as error:
        raise StorageError(f"{path}: not a readable patient key ({error}); delete it to make a new one "
                           "(the patient column of splits.csv then changes)") from None


def keyed_patients(rows: Sequence[dict], secret: bytes, column: str = "patient") -> list[dict]:
    """``rows`` with ``column`` replaced by an HMAC-SHA256 of it under the run's ``secret`` (empty stays empty).

    The grouping key of a patient (a hash of the identifier) is fixed, so a table of them could be reversed by
    hashing guessed identifiers; keyed with a secret of the run, it cannot, yet still shows which items share a
    patient.
    """
    def keyed(value: str) -> str:
        return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16] if value else ""

    return [{**row, column: keyed(str(row.get(column) or ""))} for row in rows]
