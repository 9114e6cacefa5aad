"""The one path from an item to the network's input, for every consumer.

Training, evaluation, preview, ``medvp predict``, saliency and medvp bundles all build their transform with
:func:`item_transforms`: :class:`~pipeline.data.readers.ReadImaged` (a file or DICOM series folder to a
MetaTensor with its affine; arrays pass through), the configured deterministic preprocessing
(:func:`pipeline.transforms.preprocessing_steps`), and a geometry check that refuses an item the preprocessing
turned into (mostly) padding.

Axis convention (one for every source, see ``docs/data.md``): MONAI's, ``(C, x, y[, z])`` with x the column
index. MedMNIST arrays are brought into it when they are read. Runs written before this convention was recorded
(``train_summary.json`` without ``axis_order``) that trained on MedMNIST saw numpy ``(C, row, column)`` arrays;
:func:`legacy_numpy_axes` tells them apart and :class:`ReverseSpatialAxesd` gives their networks what they saw.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose, MapTransform

from pipeline.data.dicom import DEFAULT_DICOM, DicomOptions
from pipeline.errors import DataError
from pipeline.transforms.preprocessing import PreprocessingSettings, preprocessing_steps

__all__ = ["AXIS_ORDER", "legacy_numpy_axes", "ReverseSpatialAxesd", "CheckGeometryd", "item_transforms",
           "item_transform_defs",
           "MIN_CONTENT_FRACTION"]

#: recorded in ``train_summary.json`` (and medvp bundles) by runs that use MONAI's axis order for every source.
AXIS_ORDER = "monai"
#: a preprocessed item whose content fills less than this share of the network's input is refused.
MIN_CONTENT_FRACTION = 0.1


def legacy_numpy_axes(recorded_axis_order: str | None, medmnist_source: bool) -> bool:
    """True for a model trained before the axis convention was recorded on MedMNIST arrays (numpy order)."""
    return recorded_axis_order is None and medmnist_source


class ReverseSpatialAxesd(MapTransform):
    """Compatibility: reverse the spatial axes of ``(C, *spatial)`` images (MONAI order <-> numpy order).

    Only for models trained before the axis convention was recorded (see :func:`legacy_numpy_axes`). Their
    predict read 2D files in numpy (row, column) order and 3D files (NIfTI) in stored order, so a 3D image read
    from a file is left as it is.
    """

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            image = result[key]
            from_file = "filename_or_obj" in (getattr(image, "meta", None) or {})
            if from_file and image.ndim == 4:
                continue
            spatial = list(range(1, image.ndim))
            order = [0, *spatial[::-1]]
            result[key] = image.permute(*order) if isinstance(image, torch.Tensor) else np.transpose(image, order)
        return result


def _name(image: object) -> str:
    meta = getattr(image, "meta", None) or {}
    return str(meta.get("filename_or_obj", "an item"))


class CheckGeometryd(MapTransform):
    """Refuse an image whose preprocessing left an empty or one-voxel axis, or content that fills less than
    ``min_fraction`` of the padded ``spatial_size`` (the network would predict on padding).

    Placed after the aspect-preserving resize and before the padding; the error names the file and the shapes.
    """

    def __init__(self, keys="image", spatial_size: tuple[int, ...] | None = None,
                 min_fraction: float = MIN_CONTENT_FRACTION) -> None:
        super().__init__(keys)
        self.spatial_size = tuple(spatial_size) if spatial_size is not None else None
        self.min_fraction = min_fraction

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            shape = tuple(int(size) for size in result[key].shape[1:])
            if min(shape, default=0) <= 1:
                raise DataError(f"{_name(result[key])}: after preprocessing the image is {list(shape)} voxels: an "
                                "empty or one-voxel axis (a thin volume resized to a cube?); set "
                                "preprocessing.spacing or a spatial_size that fits the volume")
            if self.spatial_size is not None:
                fraction = math.prod(min(a, b) for a, b in zip(shape, self.spatial_size, strict=True)) / math.prod(
                    self.spatial_size)
                if fraction < self.min_fraction:
                    raise DataError(f"{_name(result[key])}: after resizing the image is {list(shape)} inside a "
                                    f"{list(self.spatial_size)} input: {fraction:.0%} image, the rest padding; set "
                                    "preprocessing.spacing or a spatial_size that fits the volume")
        return result


def item_transform_defs(preprocessing: PreprocessingSettings, spatial_dims: int,
                        dicom: DicomOptions = DEFAULT_DICOM, legacy_axes: bool = False,
                        ensure_plain: bool = True) -> list[dict]:
    """The one item path as MONAI component definitions (``{"_target_": ..., ...}``), in order.

    :func:`item_transforms` instantiates exactly these, and a medvp bundle's ``train.yaml`` writes them as its
    ``preprocessing`` components, so the bundle reads and preprocesses as medvp's training does. Arguments as for
    :func:`item_transforms`.
    """
    steps = preprocessing_steps(preprocessing, spatial_dims)
    defs: list[dict] = [{"_target_": "pipeline.data.readers.ReadImaged", "keys": "image",
                         "dicom": {"_target_": "pipeline.data.dicom.DicomOptions", **dataclasses.asdict(dicom)},
                         "spatial_dims": spatial_dims}]
    if legacy_axes:
        defs.append({"_target_": "pipeline.data.loading.ReverseSpatialAxesd", "keys": "image"})
    pad_at = next((i for i, step in enumerate(steps) if step["_target_"] == "ResizeWithPadOrCropd"), len(steps))
    size = list(preprocessing.spatial_size) if preprocessing.spatial_size is not None else None
    defs += [*steps[:pad_at], {"_target_": "pipeline.data.loading.CheckGeometryd", "keys": "image",
                               "spatial_size": size}, *steps[pad_at:]]
    if ensure_plain:
        defs.append({"_target_": "EnsureTyped", "keys": ["image", "label"], "track_meta": False,
                     "allow_missing_keys": True})
    return defs


def item_transforms(preprocessing: PreprocessingSettings, spatial_dims: int,
                    dicom: DicomOptions = DEFAULT_DICOM, legacy_axes: bool = False,
                    ensure_plain: bool = True) -> Compose:
    """Read (paths; arrays pass through) and preprocess ``{"image": ...}`` items: the one item path.

    Args:
        preprocessing: the validated ``preprocessing`` section.
        spatial_dims: 2 or 3; a read image with another number of spatial axes is an error naming the file.
        dicom: how strict DICOM series geometry is.
        legacy_axes: the model predates the recorded axis order and trained on numpy-ordered arrays.
        ensure_plain: end with plain float32 tensors (no metadata), as the networks take them.
    """
    defs = item_transform_defs(preprocessing, spatial_dims, dicom, legacy_axes, ensure_plain)
    # MONAI's config parser instantiates the definitions, as ``monai.bundle run`` does for a bundle's train.yaml
    return Compose(ConfigParser({"transforms": defs}).get_parsed_content("transforms"))
