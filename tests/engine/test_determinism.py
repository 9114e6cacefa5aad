"""training.deterministic: two runs with the same seed give identical weights and metrics."""

import json
import os

import pytest
import torch

from pipeline.config import parse_config
from pipeline.engine import train
from pipeline.engine.checkpoint import load_checkpoint


def _run(data, tmp_path, name, seed):
    config = parse_config({
        "data": {"path": str(data), "batch_size": 64},
        "model": {"name": "simplecnn", "dropout": 0.2, "options": {"channels": [4, 4, 8, 8]}},
        "training": {"max_epochs": 2, "seed": seed, "progress_bar": False},
        "output": {"root": str(tmp_path), "name": name},
    }, "test", tmp_path)
    assert config.training.deterministic  # the default
    train(config, tmp_path / name)
    records = json.loads((tmp_path / name / "metrics.json").read_text())
    for record in records:
        record.pop("epoch_seconds")
    return load_checkpoint(tmp_path / name / "checkpoints" / "checkpoint_epoch=2.pt")["network"], records


@pytest.mark.slow
def test_same_seed_gives_identical_weights_and_metrics_and_another_seed_does_not(small_demo_data, tmp_path):
    first_weights, first_metrics = _run(small_demo_data, tmp_path, "first", seed=3)
    second_weights, second_metrics = _run(small_demo_data, tmp_path, "second", seed=3)
    assert first_metrics == second_metrics
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[key], second_weights[key]) for key in first_weights)
    other_weights, other_metrics = _run(small_demo_data, tmp_path, "other", seed=4)
    assert not torch.equal(first_weights["head.2.weight"], other_weights["head.2.weight"])
    assert other_metrics != first_metrics


def test_on_cuda_the_flag_warns_for_kernels_without_a_deterministic_version_instead_of_failing(demo_data, tmp_path,
                                                                                               monkeypatch):
    from pipeline.engine.device import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    config = parse_config({"data": {"path": str(demo_data)}}, "test", tmp_path)
    try:
        seed_everything(config, torch.device("cuda"))  # only flags and the environment: no GPU needed
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        seed_everything(config, torch.device("cpu"))
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # strict on CPU
    finally:
        torch.use_deterministic_algorithms(False)
