import matplotlib
import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc
from PIL import Image

from pipeline.evaluation import metrics_with_intervals
from pipeline.evaluation.figures import roc_curve, write_evaluation_figures
from pipeline.evaluation.metrics import calibration_bins, expected_calibration_error
from pipeline.evaluation.plots import curves_figure
from pipeline.evaluation.summary import metrics_table


def test_roc_curve_area_is_monais_auc_with_ties():
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 2, 200)
    scores = np.round(np.clip(targets * 0.3 + rng.random(200) * 0.7, 0, 1), 1)  # many tied scores
    fpr, tpr = roc_curve(scores, targets)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(float(compute_roc_auc(torch.tensor(scores), torch.tensor(targets))), abs=1e-9)


def test_calibration_bins_give_the_ece_by_hand():
    # bin [0.8, 0.867): 3 items at 0.8, 2 correct; bin [0.933, 1]: 1 item at 1.0, correct
    confidence, correct = np.array([0.8, 0.8, 0.8, 1.0]), np.array([1.0, 1.0, 0.0, 1.0])
    bins = calibration_bins(confidence, correct, 15)
    assert bins["count"].sum() == 4 and bins["count"][12] == 3 and bins["count"][14] == 1
    assert bins["accuracy"][12] == pytest.approx(2 / 3) and np.isnan(bins["accuracy"][0])
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.75 * abs(0.8 - 2 / 3))


def test_confusion_matrix_intervals_are_whole_items_and_in_the_table():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 301)
    probabilities = np.clip(labels * 0.4 + rng.random(301) * 0.6, 0, 1)
    metrics = metrics_with_intervals(probabilities, labels, "binary", 2, bootstrap_samples=50, seed=2)
    cells = metrics["confusion_matrix"]
    for bound in ("low", "high"):
        assert all(isinstance(value, int) for row in cells[bound] for value in row)
    assert np.all(np.array(cells["low"]) <= np.array(cells["value"]))
    report = {"split": "test", "items": 301, "checkpoint": "best", "confidence": 0.95, "bootstrap_samples": 50,
              "class_names": ["normal", "pneumonia"], "metrics": metrics}
    table = "\n".join(metrics_table(report))
    for label in ("accuracy", "AUC", "sensitivity", "specificity", "ECE", "NLL", "macro F1", "balanced accuracy"):
        assert label in table
    low, high = cells["low"][1][1], cells["high"][1][1]
    assert f"{cells['value'][1][1]} [{low}, {high}]" in table


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])  # binary: the demo run in tests/cli
def test_evaluation_figures_for_every_task_without_pyplot_state(task, tmp_path):
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    rng = np.random.default_rng(1)
    if task == "multiclass":
        labels, names = rng.integers(0, 3, 60), ["a", "b", "c"]
        probabilities = rng.dirichlet(np.ones(3), 60)
    else:
        labels, probabilities, names = rng.integers(0, 2, (60, 5)), rng.random((60, 5)), list("vwxyz")
    written = write_evaluation_figures(tmp_path, "val", probabilities, labels, task, names, "run, val")
    assert [path.name for path in written] == ["roc_val.png", "calibration_val.png", "confusion_val.png"]
    for path in written:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 300
    assert plt.get_fignums() == [] and matplotlib.get_backend() == backend  # no pyplot figure, no backend switch


def _record(epoch, val_auc):
    return {"epoch": epoch, "lr": 1e-3, "train_loss": 0.5, "train_classification": 0.4, "train_variance": 2.0,
            "train_accuracy": 0.8, "val_loss": 0.45, "val_accuracy": 0.78, "val_auc": val_auc, "epoch_seconds": 1.0}


def test_curves_show_both_terms_lr_best_epoch_with_integer_ticks():
    figure = curves_figure([_record(1, 0.8), _record(2, 0.9), _record(3, 0.85)])
    labels = [line.get_label() for axis in figure.axes for line in axis.lines]
    for expected in ("train classification term", "train variance term (unweighted)",
                     "learning rate (during the epoch)", "validation classification loss", "validation AUC",
                     "best validation AUC (epoch 2)"):
        assert expected in labels
    for axis in figure.axes:
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick <= axis.get_xlim()[1]]
        assert ticks == [1, 2, 3]


def test_one_epoch_curves_are_lines_not_dots():
    figure = curves_figure([_record(1, 0.8)])
    curves = [line for axis in figure.axes for line in axis.lines if not line.get_label().startswith(("best", "_"))]
    assert curves and all(len(set(line.get_xdata())) > 1 for line in curves)
