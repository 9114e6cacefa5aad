"""Evaluation: metrics with bootstrap intervals, calibration, and figures."""

from pipeline.evaluation.figures import evaluation_figure_names, write_evaluation_figures
from pipeline.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    metrics_with_intervals,
    predicted_labels,
)
from pipeline.evaluation.plots import new_figure, plot_curves, save_figure

__all__ = [
    "classification_metrics",
    "evaluation_figure_names",
    "expected_calibration_error",
    "metrics_with_intervals",
    "new_figure",
    "plot_curves",
    "predicted_labels",
    "save_figure",
    "write_evaluation_figures",
]
