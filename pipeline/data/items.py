"""Split arrays, what they say about the task, and their MONAI datasets and loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset, ThreadDataLoader
from monai.transforms import Compose
from torch.utils.data import Sampler

from pipeline.errors import DataError
from pipeline.kinds import SPLITS, Task

__all__ = ["SPLITS", "SplitItems", "DatasetInfo", "describe_dataset", "encode_labels", "make_dataset", "make_loader"]



@dataclass(frozen=True)
class SplitItems:
    """The images ``(N, C, *spatial)`` and labels ``(N, L)`` of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class DatasetInfo:
    """What the network and the loss need to know about a dataset."""

    task: str
    class_names: list[str]
    in_channels: int
    spatial_dims: int
    spatial_shape: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Logits the network emits: one for a binary task, one per class otherwise."""
        return 1 if self.task == Task.BINARY else self.num_classes


def describe_dataset(splits: dict[str, SplitItems], declared_task: str, class_names: list[str] | None,
                     source: str) -> DatasetInfo:
    """Infer (or check the declared) task and classes from the training labels.

    Raises:
        DataError: when the labels contradict the declared task or class names.
    """
    train = splits["train"]
    all_labels = np.concatenate([split.labels for split in splits.values()])
    if all_labels.shape[1] > 1:
        task = "multilabel"
        num_classes = all_labels.shape[1]
        if not np.isin(all_labels, (0, 1)).all():
            raise DataError(f"{source}: multi-label targets must be 0/1")
    else:
        if (all_labels < 0).any():
            raise DataError(f"{source}: labels must be class indices >= 0, found {int(all_labels.min())}")
        num_classes = max(int(all_labels.max()) + 1, 2)
        task = "binary" if num_classes == 2 else "multiclass"
    if declared_task not in ("auto", task):
        if not (declared_task == Task.MULTICLASS and task == Task.BINARY):
            raise DataError(f"{source}: data.task={declared_task!r} but the labels describe a {task} task "
                            f"({num_classes} classes)")
        task = "multiclass"
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"{source}: data.class_names lists {len(class_names)} names but the labels have "
                        f"{num_classes} classes")
    names = list(class_names) if class_names is not None else [str(index) for index in range(num_classes)]
    return DatasetInfo(task=task, class_names=names, in_channels=int(train.images.shape[1]),
                       spatial_dims=train.images.ndim - 2, spatial_shape=tuple(train.images.shape[2:]))


def encode_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Labels as the loss takes them: binary (N, 1) float, multiclass (N,) int64, multilabel (N, C) float."""
    if task == Task.MULTICLASS:
        return labels.reshape(-1).astype(np.int64)
    return labels.astype(np.float32)


def make_dataset(items: list[dict], transform: Compose, cache: str, cache_dir: Path | None = None) -> Dataset:
    """A MONAI dataset over ``items``: ``cache`` ``"memory"`` (CacheDataset), ``"disk"`` (PersistentDataset in
    ``cache_dir``) or ``"none"``. Caches hold the output of the deterministic transforms, so the second epoch
    does not decode images again."""
    if cache == "memory":
        return CacheDataset(items, transform=transform, cache_rate=1.0, progress=False, num_workers=0)
    if cache == "disk":
        if cache_dir is None:
            raise ValueError("cache='disk' needs a cache_dir")
        cache_dir.mkdir(parents=True, exist_ok=True)
        return PersistentDataset(items, transform=transform, cache_dir=cache_dir)
    return Dataset(items, transform=transform)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int,
                sampler: Sampler | None = None, threaded: bool = False) -> DataLoader:
    """A MONAI DataLoader; the shuffling order is seeded so a run can be repeated.

    A shuffled (training) loader drops a last batch of a single item, which batch normalization cannot take.
    With a ``sampler`` (a distributed run's share of the items), the sampler orders the items and ``shuffle`` only
    says whether it is a training loader; ``seed`` still seeds the random transforms.
    ``threaded=True`` gives MONAI's ``ThreadDataLoader`` (``num_workers`` must be 0): the same batches in the same
    order, prepared one batch ahead on a background thread while the device trains. Use it only where the
    transforms that run per batch are not random: the thread runs ahead of training, so a checkpoint taken between
    batches would record random transform states a batch or two ahead of the batches trained on.
    """
    generator = torch.Generator().manual_seed(seed)
    drop_last = shuffle and len(sampler if sampler is not None else dataset) % batch_size == 1
    options = {"batch_size": batch_size, "shuffle": shuffle and sampler is None, "generator": generator,
               "drop_last": drop_last, "sampler": sampler}
    if threaded:
        if num_workers:
            raise ValueError(f"threaded=True prepares batches on a thread; num_workers must be 0, got {num_workers}")
        return ThreadDataLoader(dataset, buffer_size=1, num_workers=0, **options)
    return DataLoader(dataset, num_workers=num_workers, **options)
