"""A picture of the data before training: a few items as read, after preprocessing, and after augmentation."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from monai.transforms import Compose

from pipeline.config import Config
from pipeline.data.readers import ReadImaged
from pipeline.data.sources import load_source
from pipeline.engine.data_setup import deterministic_transforms, dicom_options
from pipeline.kinds import Split
from pipeline.transforms.policy import build_augmentation

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["write_preview"]


def _show(image: np.ndarray) -> np.ndarray:
    """A 2D view of a channel-first image: RGB as is, one channel grey; 3D: the central slice of the last axis."""
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 4:
        array = array[..., array.shape[-1] // 2]
    if array.shape[0] == 3:
        low, high = array.min(), array.max()
        return np.transpose((array - low) / max(high - low, 1e-6), (2, 1, 0))
    return array[0].T  # MONAI arrays are (x, y): transpose to rows for display


def write_preview(config: Config, out: Path, count: int = 6, seed: int = 0) -> Path:
    """Write a PNG grid of ``count`` training items: as read, preprocessed, and augmented (if configured).

    Rows are labelled with their index and class only: item names can hold patient identifiers.
    """
    source = load_source(config.data)
    items = source.splits[Split.TRAIN][:count]
    if source.from_files:
        read = ReadImaged(keys="image", dicom=dicom_options(config))
        raw = [read({"image": item["image"]})["image"] for item in items]
    else:
        raw = [item["image"] for item in items]
    spatial_dims = np.asarray(raw[0]).ndim - 1
    base = deterministic_transforms(config, source, spatial_dims)
    processed = [base({"image": item["image"], "label": item["label"]})["image"] for item in items]
    augmentation = [build_augmentation(spec, tuple(processed[0].shape[1:])) for spec in config.augmentation.transforms]
    columns = [("as read", raw), ("preprocessed", processed)]
    if augmentation:
        augment = Compose(augmentation).set_random_state(seed=seed)
        columns.append(("augmented", [augment({"image": image.clone()})["image"] for image in processed]))
    figure, axes = plt.subplots(len(items), len(columns), figsize=(2.6 * len(columns), 2.4 * len(items)),
                                squeeze=False, constrained_layout=True)
    for row, item in enumerate(items):
        label = int(np.asarray(item["label"]).reshape(-1)[0])
        for column, (title, images) in enumerate(columns):
            axis = axes[row, column]
            view = _show(images[row])
            axis.imshow(view, cmap=None if view.ndim == 3 else "gray")
            axis.set_xticks([])
            axis.set_yticks([])
            low, high = float(np.asarray(images[row]).min()), float(np.asarray(images[row]).max())
            axis.set_title(f"{title}\n[{low:.3g}, {high:.3g}]", fontsize=8)
            if column == 0:
                axis.set_ylabel(f"#{row} {source.class_names[label]}", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out
