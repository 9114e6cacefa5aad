"""Resume after a crash: a SIGKILLed run, resumed, ends bit for bit where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from pipeline.engine.checkpoint import load_checkpoint

EPOCHS, EVERY = 2, 10


def _medvp(repo_root, *args):
    return [sys.executable, "-m", "pipeline.cli", *map(str, args)]


def _records(run_dir):
    records = json.loads((run_dir / "metrics.json").read_text())
    for record in records:
        record.pop("epoch_seconds")
    return records


def _assert_same_state(left, right, path=""):
    assert type(left) is type(right), path
    if isinstance(left, torch.Tensor):
        assert torch.equal(left, right), path
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), path
        for key in left:
            _assert_same_state(left[key], right[key], f"{path}.{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), path
        for index, (a, b) in enumerate(zip(left, right, strict=True)):
            _assert_same_state(a, b, f"{path}[{index}]")
    else:
        assert left == right, path


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run_bit_for_bit(repo_root, demo_data, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(demo_data), "batch_size": 64},
        "model": {"name": "simplecnn", "options": {"channels": [4, 4, 8, 8]}},
        "training": {"max_epochs": EPOCHS, "progress_bar": False, "checkpoint_every_iterations": EVERY,
                     "scheduler": {"name": "cosine"}, "early_stopping_patience": 5},
        "output": {"root": str(tmp_path / "runs")},
        "evaluation": {"splits": []},
    }))
    started = time.perf_counter()
    reference = subprocess.run(_medvp(repo_root, "train", config, "--set", "output.name=reference"), cwd=repo_root,
                               capture_output=True, text=True, timeout=600)
    reference_seconds = time.perf_counter() - started
    assert reference.returncode == 0, reference.stderr

    run_dir = tmp_path / "runs" / "crashed"
    checkpoints = run_dir / "checkpoints"
    started = time.perf_counter()
    process = subprocess.Popen(_medvp(repo_root, "train", config, "--set", "output.name=crashed"), cwd=repo_root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    epoch_length = None
    try:
        # Wait for the first iteration checkpoint of epoch 2, let a few more batches run, and kill.
        while process.poll() is None and time.perf_counter() - started < 300:
            if epoch_length is None and (checkpoints / "checkpoint_epoch=1.pt").is_file():
                epoch_length = load_checkpoint(checkpoints / "checkpoint_epoch=1.pt")["trainer"]["epoch_length"]
            steps = [int(path.stem.split("=")[1]) for path in checkpoints.glob("checkpoint_iteration=*.pt")]
            if epoch_length and any(step > epoch_length for step in steps):
                time.sleep(0.15)
                break
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    killed_seconds = time.perf_counter() - started
    assert process.returncode == -signal.SIGKILL
    assert not (run_dir / "train_summary.json").exists()
    assert not (checkpoints / f"checkpoint_epoch={EPOCHS}.pt").exists()
    last_iteration = max(int(path.stem.split("=")[1]) for path in checkpoints.glob("checkpoint_iteration=*.pt"))
    assert last_iteration % epoch_length != 0  # the run died mid-epoch, after a mid-epoch checkpoint

    started = time.perf_counter()
    resumed = subprocess.run(_medvp(repo_root, "train", config, "--set", "output.name=crashed", "--resume", run_dir),
                             cwd=repo_root, capture_output=True, text=True, timeout=600)
    resumed_seconds = time.perf_counter() - started
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr  # the run directory line is logged

    reference_dir = tmp_path / "runs" / "reference"
    final = f"checkpoint_epoch={EPOCHS}.pt"
    expected, actual = load_checkpoint(reference_dir / "checkpoints" / final), load_checkpoint(checkpoints / final)
    for part in ("network", "optimizer", "lr_scheduler", "trainer", "evaluator", "early_stopping", "random_states"):
        _assert_same_state(expected[part], actual[part], part)
    _assert_same_state(load_checkpoint(reference_dir / "checkpoints" / "best.pt"),
                       load_checkpoint(checkpoints / "best.pt"), "best.pt")
    assert _records(run_dir) == _records(reference_dir)
    assert len(_records(run_dir)) == EPOCHS
    summary, reference_summary = (json.loads((d / "train_summary.json").read_text()) for d in (run_dir, reference_dir))
    assert (summary["best_epoch"], summary["best_val_auc"]) == (reference_summary["best_epoch"],
                                                                reference_summary["best_val_auc"])
    assert summary["resumed_from"]["iteration"] == last_iteration
    figures = {"epochs": EPOCHS, "epoch_length": epoch_length, "checkpoint_every_iterations": EVERY,
               "resumed_from_iteration": last_iteration, "reference_seconds": round(reference_seconds, 1),
               "killed_after_seconds": round(killed_seconds, 1), "resumed_seconds": round(resumed_seconds, 1),
               "seconds_lost": round(killed_seconds + resumed_seconds - reference_seconds, 1),
               "weights_and_metrics_equal": True}
    print("kill-and-resume:", json.dumps(figures))


@pytest.mark.slow
def test_a_run_with_augmentation_writes_checkpoints_that_load_safely(small_demo_data, tmp_path):
    # Augmented batches are MONAI MetaTensors, and so are the losses and running metric sums computed from them;
    # the checkpoint must hold plain tensors, or torch.load(weights_only=True) refuses it.
    from pipeline.config import parse_config
    from pipeline.engine import train

    config = parse_config({"data": {"path": str(small_demo_data), "batch_size": 64}, "model": {"name": "simplecnn",
                           "options": {"channels": [4, 4, 8, 8]}}, "training": {"max_epochs": 1, "progress_bar": False,
                           "checkpoint_every_iterations": 3},
                           "augmentation": {"transforms": [{"name": "rotate", "degrees": 10, "prob": 1.0}]},
                           "evaluation": {"splits": []}, "output": {"root": str(tmp_path)}}, "test", tmp_path)
    run_dir = train(config).run_dir
    for path in (run_dir / "checkpoints").glob("checkpoint_*.pt"):
        state = load_checkpoint(path)
        sums = [value for metric in state["train_metrics"].values() for per_rank in metric["__metric_state_per_rank"]
                for value in per_rank.values() if isinstance(value, torch.Tensor)]
        assert sums and all(type(value) is torch.Tensor for value in sums), path.name


class _Killed(BaseException):
    """Stands for SIGKILL right after a checkpoint was written: nothing after it runs (not an Exception, so no
    handler of the engine treats it)."""


def _augmented_config(data, root, name):
    from pipeline.config import parse_config
    from pipeline.transforms.policy import ALLOWED

    transforms = [{"name": name, "prob": 0.5 if index % 2 else 1.0} for index, name in enumerate(sorted(ALLOWED))]
    return parse_config({
        "data": {"path": str(data), "batch_size": 16},
        "model": {"name": "simplecnn", "options": {"channels": [2, 2, 4, 4]}},
        "training": {"max_epochs": 2, "progress_bar": False, "checkpoint_every_iterations": 1},
        "augmentation": {"laterality_invariant": True, "transforms": transforms},
        "evaluation": {"splits": []}, "output": {"root": str(root), "name": name}}, "test", root)


@pytest.fixture(scope="module")
def tiny_demo_data(tmp_path_factory):
    import numpy as np

    from tests.conftest import REPO

    path = tmp_path_factory.mktemp("tiny") / "tiny.npz"
    with np.load(REPO / "pipeline" / "demo_data" / "pneumoniamnist.npz") as archive:
        np.savez(path, **{f"{split}_{kind}": archive[f"{split}_{kind}"][:size]
                          for split, size in {"train": 64, "val": 16, "test": 16}.items()
                          for kind in ("images", "labels")})
    return path


@pytest.mark.slow
def test_an_augmented_run_killed_anywhere_resumes_bit_for_bit(tiny_demo_data, tmp_path, monkeypatch):
    """Every augmentation of the allow-list draws from random generators nested inside the dictionary transforms
    (RandAffined -> RandAffine -> RandAffineGrid, RandGaussianNoised -> RandGaussianNoise, ...); a run stopped right
    after any checkpoint, mid-epoch or at an epoch boundary, resumes to the same final weights."""
    from pipeline.engine import train
    from pipeline.engine.checkpoint import AtomicDiskSaver

    reference = train(_augmented_config(tiny_demo_data, tmp_path, "reference")).run_dir
    expected = load_checkpoint(reference / "checkpoints" / "checkpoint_epoch=2.pt")
    save = AtomicDiskSaver.__call__
    kill_points = ["checkpoint_iteration=2.pt", "checkpoint_epoch=1.pt"]  # mid-epoch, epoch boundary
    for kill_after in kill_points:
        def save_then_die(self, checkpoint, filename, metadata=None, kill_after=kill_after):
            save(self, checkpoint, filename, metadata)
            if filename == kill_after:
                (self.dirname / f".{filename}.abc123.tmp").write_bytes(b"torn")  # a write the kill cut short
                raise _Killed

        config = _augmented_config(tiny_demo_data, tmp_path, f"killed_{kill_after}")
        monkeypatch.setattr(AtomicDiskSaver, "__call__", save_then_die)
        with pytest.raises(_Killed):
            train(config)
        monkeypatch.setattr(AtomicDiskSaver, "__call__", save)
        run_dir = tmp_path / config.output.name
        assert list((run_dir / "checkpoints").glob(".*.tmp"))
        train(config, run_dir, resume=True)
        assert not list((run_dir / "checkpoints").glob(".*.tmp")), "orphaned temporary checkpoint files remain"
        actual = load_checkpoint(run_dir / "checkpoints" / "checkpoint_epoch=2.pt")
        for part in ("network", "optimizer", "trainer", "random_states"):
            _assert_same_state(expected[part], actual[part], f"{kill_after}: {part}")
        _assert_same_state(load_checkpoint(reference / "checkpoints" / "best.pt"),
                           load_checkpoint(run_dir / "checkpoints" / "best.pt"), f"{kill_after}: best.pt")
        assert _records(run_dir) == _records(reference)
