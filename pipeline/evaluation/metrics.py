"""Classification metrics of a split's predictions, each with a bootstrap confidence interval."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from pipeline.kinds import Task

__all__ = ["classification_metrics", "metrics_with_intervals", "expected_calibration_error", "calibration_bins",
           "top_label_confidence", "confusion_matrix", "predicted_labels"]

_EPS = 1e-7
#: metrics that count items: their intervals are whole numbers
_COUNT_METRICS = ("confusion_matrix",)


def predicted_labels(probabilities: np.ndarray, task: str) -> np.ndarray:
    """Binary: (N,) positive-class probability >= 0.5; multiclass: argmax; multilabel: each column >= 0.5."""
    if task == Task.MULTICLASS:
        return probabilities.argmax(axis=1)
    return (probabilities >= 0.5).astype(np.int64)


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, num_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins over [0, 1]: per bin the item ``count``, the mean ``confidence`` and the
    ``accuracy`` (NaN for an empty bin). The reliability diagram draws them; the ECE is their weighted gap."""
    bins = np.minimum((confidence * num_bins).astype(np.int64), num_bins - 1)
    count = np.bincount(bins, minlength=num_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=num_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=num_bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, num_bins: int = 15) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    bins = calibration_bins(confidence, correct, num_bins)
    weights = bins["count"] / max(len(confidence), 1)
    return float(np.nansum(weights * np.abs(bins["confidence"] - bins["accuracy"])))


def top_label_confidence(probabilities: np.ndarray, labels: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every decision, as the ECE counts them: the predicted class's probability for
    binary and multiclass, each label's decision for multilabel (flattened)."""
    predictions = predicted_labels(probabilities, task)
    if task == Task.MULTICLASS:
        confidence = probabilities.max(axis=1)
    else:
        confidence = np.where(predictions == 1, probabilities, 1 - probabilities)
    return confidence.ravel().astype(np.float64), (predictions == labels).ravel().astype(np.float64)


def _auc(probabilities: np.ndarray, labels: np.ndarray, task: str, num_classes: int) -> float:
    if task == Task.MULTICLASS:
        targets = np.eye(num_classes, dtype=np.int64)[labels]
    else:
        targets = labels
    if task != Task.BINARY and targets.ndim == 2:
        present = (targets.min(axis=0) != targets.max(axis=0))
        if not present.any():
            return float("nan")
    elif labels.min() == labels.max():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(torch.as_tensor(probabilities), torch.as_tensor(targets), average="macro"))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows: truth, columns: prediction."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def _binary_counts_metrics(matrix: np.ndarray) -> dict[str, float]:
    """Per-class recall, precision and F1 from a confusion matrix (rows: truth, columns: prediction)."""
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, true_positive / support, np.nan)
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return {"recall": recall, "f1": f1}


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, task: str,
                           num_classes: int) -> dict[str, object]:
    """Point estimates for one set of predictions.

    Args:
        probabilities: binary ``(N,)`` positive-class probabilities; multiclass ``(N, C)`` (rows sum to 1);
            multilabel ``(N, C)``.
        labels: binary and multiclass ``(N,)`` class indices; multilabel ``(N, C)`` 0/1.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        num_classes: C (2 for binary).

    Returns:
        accuracy, auc, balanced_accuracy, macro_f1, nll, ece; binary adds sensitivity and specificity;
        binary and multiclass add ``confusion_matrix`` (rows: truth, columns: prediction).
    """
    labels = labels.astype(np.int64)
    predictions = predicted_labels(probabilities, task)
    clipped = np.clip(probabilities, _EPS, 1 - _EPS)
    result: dict[str, object] = {"accuracy": float((predictions == labels).mean()),
                                 "auc": _auc(probabilities, labels, task, num_classes)}
    if task == Task.MULTILABEL:
        nll = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)).mean()
        per_label = [_binary_counts_metrics(confusion_matrix(labels[:, c], predictions[:, c], 2))
                     for c in range(num_classes)]
        result["balanced_accuracy"] = float(np.nanmean([np.nanmean(m["recall"]) for m in per_label]))
        result["macro_f1"] = float(np.mean([m["f1"][1] for m in per_label]))
    else:
        if task == Task.BINARY:
            nll = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)).mean()
        else:
            nll = -np.log(clipped[np.arange(len(labels)), labels]).mean()
        matrix = confusion_matrix(labels, predictions, num_classes)
        per_class = _binary_counts_metrics(matrix)
        result["balanced_accuracy"] = float(np.nanmean(per_class["recall"]))
        result["macro_f1"] = float(np.mean(per_class["f1"]))
        if task == Task.BINARY:
            result["sensitivity"] = float(per_class["recall"][1])
            result["specificity"] = float(per_class["recall"][0])
        result["confusion_matrix"] = matrix.tolist()
    result["nll"] = float(nll)
    result["ece"] = expected_calibration_error(*top_label_confidence(probabilities, labels, task))
    return result


def metrics_with_intervals(probabilities: np.ndarray, labels: np.ndarray, task: str, num_classes: int,
                           bootstrap_samples: int = 1000, confidence: float = 0.95, seed: int = 0,
                           metric_fn: Callable[..., dict] = classification_metrics) -> dict[str, dict]:
    """Every metric as ``{"value", "low", "high"}``: the point estimate and a percentile bootstrap interval.

    Items are resampled with replacement ``bootstrap_samples`` times (seeded); resamples in which a metric is
    undefined (for example AUC with one class) are left out of that metric's interval. The confusion matrix's
    interval is given per cell, in whole items (each bound is a count some resample had).
    """
    point = metric_fn(probabilities, labels, task, num_classes)
    generator = np.random.default_rng(seed)
    samples: dict[str, list] = {name: [] for name in point}
    count = len(labels)
    for _ in range(bootstrap_samples):
        index = generator.integers(0, count, count)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resampled = metric_fn(probabilities[index], labels[index], task, num_classes)
        for name, value in resampled.items():
            samples[name].append(value)
    tail = (1 - confidence) / 2 * 100
    result = {}
    for name, value in point.items():
        if not samples[name]:
            result[name] = {"value": value, "low": None, "high": None}
            continue
        stacked = np.asarray(samples[name], dtype=float)
        counts = name in _COUNT_METRICS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # counts take an observed value (inverted CDF), not one interpolated between two resamples
            low, high = np.nanpercentile(stacked, [tail, 100 - tail], axis=0,
                                         method="inverted_cdf" if counts else "linear")
        result[name] = {"value": value, "low": _json_number(low, counts), "high": _json_number(high, counts)}
    return result


def _json_number(value: np.ndarray | float, counts: bool = False) -> object:
    array = np.asarray(value)
    if array.ndim == 0:
        return None if np.isnan(array) else float(array)
    return array.astype(np.int64).tolist() if counts else array.tolist()
