"""MedMNIST ``.npz`` files (official train/val/test splits; 2D and 3D; grey and RGB; 28 to 224 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.items import SPLITS, SplitItems
from pipeline.data.npz_guard import NPZ_READ_ERRORS, check_npz_headers
from pipeline.errors import DataError

__all__ = ["read_medmnist"]


def _channels_first(images: np.ndarray, spatial_dims: int, path: Path) -> np.ndarray:
    """(N, *spatial) or (N, *spatial, C) -> (N, C, *spatial)."""
    if images.ndim == spatial_dims + 1:
        return images[:, None]
    if images.ndim == spatial_dims + 2:
        return np.moveaxis(images, -1, 1)
    raise DataError(f"{path}: images of shape {images.shape} do not fit spatial_dims={spatial_dims}")


def _guess_spatial_dims(images: np.ndarray, path: Path) -> int:
    if images.ndim == 3:
        return 2
    if images.ndim == 4:
        # (N, H, W, 3) is an RGB 2D set; (N, D, H, W) a grey 3D one. MedMNIST names 3D sets "...3d".
        return 3 if "3d" in path.name.lower() or images.shape[-1] not in (1, 3) else 2
    if images.ndim == 5:
        return 3
    raise DataError(f"{path}: cannot tell the spatial dimensions of images shaped {images.shape}; "
                    "set data.spatial_dims")


def read_medmnist(path: Path, spatial_dims: int | str = "auto") -> dict[str, SplitItems]:
    """Read the three official splits of a MedMNIST file.

    Returns:
        split name -> images ``(N, C, *spatial)`` (uint8, as stored) and labels ``(N, L)``.

    Raises:
        DataError: when the file is missing, not an ``.npz``, or lacks a split's arrays.
    """
    if not path.is_file():
        raise DataError(f"data file {path} not found (data.path)")
    expected = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
    check_npz_headers(path, expected)
    try:
        archive = np.load(path, allow_pickle=False)
    except NPZ_READ_ERRORS as error:
        raise DataError(f"{path}: not a readable MedMNIST .npz file ({error})") from None
    with archive:
        missing = [key for key in expected if key not in archive.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing}; a MedMNIST file holds {expected}")
        try:
            arrays = {key: archive[key] for key in expected}
        except NPZ_READ_ERRORS as error:
            raise DataError(f"{path}: corrupt array data ({error})") from None
    for key, array in arrays.items():
        minimum_dims = 1 if key.endswith("labels") else 3
        if array.ndim < minimum_dims or array.dtype.kind not in "biuf":
            raise DataError(f"{path}: {key} is a {array.ndim}-d {array.dtype} array; expected numbers with at least "
                            f"{minimum_dims} dimension(s)")
    dims = _guess_spatial_dims(arrays["train_images"], path) if spatial_dims == "auto" else int(spatial_dims)
    splits = {}
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        labels = labels.reshape(len(labels), -1 if len(labels) else 1)  # an empty split: refused by check_arrays
        if len(images) != len(labels):
            raise DataError(f"{path}: {split} has {len(images)} images but {len(labels)} labels")
        splits[split] = SplitItems(images=_channels_first(images, dims, path), labels=labels)
    return splits
