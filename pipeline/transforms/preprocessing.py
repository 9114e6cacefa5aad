"""Deterministic preprocessing, built from MONAI dictionary transforms."""

from __future__ import annotations

import torch
from monai.transforms import Compose, EnsureTyped, Resized, ScaleIntensityRanged

from pipeline.config.schema import PreprocessingConfig
from pipeline.errors import ConfigError

__all__ = ["preprocessing_transforms"]


def preprocessing_transforms(config: PreprocessingConfig, spatial_dims: int) -> Compose:
    """Map intensities from ``source_range`` to ``target_range`` (clipped) and, if asked, resize.

    Images arrive channel-first; the output holds plain float32 tensors (no metadata tracking,
    which costs time and is not needed for classification of arrays).
    """
    transforms = [
        ScaleIntensityRanged(keys="image", a_min=config.source_range[0], a_max=config.source_range[1],
                             b_min=config.target_range[0], b_max=config.target_range[1], clip=True,
                             dtype=torch.float32),
    ]
    if config.spatial_size is not None:
        if len(config.spatial_size) != spatial_dims:
            raise ConfigError(f"preprocessing.spatial_size = {config.spatial_size}: expected {spatial_dims} sizes "
                              f"for {spatial_dims}D images")
        transforms.append(Resized(keys="image", spatial_size=config.spatial_size, mode="nearest"))
    transforms.append(EnsureTyped(keys=("image", "label"), track_meta=False))
    return Compose(transforms)
