"""A picture of the data before training: a few items as read, after preprocessing, and after augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from monai.transforms import Compose

from pipeline.config import Config
from pipeline.data.display import display_image, normalised
from pipeline.data.loading import item_transforms
from pipeline.data.readers import ReadImaged
from pipeline.data.sources import load_source
from pipeline.engine.data_setup import dicom_options
from pipeline.errors import DataError
from pipeline.evaluation.plots import new_figure, save_figure
from pipeline.kinds import Split
from pipeline.transforms.policy import build_augmentation

__all__ = ["write_preview"]

logger = logging.getLogger(__name__)


def _readable_items(config: Config, items: list[dict], count: int) -> tuple[list[dict], list]:
    """The first ``count`` items that read, as read; with ``data.on_bad_item: skip`` unreadable ones are skipped
    with a logged reason, otherwise the first is an error naming the file."""
    read = ReadImaged(keys="image", dicom=dicom_options(config))
    kept, images = [], []
    for item in items:
        if len(kept) == count:
            break
        try:
            images.append(read({"image": item["image"]})["image"])
        except DataError as error:
            if config.data.on_bad_item != "skip":
                raise
            logger.warning("preview: skipped %s", error)
            continue
        kept.append(item)
    if not kept:
        raise DataError(f"{config.data.path}: no readable training item to preview")
    return kept, images


def write_preview(config: Config, out: Path, count: int = 6, seed: int = 0) -> Path:
    """Write a PNG grid of ``count`` training items: as read, preprocessed, and augmented (if configured).

    Rows are labelled with their index and class only: item names can hold patient identifiers.
    """
    source = load_source(config.data)
    items, raw = _readable_items(config, source.splits[Split.TRAIN], count)
    spatial_dims = np.asarray(raw[0]).ndim - 1
    base = item_transforms(config.preprocessing, spatial_dims, dicom_options(config), ensure_plain=False)
    processed = [base({"image": item["image"], "label": item["label"]})["image"] for item in items]
    augmentation = [build_augmentation(spec, tuple(processed[0].shape[1:])) for spec in config.augmentation.transforms]
    columns = [("as read", raw), ("preprocessed", processed)]
    if augmentation:
        augment = Compose(augmentation).set_random_state(seed=seed)
        columns.append(("augmented", [augment({"image": image.clone()})["image"] for image in processed]))
    figure = new_figure(2.6 * len(columns), 2.4 * len(items), layout="constrained")
    axes = figure.subplots(len(items), len(columns), squeeze=False)
    for row, item in enumerate(items):
        label = int(np.asarray(item["label"]).reshape(-1)[0])
        for column, (title, images) in enumerate(columns):
            axis = axes[row, column]
            view = display_image(images[row])
            axis.imshow(normalised(view) if view.ndim == 3 else view, cmap=None if view.ndim == 3 else "gray")
            axis.set_xticks([])
            axis.set_yticks([])
            low, high = float(np.asarray(images[row]).min()), float(np.asarray(images[row]).max())
            axis.set_title(f"{title}\n[{low:.3g}, {high:.3g}]", fontsize=8)
            if column == 0:
                axis.set_ylabel(f"#{row} {source.class_names[label]}", fontsize=8)
    return save_figure(figure, out, dpi=90)
