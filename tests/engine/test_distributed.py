"""Distributed data-parallel training on CPU (gloo): 2 processes against 1 with the same global batch and seed,
and only rank 0 writes the run directory."""

import json
import os
import sys
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import pytest
import torch
import torch.distributed as dist

from pipeline.config import parse_config
from pipeline.demo_data import packaged_file
from pipeline.engine import train
from pipeline.engine.checkpoint import load_checkpoint
from pipeline.engine.distributed import distributed_session, end_process_group
from pipeline.errors import ConfigError

GLOBAL_BATCH = 16
METRICS = ("train_loss", "train_classification", "train_variance", "train_accuracy", "val_loss", "val_accuracy",
           "val_auc")
# float sums run in another order (per-process means, all-reduced gradients); measured differences are about
# 1e-7 relative after 2 epochs of 4 steps. With variance_scope=local they are 1e-3 to 7e-2 (train_variance).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """64 training items (4 global batches of 16) and 33 validation items (an odd count: uneven shares)."""
    path = tmp_path_factory.mktemp("ddp_data") / "tiny.npz"
    sizes = {"train": 64, "val": 33, "test": 8}
    with np.load(packaged_file("pneumoniamnist.npz")) as archive:
        np.savez(path, **{f"{split}_{kind}": archive[f"{split}_{kind}"][:size] for split, size in sizes.items()
                          for kind in ("images", "labels")})
    return path


def document(data: Path, root: Path, processes: int) -> dict:
    return {
        "data": {"path": str(data), "batch_size": GLOBAL_BATCH // processes, "eval_batch_size": 8},
        "model": {"name": "simplecnn", "options": {"channels": [4, 4, 8, 8]}},
        "loss": {"variance_weight": 0.5, "feature_sampling_ratio": 0.5, "variance_scope": "global"},
        "optimizer": {"lr": 0.01},
        "training": {"max_epochs": 2, "progress_bar": False, "seed": 3},
        "output": {"root": str(root), "name": "run"},
    }


def _writes_under(root: str, log: list) -> None:
    """Record, with an audit hook, every file or folder this process creates, writes, renames or removes under
    ``root`` (``open`` events carry the os.open flags, for built-in ``open`` too)."""
    written = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[2], int) and args[2] & written:
            paths = args[:1]
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.chmod", "os.truncate"):
            paths = args[:1]
        elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
            paths = args[:2]
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(os.fspath(path)).startswith(root):
                log.append([event, os.fsdecode(os.fspath(path))])

    sys.addaudithook(hook)


def _worker(rank: int, world: int, init_file: str, doc: dict, root: str, audit_dir: str) -> None:
    torch.set_num_threads(1)
    log: list = []
    _writes_under(root, log)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = train(parse_config(doc, "test", Path(root)), Path(root) / "run")
    finally:
        end_process_group()
    Path(audit_dir, f"rank{rank}.json").write_text(json.dumps({"writes": log, "best_epoch": result.best_epoch,
                                                                "best_val_auc": result.best_val_auc}))


def run_distributed(spawn_processes, data: Path, folder: Path, processes: int) -> tuple[Path, list[dict]]:
    """Train with ``processes`` gloo processes (spawned); the run directory and each rank's report."""
    root, audit = folder / "runs", folder / "audit"
    root.mkdir(parents=True)
    audit.mkdir()
    doc = document(data, root, processes)
    spawn_processes(_worker, (processes, str(folder / "init"), doc, str(root), str(audit)), processes)
    return root / "run", [json.loads((audit / f"rank{rank}.json").read_text()) for rank in range(processes)]


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory, spawn_processes):
    one = run_distributed(spawn_processes, tiny_data, tmp_path_factory.mktemp("one_process"), 1)
    two = run_distributed(spawn_processes, tiny_data, tmp_path_factory.mktemp("two_processes"), 2)
    return one, two


def test_two_processes_match_one_with_the_same_global_batch_and_seed(runs):
    (one_dir, one_reports), (two_dir, two_reports) = runs
    one = json.loads((one_dir / "metrics.json").read_text())
    two = json.loads((two_dir / "metrics.json").read_text())
    assert len(one) == len(two) == 2
    for first, second in zip(one, two, strict=True):
        for name in METRICS:
            assert second[name] == pytest.approx(first[name], rel=RTOL, abs=ATOL), (first["epoch"], name)
        assert first["train_variance"] > 0
    # the validation metrics count all 33 items once: 33 is not a multiple of 2, so a padded split would differ
    summary = json.loads((two_dir / "train_summary.json").read_text())
    assert summary["distributed"] == {"processes": 2, "backend": "gloo", "batch_size_per_process": 8,
                                      "global_batch_size": 16, "variance_scope": "global", "sync_batchnorm": False}
    assert [report["best_val_auc"] for report in two_reports] == [two_reports[0]["best_val_auc"]] * 2
    assert two_reports[0]["best_val_auc"] == pytest.approx(one_reports[0]["best_val_auc"], rel=RTOL, abs=ATOL)
    weights_one = load_checkpoint(one_dir / "checkpoints" / "best.pt")
    weights_two = load_checkpoint(two_dir / "checkpoints" / "best.pt")
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=RTOL, atol=ATOL, msg=name)


def test_only_rank_zero_writes_the_run_directory(runs):
    (one_dir, _), (two_dir, two_reports) = runs
    rank0, rank1 = (report["writes"] for report in two_reports)
    assert rank1 == []
    written = {Path(path).relative_to(two_dir).as_posix() for _, path in rank0 if Path(path).is_relative_to(two_dir)}
    assert {"config.yaml", "metrics.json", "metrics.csv", "curves.png", "train_summary.json",
            "checkpoints/best.pt"} <= written
    # the same files as a one-process run: nothing duplicated per process (tensorboard names files by host and pid)
    def files(run_dir: Path) -> set[str]:
        return {path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*")
                if path.is_file() and "tensorboard" not in path.parts}
    assert files(two_dir) == files(one_dir)
    # event files are named ...tfevents.<time>.<host>.<pid>.<n>: rank 0's alone (the scalars and the hparams write
    # one each), as many as a one-process run writes
    events = list((two_dir / "tensorboard").iterdir())
    assert len({path.name.split(".")[-2] for path in events}) == 1
    assert len(events) == len(list((one_dir / "tensorboard").iterdir()))


def test_sync_batchnorm_on_cpu_is_a_config_error(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    doc = document(tiny_data, tmp_path, 1)
    doc["training"].update(sync_batchnorm=True, device="cpu")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        with pytest.raises(ConfigError, match="training.sync_batchnorm = true needs CUDA"):
            train(parse_config(doc, "test", tmp_path), tmp_path / "run")
    finally:
        end_process_group()
    assert idist.get_world_size() == 1 and not dist.is_initialized()  # later tests run in a single process


def test_a_torchrun_environment_starts_a_gloo_group_that_ends_with_the_session(tiny_data, tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    config = parse_config({**document(tiny_data, tmp_path, 1), "training": {"device": "cpu"}}, "test", tmp_path)
    with distributed_session(config) as context:
        assert (context.enabled, context.rank, context.world_size) == (True, 0, 1)
        assert dist.get_backend() == "gloo"
        assert context.broadcast(("run", True)) == ("run", True)
    assert not dist.is_initialized() and idist.get_world_size() == 1
