"""RunDir: every reader of a run directory gets its files through one type; a corrupt or foreign file there is
refused with one line naming it (a pipeline.errors type), never a KeyError or UnpicklingError traceback."""

import json
import pickle

import pytest
import torch

from pipeline.config import parse_config
from pipeline.engine import RunDir
from pipeline.errors import ConfigError, DataError
from pipeline.networks import NetworkSpec, build_network

_SUMMARY = {"epochs_run": 2, "best_epoch": 1, "best_val_auc": 0.9, "train_seconds": 1.5, "task": "binary",
            "class_names": ["normal", "pneumonia"], "in_channels": 1, "spatial_dims": 2, "input_shape": [1, 28, 28]}


def _network():
    return build_network(NetworkSpec("simplecnn", 2, 1, 1, options={"channels": [4, 4, 8, 8]}))


@pytest.fixture
def run(demo_data, tmp_path):
    run = RunDir(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    run.save_config(parse_config({"data": {"path": str(demo_data)}}, "test", tmp_path))
    return run


def _one_line(error: Exception, path) -> str:
    message = str(error)
    assert "\n" not in message and str(path) in message
    return message


def test_a_run_reads_back_its_config_summary_and_weights(run):
    assert run.config().data.path.name == "pneumoniamnist.npz"
    run.summary_file.write_text(json.dumps(_SUMMARY))
    summary = run.summary()
    assert (summary.info.spatial_shape, summary.info.num_outputs, summary.best_epoch) == ((28, 28), 1, 1)
    trained = _network()
    torch.save(trained.state_dict(), run.checkpoint_dir / "best.pt")
    fresh = _network()
    run.load_weights(fresh, "best")
    pairs = zip(fresh.state_dict().values(), trained.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("text", ["data: [unclosed", "!!python/object/apply:os.system ['true']\n",
                                  "- a list\n- not a mapping\n"])
def test_a_corrupt_or_foreign_config_is_one_config_error(run, text):
    run.config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        run.config()
    _one_line(caught.value, run.config_file)


def test_a_truncated_or_foreign_summary_is_one_data_error(run):
    run.summary_file.write_text(json.dumps(_SUMMARY)[:40])
    with pytest.raises(DataError) as caught:
        run.summary()
    _one_line(caught.value, run.summary_file)
    run.summary_file.write_text(json.dumps({"epochs": 3}))
    with pytest.raises(DataError) as caught:
        run.summary()
    assert "task" in _one_line(caught.value, run.summary_file)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


@pytest.mark.parametrize("payload", [_Payload(), {"weight": "not a tensor"}])
def test_a_pickle_payload_or_foreign_checkpoint_is_refused(run, payload, capsys):
    path = run.checkpoint_dir / "best.pt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError) as caught:
        run.load_weights(_network(), "best")
    _one_line(caught.value, path)
    assert "unpickled code ran" not in capsys.readouterr().out


def test_weights_of_another_network_are_one_data_error(run):
    torch.save(build_network(NetworkSpec("simplecnn", 2, 3, 5)).state_dict(), run.checkpoint_dir / "best.pt")
    with pytest.raises(DataError) as caught:
        run.load_weights(_network(), "best")
    assert "do not fit" in _one_line(caught.value, run.checkpoint_dir / "best.pt")


def test_a_missing_checkpoint_names_the_run(run):
    with pytest.raises(DataError, match="no last checkpoint"):
        run.checkpoint("last")
