"""The dataset check at load time: what every verb (train, evaluate, preview, tune, benchmark) refuses to train or
evaluate on, in one place.

- :func:`check_arrays`: the raw arrays of an array source (MedMNIST ``.npz``): every split non-empty, finite pixel
  values, labels that are class indices (integers >= 0) or multi-label 0/1, images within the pixel cap;
- :func:`check_classes`: every class present in the training split (an error for binary and multi-class tasks), a
  warning for a class missing from validation or test (its AUC is undefined there);
- :class:`CheckImaged`: each file item as read, before preprocessing: finite values, within the pixel cap (and
  PIL's decompression-bomb limit, checked from the header before decoding);
- :class:`CheckShaped`: each item after preprocessing has the channels and size of the first training item, or the
  message names the ``preprocessing`` setting that makes them agree.

Each failure is a one-line :class:`~pipeline.errors.DataError` naming the file (or the npz key and index).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms import MapTransform

from pipeline.errors import DataError
from pipeline.kinds import Split, Task

__all__ = ["DEFAULT_MAX_PIXELS", "check_arrays", "check_classes", "CheckImaged", "CheckShaped"]

logger = logging.getLogger(__name__)

#: the default pixel (voxel) cap per image and channel: 2**28, 1 GiB of float32
DEFAULT_MAX_PIXELS = 2**28
_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _first_non_finite(images: np.ndarray) -> tuple[int, str] | None:
    """The index of the first item holding NaN or infinity, and which; None when all are finite."""
    if images.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if not bad.any():
        return None
    index = int(np.argmax(bad))
    return index, "NaN" if np.isnan(images[index]).any() else "infinite"


def _check_labels(labels: np.ndarray, key: str) -> None:
    """Labels ``(N, L)``: one column of class indices, or several of multi-label 0/1."""
    if labels.dtype.kind not in "biuf":
        raise DataError(f"{key}: labels of type {labels.dtype}; expected integer class indices")
    values = labels.astype(np.float64)
    if labels.shape[1] > 1:
        bad = ~np.isin(values, (0.0, 1.0)).all(axis=1)
        expected = "multi-label targets 0 or 1"
    else:
        bad = ~(np.isfinite(values) & (values >= 0) & (values == np.round(values))).reshape(-1)
        expected = "a class index (an integer >= 0)"
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(f"{key}[{index}]: label {labels[index].tolist()}; expected {expected}")


def check_arrays(splits: Mapping[str, object], source: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Check the split arrays of an array source (``SplitItems`` with ``images (N, C, *spatial)``, ``labels (N, L)``).

    Raises:
        DataError: ``source: <split>_images[<index>]: ...`` for the first bad item, or the split at fault.
    """
    for split, items in splits.items():
        images, labels = items.images, items.labels
        if len(images) == 0:
            raise DataError(f"{source}: the {split} split is empty ({split}_images holds no items)")
        pixels = math.prod(images.shape[1:])
        if pixels > max_pixels:
            raise DataError(f"{source}: {split}_images: items of shape {list(images.shape[1:])} ({pixels} values) "
                            f"exceed the cap of {max_pixels} (data.max_pixels)")
        bad = _first_non_finite(images)
        if bad is not None:
            raise DataError(f"{source}: {split}_images[{bad[0]}]: {bad[1]} pixel values; expected finite numbers")
        _check_labels(labels, f"{source}: {split}_labels")


def _counts(labels: Sequence, num_classes: int, task: str) -> np.ndarray:
    """Items per class (positives per class for multi-label)."""
    if not len(labels):
        return np.zeros(num_classes, dtype=int)
    stacked = np.stack([np.asarray(label, dtype=np.float64).reshape(-1) for label in labels])
    if task == Task.MULTILABEL:
        return (stacked > 0.5).sum(axis=0)
    return np.bincount(stacked[:, 0].astype(np.int64), minlength=num_classes)[:num_classes]


def check_classes(labels_by_split: Mapping[str, Sequence], class_names: Sequence[str], task: str,
                  source: str) -> list[str]:
    """Every split non-empty, every class in the training split; returns warnings for classes missing elsewhere.

    Args:
        labels_by_split: split -> encoded labels of its items (see ``pipeline.data.encode_labels``).

    Raises:
        DataError: an empty split, or (binary and multi-class tasks) a class with no training item.
    """
    notes = []
    for split, labels in labels_by_split.items():
        if not len(labels):
            raise DataError(f"{source}: the {split} split has no items")
        missing = [name for name, count in zip(class_names, _counts(labels, len(class_names), task), strict=True)
                   if count == 0]
        if not missing:
            continue
        what = "no positive item" if task == Task.MULTILABEL else "no item"
        if split == Split.TRAIN and task != Task.MULTILABEL:
            raise DataError(f"{source}: class(es) {missing} have {what} in the training split; a classifier cannot "
                            "learn a class it never sees (check the labels or data.class_names)")
        note = (f"{source}: class(es) {missing} have {what} in the {split} split"
                + ("; their AUC is undefined there" if split != Split.TRAIN else ""))
        logger.warning(note)
        notes.append(note)
    return notes


class CheckImaged(MapTransform):
    """Check a file item as read: finite values, at most ``max_pixels`` values per channel.

    Place it right after the reader, and once before it: given a path, it checks a PNG/JPEG header against the cap
    and PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) before anything is decoded.
    """

    def __init__(self, keys: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(keys)
        self.max_pixels = max_pixels

    def check_file(self, path: Path) -> None:
        """Refuse an image file whose header declares more pixels than the caps, without decoding it."""
        if path.suffix.lower() not in _PIL_SUFFIXES or not path.is_file():
            return
        from PIL import Image

        limit = min(self.max_pixels, Image.MAX_IMAGE_PIXELS or self.max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    width, height = image.size
        except Image.DecompressionBombError:  # past twice the limit, PIL refuses to open it at all
            raise DataError(f"{path}: the image exceeds PIL's decompression-bomb limit of {limit} pixels; refused "
                            "before decoding") from None
        except Exception:  # an unreadable file is the reader's to report
            return
        if width * height > limit:
            which = "PIL's decompression-bomb limit" if limit != self.max_pixels else "data.max_pixels"
            raise DataError(f"{path}: a {width}x{height} image ({width * height} pixels) exceeds {which} of {limit} "
                            "pixels; refused before decoding")

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            image = result[key]
            if isinstance(image, (str, Path)):  # before the reader: the header only
                self.check_file(Path(image))
                continue
            name = getattr(image, "meta", {}).get("filename_or_obj", key)
            tensor = torch.as_tensor(image)
            if tensor.shape[0] and tensor[0].numel() > self.max_pixels:
                raise DataError(f"{name}: an image of shape {list(tensor.shape[1:])} ({tensor[0].numel()} values) "
                                f"exceeds data.max_pixels = {self.max_pixels}")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                what = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
                raise DataError(f"{name}: {what} pixel values; expected finite numbers")
        return result


class CheckShaped(MapTransform):
    """Check a preprocessed item has ``channels`` channels and the spatial size ``spatial_shape`` (those of the
    first training item: what the network is built for and what a batch stacks)."""

    def __init__(self, channels: int, spatial_shape: Sequence[int], reference: str, keys: str = "image") -> None:
        super().__init__(keys)
        self.channels, self.spatial_shape, self.reference = channels, tuple(spatial_shape), reference

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            image = result[key]
            name = getattr(image, "meta", {}).get("filename_or_obj") or result.get("name", key)
            shape = tuple(image.shape)
            if shape[0] != self.channels:
                raise DataError(f"{name}: {shape[0]} channel(s) but {self.reference} has {self.channels}; a dataset "
                                "mixes grey and colour images: convert them to one kind")
            if shape[1:] != self.spatial_shape:
                raise DataError(f"{name}: size {list(shape[1:])} after preprocessing but {self.reference} has "
                                f"{list(self.spatial_shape)}; set preprocessing.spatial_size: "
                                f"{list(self.spatial_shape)} to bring every item to one size")
        return result
