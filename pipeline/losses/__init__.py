"""Losses: the variance-penalized loss and the feature tap that feeds it (torch only)."""

from pipeline.losses.distributed import VARIANCE_SCOPES, gather_features
from pipeline.losses.feature_tap import TAP_CHOICES, FeatureTap, TapPoint, resolve_tap_points
from pipeline.losses.variance_penalized import (
    TASKS,
    LayerVariance,
    VariancePenalizedLoss,
    layer_variance,
    sample_feature_columns,
    variance_penalty,
)

__all__ = [
    "FeatureTap",
    "TapPoint",
    "resolve_tap_points",
    "TAP_CHOICES",
    "VariancePenalizedLoss",
    "variance_penalty",
    "layer_variance",
    "LayerVariance",
    "sample_feature_columns",
    "TASKS",
    "VARIANCE_SCOPES",
    "gather_features",
]
