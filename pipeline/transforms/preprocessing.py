"""Deterministic, modality-aware preprocessing built from MONAI dictionary transforms.

Order: orientation and spacing (3D images with an affine), the intensity preset, an optional foreground crop,
then an aspect-preserving resize that pads (never stretches) to ``spatial_size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureTyped,
    NormalizeIntensityd,
    Orientationd,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config.schema import PreprocessingConfig

__all__ = ["preprocessing_transforms", "CT_WINDOWS", "intensity_transforms"]

#: preset -> (window level, window width) in Hounsfield units
CT_WINDOWS = {
    "ct_lung": (-600.0, 1500.0),
    "ct_mediastinum": (50.0, 350.0),
    "ct_brain": (40.0, 80.0),
    "ct_bone": (300.0, 2000.0),
}


def _hu_window(level: float, width: float, config: PreprocessingConfig) -> ScaleIntensityRanged:
    return ScaleIntensityRanged(keys="image", a_min=level - width / 2, a_max=level + width / 2,
                                b_min=config.target_range[0], b_max=config.target_range[1], clip=True,
                                dtype=torch.float32)


def intensity_transforms(config: PreprocessingConfig) -> list:
    """The intensity normalization of the configured preset."""
    preset, low, high = config.preset, config.target_range[0], config.target_range[1]
    if preset == "range":
        return [ScaleIntensityRanged(keys="image", a_min=config.source_range[0], a_max=config.source_range[1],
                                     b_min=low, b_max=high, clip=True, dtype=torch.float32)]
    if preset in CT_WINDOWS:
        return [_hu_window(*CT_WINDOWS[preset], config)]
    if preset == "ct_window":
        return [_hu_window(config.window[0], config.window[1], config)]
    if preset in ("mr_percentile", "radiograph"):
        lower, upper = config.percentiles if preset == "mr_percentile" else (0.5, 99.5)
        return [ScaleIntensityRangePercentilesd(keys="image", lower=lower, upper=upper, b_min=low, b_max=high,
                                                clip=True, dtype=torch.float32)]
    if preset == "mr_zscore":
        return [NormalizeIntensityd(keys="image", nonzero=True, dtype=torch.float32)]
    if preset == "rgb":
        return [ScaleIntensityRanged(keys="image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True,
                                     dtype=torch.float32),
                NormalizeIntensityd(keys="image", channel_wise=True, dtype=torch.float32)]
    raise ConfigError(f"preprocessing.preset = {preset!r}: unknown preset")


def _pad_value(config: PreprocessingConfig) -> float:
    return 0.0 if config.preset in ("mr_zscore", "rgb") else float(config.target_range[0])


def preprocessing_transforms(config: PreprocessingConfig, spatial_dims: int, ensure_plain: bool = True) -> Compose:
    """Deterministic preprocessing for images with ``spatial_dims`` spatial axes, channel first.

    Args:
        config: the validated ``preprocessing`` section.
        spatial_dims: 2 or 3.
        ensure_plain: end with plain float32 tensors (no metadata tracking), as training wants them.

    Raises:
        ConfigError: when ``spatial_size`` or ``spacing`` does not have one entry per spatial axis.
    """
    for key in ("spatial_size", "spacing"):
        value = getattr(config, key)
        if value is not None and len(value) != spatial_dims:
            raise ConfigError(f"preprocessing.{key} = {list(value)}: expected {spatial_dims} values for "
                              f"{spatial_dims}D images")
    transforms: list = []
    if config.orientation is not None and spatial_dims == 3:
        transforms.append(Orientationd(keys="image", axcodes=config.orientation))
    if config.spacing is not None:
        transforms.append(Spacingd(keys="image", pixdim=config.spacing, mode="bilinear"))
    transforms += intensity_transforms(config)
    if config.resize_mode == "crop_foreground":
        transforms.append(CropForegroundd(keys="image", source_key="image",
                                          select_fn=lambda image: image > image.min(), allow_smaller=True))
    if config.spatial_size is not None:
        mode = config.interpolation
        if mode == "bilinear" and spatial_dims == 3:
            mode = "trilinear"
        transforms += [
            Resized(keys="image", spatial_size=max(config.spatial_size), size_mode="longest", mode=mode),
            ResizeWithPadOrCropd(keys="image", spatial_size=config.spatial_size, value=_pad_value(config)),
        ]
    if ensure_plain:
        transforms.append(EnsureTyped(keys=("image", "label"), track_meta=False))
    return Compose(transforms)
