import json

import pytest

from pipeline.config import parse_config
from pipeline.engine import train


def tiny_config(demo_data, tmp_path, **sections):
    document = {
        "data": {"path": str(demo_data), "batch_size": 256},
        "model": {"name": "simplecnn", "options": {"channels": [4, 4, 8, 8]}},
        "training": {"max_epochs": 4, "progress_bar": False},
        "output": {"root": str(tmp_path), "name": "tiny"},
    }
    for section, values in sections.items():
        document.setdefault(section, {}).update(values)
    return parse_config(document, "test", tmp_path)


@pytest.mark.slow
def test_early_stopping_ends_training_when_validation_auc_stops_improving(demo_data, tmp_path):
    # A learning rate this small leaves the weights, hence the validation AUC, unchanged after epoch 1.
    config = tiny_config(demo_data, tmp_path, optimizer={"lr": 1e-12},
                         training={"max_epochs": 6, "early_stopping_patience": 2, "progress_bar": False})
    result = train(config, tmp_path / "run")
    assert result.epochs_run == 3
    assert result.best_epoch == 1
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 3


@pytest.mark.slow
def test_on_validation_returning_true_stops_training_after_that_epoch(demo_data, tmp_path):
    seen = []

    def stop_at_two(epoch: int, metrics: dict) -> bool:
        seen.append((epoch, "val_auc" in metrics))
        return epoch == 2

    result = train(tiny_config(demo_data, tmp_path), tmp_path / "run", on_validation=stop_at_two)
    assert result.epochs_run == 2 and seen == [(1, True), (2, True)]
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 2
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_epoch=2.pt").is_file()  # the stopped epoch is saved


@pytest.mark.slow
def test_multistep_schedule_lowers_the_learning_rate_at_the_milestones(demo_data, tmp_path):
    config = tiny_config(demo_data, tmp_path, optimizer={"lr": 0.01},
                         training={"max_epochs": 4, "progress_bar": False,
                                   "scheduler": {"name": "multistep", "milestones": [0.5, 0.75], "gamma": 0.1}})
    train(config, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [record["lr"] for record in history] == pytest.approx([0.01, 0.01, 0.001, 0.0001])


@pytest.mark.slow
def test_plain_cross_entropy_when_the_penalty_is_off(demo_data, tmp_path):
    config = tiny_config(demo_data, tmp_path, loss={"variance_weight": 0.0}, training={"max_epochs": 1,
                                                                                         "progress_bar": False})
    train(config, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())[0]
    assert record["train_variance"] == 0.0
    assert record["train_loss"] == pytest.approx(record["train_classification"])
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["taps"] == []
