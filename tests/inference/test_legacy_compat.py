"""Runs and bundles written before the axis convention was recorded still load and predict as before.

Before, MedMNIST runs trained on numpy (row, column) arrays and ``predict`` read PNGs in that order; now every
source is in MONAI's order. A run without ``axis_order`` in ``train_summary.json`` (a medvp bundle whose mark
says ``numpy_order: true``) must give its network the numpy-ordered images it was trained on.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline.engine import evaluate_run
from pipeline.inference import collect_inputs, load_model, predict, usable_items

pytestmark = pytest.mark.slow


def _as_before(model, images: np.ndarray) -> np.ndarray:
    """What medvp computed before the change: stored (N, H, W) arrays, scaled 0..255 to -1..1, into the network."""
    with torch.no_grad():
        logits = model.network(torch.as_tensor(images[:, None], dtype=torch.float32) / 127.5 - 1)
    return torch.sigmoid(logits).numpy()[:, 0]


def _legacy_copy(small_run, tmp_path):
    legacy = tmp_path / "legacy_run"
    shutil.copytree(small_run, legacy, ignore=shutil.ignore_patterns("cache"))
    summary = json.loads((legacy / "train_summary.json").read_text())
    summary.pop("axis_order", None)
    (legacy / "train_summary.json").write_text(json.dumps(summary))
    return legacy


def test_a_run_written_before_predicts_and_evaluates_as_before(small_run, png_folder, demo_data, tmp_path):
    legacy = _legacy_copy(small_run, tmp_path)
    model = load_model(legacy)
    with np.load(demo_data) as archive:
        stored = archive["test_images"][:12]
    expected = _as_before(model, stored)
    items = collect_inputs([str(png_folder), f"{demo_data}:test"])
    probabilities = predict(model, usable_items(model, items)).probabilities[:, 1]
    assert np.abs(probabilities[:12] - expected).max() <= 1e-5  # PNG files
    assert np.abs(probabilities[12:24] - expected).max() <= 1e-5  # npz items
    evaluate_run(legacy, "test")
    rows = (legacy / "predictions_test.csv").read_text().splitlines()[1:13]
    evaluated = np.asarray([float(row.split(",")[-1]) for row in rows])
    assert np.abs(evaluated - expected).max() <= 1e-5
    # and the new convention is a different input for this network: the compatibility path is doing the work
    assert np.abs(predict(load_model(small_run), items[:12]).probabilities[:, 1] - expected).max() > 1e-4


def test_a_bundle_written_before_predicts_as_before(bundle, png_folder, demo_data, tmp_path):
    old = tmp_path / "old_bundle"
    shutil.copytree(bundle, old)
    metadata_file = old / "configs" / "metadata.json"
    metadata = json.loads(metadata_file.read_text())
    mark = next(value for value in metadata.values() if isinstance(value, dict) and "input_shape" in value)
    mark.pop("axis_order", None)
    mark.pop("dicom", None)
    mark["numpy_order"] = True
    metadata_file.write_text(json.dumps(metadata, indent=2))
    model = load_model(old)
    with np.load(demo_data) as archive:
        stored = archive["test_images"][:12]
    probabilities = predict(model, usable_items(model, collect_inputs([str(png_folder)]))).probabilities[:, 1]
    assert np.abs(probabilities - _as_before(model, stored)).max() <= 1e-5
