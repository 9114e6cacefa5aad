"""Transforms: the deterministic preprocessing shared by training, evaluation and export."""

from pipeline.transforms.preprocessing import instantiate, preprocessing_steps, preprocessing_transforms

__all__ = ["instantiate", "preprocessing_steps", "preprocessing_transforms"]
