"""Evaluation: metrics with bootstrap intervals, calibration, and plots."""

from pipeline.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    metrics_with_intervals,
    predicted_labels,
)
from pipeline.evaluation.plots import plot_curves

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "metrics_with_intervals",
    "predicted_labels",
    "plot_curves",
]
