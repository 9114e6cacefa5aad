import numpy as np
import pytest

from pipeline.evaluation import classification_metrics, expected_calibration_error, metrics_with_intervals


def test_binary_metrics_by_hand():
    probabilities = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    result = classification_metrics(probabilities, labels, "binary", 2)
    # predictions 1 1 0 1 0 0: TP 2, FN 1, FP 1, TN 2
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["sensitivity"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["confusion_matrix"] == [[2, 1], [1, 2]]
    # 8 of the 9 positive/negative pairs are ranked correctly
    assert result["auc"] == pytest.approx(8 / 9)
    assert result["macro_f1"] == pytest.approx(2 / 3)
    expected_nll = -np.mean(np.log([0.9, 0.8, 0.3, 0.4, 0.8, 0.9]))
    assert result["nll"] == pytest.approx(expected_nll)


def test_multiclass_metrics_by_hand():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 2, 2])
    result = classification_metrics(probabilities, labels, "multiclass", 3)
    assert result["accuracy"] == pytest.approx(3 / 4)
    assert result["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert result["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert "sensitivity" not in result


def test_expected_calibration_error():
    # all predictions at confidence 0.8, three of four correct: |0.8 - 0.75|
    assert expected_calibration_error(np.full(4, 0.8), np.array([1, 1, 1, 0])) == pytest.approx(0.05)
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == pytest.approx(0.0)


def test_bootstrap_intervals_bracket_the_value_and_are_seeded():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probabilities = np.clip(labels * 0.4 + rng.random(300) * 0.6, 0, 1)
    first = metrics_with_intervals(probabilities, labels, "binary", 2, bootstrap_samples=200, seed=1)
    second = metrics_with_intervals(probabilities, labels, "binary", 2, bootstrap_samples=200, seed=1)
    assert first == second
    for name in ("accuracy", "auc", "balanced_accuracy", "ece", "nll"):
        assert first[name]["low"] <= first[name]["value"] <= first[name]["high"]
        assert first[name]["high"] - first[name]["low"] > 0
    assert len(first["confusion_matrix"]["low"]) == 2


def test_auc_with_a_single_class_is_undefined_not_an_error():
    result = classification_metrics(np.array([0.2, 0.9]), np.array([1, 1]), "binary", 2)
    assert np.isnan(result["auc"])
