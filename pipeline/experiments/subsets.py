"""Training subsets of n items for the data-scarce study: stratified by class, drawn by the seed, nested in n
(the 50 items of a seed are among its 100), the same for every arm; validation and test untouched.

A subset is materialized as a MedMNIST ``.npz`` beside the runs (derived from the dataset file by index, never
committed), so training reads it through the ordinary MedMNIST path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.engine.checkpoint import write_atomically
from pipeline.errors import ConfigError, DataError, StorageError, os_reason

__all__ = ["stratified_indices", "subset_file", "subset_overrides", "FULL"]

FULL = "full"


def _allocation(counts: np.ndarray, n: int) -> np.ndarray:
    """Items per class for a total of n, proportional to ``counts`` (largest remainder), at least one per
    present class when n allows."""
    share = counts / counts.sum() * n
    taken = np.floor(share).astype(int)
    if n >= np.count_nonzero(counts):
        taken = np.maximum(taken, (counts > 0).astype(int))
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    index = 0
    while taken.sum() < n:
        label = order[index % len(order)]
        if taken[label] < counts[label]:
            taken[label] += 1
        index += 1
    while taken.sum() > n:  # the one-per-class floor overshot: take back from the largest class
        taken[np.argmax(taken)] -= 1
    return taken


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of n training items, class shares as in ``labels`` (one label per item), drawn by ``seed``.

    Each class is shuffled once per seed and the first items taken, so a smaller subset is part of a larger one.
    """
    labels = np.asarray(labels).reshape(len(labels), -1)[:, 0]
    if not 0 < n <= len(labels):
        raise ConfigError(f"n_train {n}: expected 1..{len(labels)} (the training split's size)")
    classes, counts = np.unique(labels, return_counts=True)
    rng = np.random.default_rng([seed, 20261202])
    chosen = []
    for label, take in zip(classes, _allocation(counts, n), strict=True):
        members = np.flatnonzero(labels == label)
        chosen.append(members[rng.permutation(len(members))[:take]])
    return np.sort(np.concatenate(chosen))


def subset_file(dataset: Path, n: int, seed: int, folder: Path) -> tuple[Path, dict]:
    """The ``.npz`` holding n stratified training items of ``dataset`` (a MedMNIST file) and its untouched
    validation and test splits; written once into ``folder`` and reused. Returns the path and a record of the
    subset (size, class counts, a digest of the indices) for the result file."""
    if not dataset.is_file():
        raise DataError(f"data file {dataset} not found (data.path)")
    with np.load(dataset, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    if "train_labels" not in arrays:
        raise DataError(f"{dataset}: n_train needs a MedMNIST file with train_images/train_labels")
    indices = stratified_indices(arrays["train_labels"], n, seed)
    digest = hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest()[:16]
    labels = arrays["train_labels"].reshape(len(arrays["train_labels"]), -1)[indices, 0]
    record = {"n_train": n, "seed": seed, "indices_sha256": digest,
              "class_counts": {str(k): int(v) for k, v in zip(*np.unique(labels, return_counts=True), strict=True)}}
    path = folder / f"{dataset.stem}_n{n}_seed{seed}_{digest}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        arrays["train_images"] = arrays["train_images"][indices]
        arrays["train_labels"] = arrays["train_labels"][indices]
        try:
            write_atomically(path, lambda handle: np.savez(handle, **arrays))
        except OSError as error:
            raise StorageError(f"{path}: cannot write the training subset ({os_reason(error)})") from None
    return path, record


def subset_overrides(dataset: Path, n: int | str, seed: int, folder: Path) -> tuple[list[str], dict | None]:
    """The ``data.path`` override that trains on the subset of n items drawn with seed (:func:`subset_file`), and
    its record; none for the whole training split (n ``'full'``)."""
    if n == FULL:
        return [], None
    path, record = subset_file(dataset, int(n), seed, folder)
    return [f"data.path={path.resolve()}"], record
