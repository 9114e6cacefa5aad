"""``medvp train --nproc N`` hands the same training command to torchrun's launcher, N processes on this machine."""

import pytest
from torch.distributed.run import parse_args

import pipeline.engine.distributed as distributed
from pipeline.cli import main


@pytest.fixture
def config(demo_data, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"data:\n  path: {demo_data}\noutput:\n  root: {tmp_path / 'runs'}\n")
    return path


def test_nproc_launches_torchrun_with_the_same_train_command(config, tmp_path, monkeypatch, restore_logging):
    launched = []
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: launched.append((nproc, argv)))
    assert main(["--quiet", "train", str(config), "--nproc", "2", "--set", "training.max_epochs=1",
                 "--resume", str(tmp_path / "old")]) == 0
    assert launched == [(2, ["--quiet", "train", str(config), "--set", "training.max_epochs=1",
                             "--resume", str(tmp_path / "old")])]


def test_the_launch_is_a_standalone_torchrun_of_the_pipeline_module():
    # what launch() hands to torch.distributed.run, parsed by torchrun's own parser
    args = parse_args(["--standalone", "--nproc_per_node=3", "-m", "pipeline", "train", "config.yaml"])
    assert (args.nproc_per_node, args.module, args.standalone) == ("3", True, True)
    assert (args.training_script, args.training_script_args) == ("pipeline", ["train", "config.yaml"])


@pytest.mark.parametrize("environment,nproc,message", [
    ({}, "0", "--nproc = 0: expected a positive number of processes"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "2", "--nproc inside a torchrun process"),
])
def test_nproc_errors_are_one_line(config, environment, nproc, message, monkeypatch, capsys, restore_logging):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: pytest.fail("launched"))
    assert main(["--quiet", "train", str(config), "--nproc", nproc]) == 2
    assert capsys.readouterr().err.strip().startswith(f"medvp: error: {message}")


def test_a_bad_config_fails_before_launching(tmp_path, monkeypatch, capsys, restore_logging):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  path: x.npz\nloss:\n  variance_scope: world\n")
    monkeypatch.setattr(distributed, "launch", lambda nproc, argv: pytest.fail("launched"))
    assert main(["--quiet", "train", str(path), "--nproc", "2"]) == 2
    assert "loss.variance_scope" in capsys.readouterr().err
