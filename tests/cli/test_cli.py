import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch


def medvp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def one_epoch_run(repo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = medvp("train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set", "training.max_epochs=1",
                   "--set", f"output.root={root}", "--set", "evaluation.bootstrap_samples=200")
    assert result.returncode == 0, result.stderr
    return root / "pneumoniamnist_demo", result


def test_train_one_epoch_end_to_end_writes_the_run_directory(one_epoch_run):
    run_dir, result = one_epoch_run
    assert "test (624 items, best checkpoint): accuracy" in result.stdout
    for name in ("config.yaml", "metrics.csv", "metrics.json", "curves.png", "metrics_test.json",
                 "predictions_test.csv", "train_summary.json", "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").glob("checkpoint_epoch=1.pt"))
    assert list((run_dir / "tensorboard").iterdir())
    history = json.loads((run_dir / "metrics.json").read_text())
    assert len(history) == 1
    record = history[0]
    assert record["train_loss"] == pytest.approx(record["train_classification"] + 0.01 * record["train_variance"],
                                                 rel=1e-4)
    assert record["train_variance"] > 0 and 0.5 < record["val_auc"] <= 1
    with open(run_dir / "metrics.csv") as handle:
        assert float(list(csv.DictReader(handle))[0]["val_auc"]) == pytest.approx(record["val_auc"])
    report = json.loads((run_dir / "metrics_test.json").read_text())
    metrics = report["metrics"]
    for name in ("accuracy", "auc", "balanced_accuracy", "sensitivity", "specificity", "macro_f1", "ece"):
        assert metrics[name]["low"] <= metrics[name]["value"] <= metrics[name]["high"], name
    assert np.array(metrics["confusion_matrix"]["value"]).sum() == 624
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert "head.2.weight" in best  # a plain network state dict


def test_evaluate_recomputes_metrics_from_the_checkpoint(one_epoch_run):
    run_dir, _ = one_epoch_run
    result = medvp("evaluate", run_dir, "--split", "val")
    assert result.returncode == 0, result.stderr
    assert "val (524 items" in result.stdout
    report = json.loads((run_dir / "metrics_val.json").read_text())
    with open(run_dir / "predictions_val.csv") as handle:
        rows = list(csv.DictReader(handle))
    correct = [(float(row["probability_pneumonia"]) >= 0.5) == (row["label"] == "1") for row in rows]
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(np.mean(correct))
    history = json.loads((run_dir / "metrics.json").read_text())
    # the evaluator during training saw the same validation split with the same weights
    assert report["metrics"]["auc"]["value"] == pytest.approx(history[0]["val_auc"], abs=1e-6)


def test_config_error_is_one_line_per_problem_without_traceback(tmp_path, repo_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: ../x.npz}\nloss: {feature_sampling_ratio: 2}\n")
    result = medvp("validate", bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"medvp: error: {bad}: loss.feature_sampling_ratio = 2: " \
                                    "Input should be less than or equal to 1"
    result = medvp("train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set", "model.name=alexnet")
    assert result.returncode == 2 and "model.name = 'alexnet': expected one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_data_and_run_dir_are_clear_errors(tmp_path, repo_root):
    result = medvp("validate", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set", "data.path=nothing.npz")
    assert result.returncode == 2 and "nothing.npz" in result.stderr and "Traceback" not in result.stderr
    result = medvp("evaluate", tmp_path)
    assert result.returncode == 2 and "is not a medvp run directory" in result.stderr


def test_network_too_deep_for_the_input_size_is_a_config_error(tmp_path, repo_root):
    result = medvp("train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set", "model.name=densenet121",
                   "--set", "model.options={}", "--set", f"output.root={tmp_path}")
    assert result.returncode == 2
    assert "cannot take inputs of shape [1, 28, 28]" in result.stderr and "preprocessing.spatial_size" in result.stderr


@pytest.mark.slow
def test_quiet_training_prints_only_the_outcome(tmp_path, repo_root):
    result = medvp("--quiet", "train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set",
                   "training.max_epochs=1", "--set", f"output.root={tmp_path}", "--set", "evaluation.splits=[]",
                   "--set", "model.options={channels: [4, 4, 8, 8]}", "--set", "data.batch_size=256",
                   "--set", "training.progress_bar=false")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "trained 1 epochs" in output
    assert "Epoch[" not in output and "INFO" not in output, output
