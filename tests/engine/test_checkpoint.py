"""Checkpoint files: atomic writes that keep the previous file on a full disk, and loading that runs no code."""

import errno
import pathlib

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from pipeline.cli import main
from pipeline.engine.checkpoint import EPOCH_PATTERN, AtomicDiskSaver, load_checkpoint, resume_checkpoint
from pipeline.errors import DataError, StorageError


def _engine_saving_every_epoch(folder, network):
    engine = Engine(lambda engine, batch: network.weight.data.add_(1.0))
    saver = Checkpoint({"network": network, "engine": engine}, AtomicDiskSaver(folder), n_saved=1,
                       filename_pattern=EPOCH_PATTERN, global_step_transform=lambda e, _: e.state.epoch)
    engine.add_event_handler(Events.EPOCH_COMPLETED, saver)
    return engine


def _fail_when_writing(monkeypatch, fragment, seen):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if fragment in getattr(f, "name", ""):
            f.write(b"PK\x03\x04 half a checkpoint")
            seen.append(f.name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_full_disk_is_a_clear_error_and_the_previous_checkpoint_stays_intact(tmp_path, monkeypatch):
    network = torch.nn.Linear(3, 1)
    torch.nn.init.zeros_(network.weight)  # whole numbers: the arithmetic below is exact
    engine = _engine_saving_every_epoch(tmp_path, network)
    engine.run([0, 1], max_epochs=2)
    previous = tmp_path / "checkpoint_epoch=2.pt"
    before = previous.read_bytes()
    seen = []
    _fail_when_writing(monkeypatch, "checkpoint_epoch=3", seen)
    with pytest.raises(StorageError, match=r"checkpoint_epoch=3\.pt: cannot write the checkpoint \(disk full\)"):
        engine.run([0, 1], max_epochs=3)
    assert seen  # the write was attempted (into a temporary file) and failed
    assert previous.read_bytes() == before
    assert torch.equal(load_checkpoint(previous)["network"]["weight"], network.weight.data - 2.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint_epoch=2.pt"]  # no temporary left


def test_rotation_removes_the_old_checkpoint_only_after_the_new_one_is_written(tmp_path):
    engine = _engine_saving_every_epoch(tmp_path, torch.nn.Linear(3, 1))
    written = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda _: written.append(sorted(p.name for p in
                                                                                     tmp_path.iterdir())))
    engine.run([0], max_epochs=3)
    assert written == [["checkpoint_epoch=1.pt"], ["checkpoint_epoch=2.pt"], ["checkpoint_epoch=3.pt"]]


def test_checkpoint_that_would_run_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return pathlib.Path.touch, (marker,)

    path = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"network": {}, "trainer": {"iteration": 5}, "payload": Payload()}, path)
    with pytest.raises(DataError, match="not a loadable medvp checkpoint"):
        load_checkpoint(path)
    assert resume_checkpoint(tmp_path) is None
    assert not marker.exists()


def test_resume_picks_the_checkpoint_with_most_iterations_and_skips_a_torn_one(tmp_path):
    torch.save({"trainer": {"iteration": 74}}, tmp_path / "checkpoint_epoch=1.pt")
    torch.save({"trainer": {"iteration": 90}}, tmp_path / "checkpoint_iteration=90.pt")
    (tmp_path / "checkpoint_iteration=100.pt").write_bytes((tmp_path / "checkpoint_epoch=1.pt").read_bytes()[:50])
    path, state = resume_checkpoint(tmp_path)
    assert path.name == "checkpoint_iteration=90.pt" and state["trainer"]["iteration"] == 90


@pytest.mark.slow
def test_cli_reports_a_full_disk_in_one_line(repo_root, small_demo_data, tmp_path, monkeypatch, capsys,
                                            restore_logging):
    _fail_when_writing(monkeypatch, "checkpoint_epoch=1", [])
    code = main(["--quiet", "train", str(repo_root / "configs" / "pneumoniamnist_demo.yaml"),
                 "--set", "training.max_epochs=1", "--set", f"output.root={tmp_path}",
                 "--set", f"data.path={small_demo_data}", "--set", "model.options={channels: [4, 4, 8, 8]}",
                 "--set", "training.progress_bar=false"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert errors == [f"medvp: error: {tmp_path}/pneumoniamnist_demo/checkpoints/checkpoint_epoch=1.pt: cannot write "
                      "the checkpoint (disk full); the previous checkpoint is kept"]
