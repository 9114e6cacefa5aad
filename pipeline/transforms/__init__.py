"""Transforms: the deterministic preprocessing shared by training, evaluation and export."""

from pipeline.transforms.preprocessing import preprocessing_transforms

__all__ = ["preprocessing_transforms"]
