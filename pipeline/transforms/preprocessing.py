"""Deterministic, modality-aware preprocessing built from MONAI dictionary transforms.

Order: orientation and spacing (3D images with an affine), an optional foreground crop, the intensity preset,
then an aspect-preserving resize that pads (never stretches) to ``spatial_size``. The steps are kept as MONAI
component definitions so that exported bundles run exactly the same preprocessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import monai.transforms
from monai.transforms import Compose, EnsureTyped

from pipeline.errors import ConfigError

__all__ = ["PreprocessingSettings", "preprocessing_transforms", "preprocessing_steps", "instantiate", "CT_WINDOWS",
           "intensity_steps"]



class PreprocessingSettings(Protocol):
    """What preprocessing reads (the configuration's validated ``preprocessing`` section has it)."""

    preset: str
    source_range: Sequence[float]
    target_range: Sequence[float]
    window: Sequence[float] | None
    percentiles: Sequence[float]
    orientation: str | None
    spacing: Sequence[float] | None
    spatial_size: Sequence[int] | None
    resize_mode: str
    interpolation: str


#: preset -> (window level, window width) in Hounsfield units
CT_WINDOWS = {
    "ct_lung": (-600.0, 1500.0),
    "ct_mediastinum": (50.0, 350.0),
    "ct_brain": (40.0, 80.0),
    "ct_bone": (300.0, 2000.0),
}


def _scale(a_min: float, a_max: float, b_min: float, b_max: float) -> dict:
    return {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": a_min, "a_max": a_max, "b_min": b_min,
            "b_max": b_max, "clip": True}


def intensity_steps(config: PreprocessingSettings) -> list[dict]:
    """The intensity normalization of the configured preset, as MONAI component definitions."""
    preset, low, high = config.preset, config.target_range[0], config.target_range[1]
    if preset == "range":
        return [_scale(config.source_range[0], config.source_range[1], low, high)]
    if preset in CT_WINDOWS or preset == "ct_window":
        level, width = CT_WINDOWS[preset] if preset in CT_WINDOWS else config.window
        return [_scale(level - width / 2, level + width / 2, low, high)]
    if preset in ("mr_percentile", "radiograph"):
        lower, upper = config.percentiles if preset == "mr_percentile" else (0.5, 99.5)
        return [{"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": lower, "upper": upper,
                 "b_min": low, "b_max": high, "clip": True}]
    if preset == "mr_zscore":
        return [{"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True}]
    if preset == "rgb":
        return [_scale(0.0, 255.0, 0.0, 1.0), {"_target_": "NormalizeIntensityd", "keys": "image",
                                               "channel_wise": True}]
    raise ConfigError(f"preprocessing.preset = {preset!r}: unknown preset")


def _pad_value(config: PreprocessingSettings) -> float:
    return 0.0 if config.preset in ("mr_zscore", "rgb") else float(config.target_range[0])


def preprocessing_steps(config: PreprocessingSettings, spatial_dims: int) -> list[dict]:
    """Deterministic preprocessing as MONAI component definitions (``{"_target_": name, **arguments}``), the
    one description both training and exported bundles use.

    Raises:
        ConfigError: when ``spatial_size`` or ``spacing`` does not have one entry per spatial axis.
    """
    for key in ("spatial_size", "spacing"):
        value = getattr(config, key)
        if value is not None and len(value) != spatial_dims:
            raise ConfigError(f"preprocessing.{key} = {list(value)}: expected {spatial_dims} values for "
                              f"{spatial_dims}D images")
    steps: list[dict] = []
    if config.orientation is not None and spatial_dims == 3:
        steps.append({"_target_": "Orientationd", "keys": "image", "axcodes": config.orientation})
    if config.spacing is not None:
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(config.spacing), "mode": "bilinear"})
    if config.resize_mode == "crop_foreground":  # on stored intensities: air, background and padding are <= 0
        steps.append({"_target_": "CropForegroundd", "keys": "image", "source_key": "image", "allow_smaller": True})
    steps += intensity_steps(config)
    if config.spatial_size is not None:
        mode = "trilinear" if config.interpolation == "bilinear" and spatial_dims == 3 else config.interpolation
        steps += [
            {"_target_": "Resized", "keys": "image", "spatial_size": max(config.spatial_size), "size_mode": "longest",
             "mode": mode},
            {"_target_": "ResizeWithPadOrCropd", "keys": "image", "spatial_size": list(config.spatial_size),
             "value": _pad_value(config)},
        ]
    return steps


def instantiate(step: dict) -> object:
    """Build one MONAI transform from its component definition."""
    arguments = {key: value for key, value in step.items() if key != "_target_"}
    return getattr(monai.transforms, step["_target_"])(**arguments)


def preprocessing_transforms(config: PreprocessingSettings, spatial_dims: int, ensure_plain: bool = True) -> Compose:
    """Deterministic preprocessing for channel-first images with ``spatial_dims`` spatial axes.

    Args:
        config: the validated ``preprocessing`` section.
        spatial_dims: 2 or 3.
        ensure_plain: end with plain float32 tensors (no metadata tracking), as training wants them.
    """
    transforms = [instantiate(step) for step in preprocessing_steps(config, spatial_dims)]
    if ensure_plain:
        transforms.append(EnsureTyped(keys=("image", "label"), track_meta=False, allow_missing_keys=True))
    return Compose(transforms)
