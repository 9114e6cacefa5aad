import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

DEMO_CONFIG = "configs/pneumoniamnist_demo.yaml"
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(medvp|monai|ignite|optuna|warnings): ")


@pytest.fixture(scope="module")
def demo_run(repo_root, tmp_path_factory):
    """The README's main command, ``medvp train configs/pneumoniamnist_demo.yaml``, in a fresh working directory
    (so its run lands in ``runs/``), on 2 threads: the thread count the README's figures are for."""
    cwd = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "PYTHONPATH": str(repo_root), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(repo_root / DEMO_CONFIG)],
                            capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    return cwd / "runs" / "pneumoniamnist_demo", result


def test_demo_run_writes_the_run_directory_and_ends_with_a_summary(demo_run):
    run_dir, result = demo_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    epochs = config["training"]["max_epochs"]
    history = json.loads((run_dir / "metrics.json").read_text())
    assert len(history) == epochs
    record = history[-1]
    assert record["train_loss"] == pytest.approx(record["train_classification"] + 0.01 * record["train_variance"],
                                                 rel=1e-4)
    assert record["train_variance"] > 0 and 0.5 < record["val_auc"] <= 1
    with open(run_dir / "metrics.csv") as handle:
        assert float(list(csv.DictReader(handle))[-1]["val_auc"]) == pytest.approx(record["val_auc"])
    report = json.loads((run_dir / "metrics_test.json").read_text())
    metrics = report["metrics"]
    for name in ("accuracy", "auc", "balanced_accuracy", "sensitivity", "specificity", "macro_f1", "ece"):
        assert metrics[name]["low"] <= metrics[name]["value"] <= metrics[name]["high"], name
    assert np.array(metrics["confusion_matrix"]["value"]).sum() == 624
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert "head.2.weight" in best  # a plain network state dict
    # the end of the output: the table of every metric, the confusion matrix, the files written, the time split
    out = result.stdout
    accuracy = metrics["accuracy"]
    assert re.search(rf"^  accuracy +{accuracy['value']:.4f} +\[{accuracy['low']:.4f}, {accuracy['high']:.4f}\]$", out,
                     re.MULTILINE), out
    cells = metrics["confusion_matrix"]
    assert f"{cells['value'][0][0]} [{cells['low'][0][0]}, {cells['high'][0][0]}]" in out  # whole items
    written = out.split("files written in ")[1].split("time:")[0].split()
    for name in ("config.yaml", "metrics.csv", "curves.png", "checkpoints/best.pt", f"checkpoints/checkpoint_epoch="
                 f"{epochs}.pt", "train_summary.json", "metrics_test.json", "predictions_test.csv", "roc_test.png",
                 "calibration_test.png", "confusion_test.png", "splits.csv"):
        assert name in written, name
    assert re.search(r"^time: [\d.]+ s wall, [\d.]+ s CPU on 2 threads .*start-up [\d.]+ s, data [\d.]+ s, "
                     r"training [\d.]+ s \(validation [\d.]+\), test evaluation [\d.]+ s \(inference [\d.]+, "
                     r"bootstrap [\d.]+, figures [\d.]+\)", out, re.MULTILINE), out


def test_demo_log_has_one_format_epoch_lines_and_no_monai_chatter(demo_run):
    run_dir, result = demo_run
    lines = result.stderr.splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), [line for line in lines if not LOG_LINE.match(line)]
    assert "Key metric" not in result.stderr and "Epoch[" not in result.stderr
    epochs = len(json.loads((run_dir / "metrics.json").read_text()))
    epoch_lines = [line for line in lines if re.search(r"medvp: epoch +\d+/\d+  train loss", line)]
    assert len(epoch_lines) == epochs and "[" in epoch_lines[-1] and "<00:00]" in epoch_lines[-1]
    # without a terminal, progress is a line per quarter of an epoch
    assert len([line for line in lines if re.search(r"medvp: epoch \d+/\d+: \d+/\d+ batches", line)]) == 3 * epochs


def _quoted_demo_figures(document: str) -> dict[str, list[str]]:
    """The demo's figures a document quotes, by the CPU they were measured on: 'test accuracy X [L, H] and AUC X
    [L, H] on an Intel Xeon' gives {"Intel Xeon": [X, L, H, X, L, H]}."""
    quoted = (r"test accuracy (\d\.\d+) \[(\d\.\d+), (\d\.\d+)\] and AUC (\d\.\d+) \[(\d\.\d+), (\d\.\d+)\] "
              r"on an? (\w+ \w+)")
    return {found[-1]: list(found[:-1]) for found in re.findall(quoted, " ".join(document.split()))}


def test_readme_and_demo_doc_quote_what_the_demo_prints(demo_run, repo_root):
    """The README's and docs/demo.md's seed-0 figures are the README command's on 2 threads (they drifted once),
    for the CPU this runs on (CPUs round differently); on a CPU they do not name, the measured accuracy and AUC
    must fall within every quoted interval."""
    from pipeline.engine.device import cpu_model

    run_dir, _ = demo_run
    metrics = json.loads((run_dir / "metrics_test.json").read_text())["metrics"]
    readme = (repo_root / "README.md").read_text()
    assert f"medvp train {DEMO_CONFIG}" in readme.split("```")[1]
    measured = [metrics[name][key] for name in ("accuracy", "auc") for key in ("value", "low", "high")]
    cpu = cpu_model()
    for document in ("README.md", "docs/demo.md"):
        by_cpu = _quoted_demo_figures((repo_root / document).read_text())
        assert by_cpu, f"{document}: no 'test accuracy X [L, H] and AUC X [L, H] on a CPU'"
        mine = [figures for name, figures in by_cpu.items() if all(word in cpu for word in name.split())]
        if mine:
            assert mine[0] == [f"{value:.{len(text) - 2}f}" for text, value in zip(mine[0], measured, strict=True)], \
                (document, cpu)
        for figures in by_cpu.values():
            low_accuracy, high_accuracy, low_auc, high_auc = (float(figures[i]) for i in (1, 2, 4, 5))
            assert low_accuracy <= measured[0] <= high_accuracy and low_auc <= measured[3] <= high_auc, \
                (document, figures, measured)
    assert metrics["auc"]["value"] > 0.95


def test_the_demo_figures_are_read_per_cpu():
    document = ("prints test accuracy 0.8365 [0.8093, 0.8638] and AUC 0.9526 [0.9346,\n 0.9683] on an Intel Xeon and "
                "test accuracy 0.8365 [0.8077, 0.8622] and AUC 0.9529 [0.9347, 0.9688] on an AMD EPYC (both)")
    assert _quoted_demo_figures(document) == {
        "Intel Xeon": ["0.8365", "0.8093", "0.8638", "0.9526", "0.9346", "0.9683"],
        "AMD EPYC": ["0.8365", "0.8077", "0.8622", "0.9529", "0.9347", "0.9688"]}


def test_tensorboard_has_both_loss_terms_lr_grouped_metrics_and_hparams(demo_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = demo_run
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/batch_loss", "train/batch_classification", "train/batch_variance", "train/batch_lr",
                "train/loss", "train/classification", "train/variance", "train/accuracy", "train/lr",
                "val/auc", "val/accuracy", "val/loss"):
        assert tag in tags, tag
    batches = events.Scalars("train/batch_variance")
    assert len(batches) >= 10 and min(p.value for p in batches) >= 0 < max(p.value for p in batches)
    session = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"variance_weight" in session and b"feature_sampling_ratio" in session


def test_evaluate_recomputes_metrics_from_the_checkpoint(demo_run, medvp_in_process):
    run_dir, _ = demo_run
    result = medvp_in_process("evaluate", run_dir, "--split", "val")
    assert result.returncode == 0, result.stderr
    assert "val: 524 items, best checkpoint" in result.stdout
    assert "roc_val.png" in result.stdout.split("files written in")[1] and (run_dir / "calibration_val.png").is_file()
    report = json.loads((run_dir / "metrics_val.json").read_text())
    with open(run_dir / "predictions_val.csv") as handle:
        rows = list(csv.DictReader(handle))
    correct = [(float(row["probability_pneumonia"]) >= 0.5) == (row["label"] == "1") for row in rows]
    assert report["metrics"]["accuracy"]["value"] == pytest.approx(np.mean(correct))
    history = json.loads((run_dir / "metrics.json").read_text())
    best_epoch = json.loads((run_dir / "train_summary.json").read_text())["best_epoch"]
    # the evaluator during training saw the same validation split with the same weights
    assert report["metrics"]["auc"]["value"] == pytest.approx(history[best_epoch - 1]["val_auc"], abs=1e-6)


@pytest.mark.slow
def test_quiet_training_prints_only_the_outcome(tmp_path, repo_root, medvp_in_process):
    result = medvp_in_process("train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--quiet", "--set",
                   "training.max_epochs=1", "--set", f"output.root={tmp_path}", "--set", "evaluation.splits=[]",
                   "--set", "model.options={channels: [4, 4, 8, 8]}", "--set", "data.batch_size=256",
                   "--set", "training.progress_bar=false")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "trained 1 epoch in" in output
    assert "Epoch[" not in output and "INFO" not in output, output
