"""The run-directory rule: new run, resume of an unfinished run with the same config, or a clear error."""

import pytest

from pipeline.config import parse_config, save_config
from pipeline.engine import check_resumable, find_run_dir
from pipeline.errors import ConfigError, DataError


def _config(demo_data, tmp_path, **training):
    return parse_config({"data": {"path": str(demo_data)}, "training": training,
                         "output": {"root": str(tmp_path), "name": "run"}}, "test", tmp_path)


def _unfinished_run(folder, config, checkpoint="checkpoint_iteration=30.pt"):
    (folder / "checkpoints").mkdir(parents=True)
    save_config(config, folder / "config.yaml")
    if checkpoint:
        (folder / "checkpoints" / checkpoint).write_bytes(b"")
    return folder


def test_a_new_name_starts_a_new_run(demo_data, tmp_path):
    assert find_run_dir(_config(demo_data, tmp_path)) == (tmp_path / "run", False)


def test_an_unfinished_run_with_the_same_config_is_resumed(demo_data, tmp_path):
    config = _config(demo_data, tmp_path)
    _unfinished_run(tmp_path / "run", config)
    assert find_run_dir(config.model_copy(update={"training": config.training.model_copy(
        update={"progress_bar": True})})) == (tmp_path / "run", True)


def test_a_run_saved_before_a_config_key_existed_resumes_when_the_new_key_has_its_default(demo_data, tmp_path):
    import yaml

    config = _config(demo_data, tmp_path)
    saved = _unfinished_run(tmp_path / "run", config) / "config.yaml"
    document = yaml.safe_load(saved.read_text())
    del document["loss"]["variance_scope"], document["training"]["sync_batchnorm"]
    saved.write_text(yaml.safe_dump(document))
    assert find_run_dir(config) == (tmp_path / "run", True)
    changed = config.model_copy(update={"loss": config.loss.model_copy(update={"variance_scope": "global"})})
    with pytest.raises(ConfigError, match=r"loss\.variance_scope \('local' -> 'global'\)"):
        check_resumable(changed, tmp_path / "run")


def test_an_unfinished_run_with_another_config_is_an_error_naming_the_keys(demo_data, tmp_path):
    _unfinished_run(tmp_path / "run", _config(demo_data, tmp_path))
    with pytest.raises(ConfigError, match=r"training\.max_epochs \(10 -> 3\).*set output\.name for a new run"):
        find_run_dir(_config(demo_data, tmp_path, max_epochs=3))


def test_finished_runs_and_runs_without_a_checkpoint_get_a_new_directory(demo_data, tmp_path):
    config = _config(demo_data, tmp_path)
    _unfinished_run(tmp_path / "run", config)
    (tmp_path / "run" / "train_summary.json").write_text("{}")
    _unfinished_run(tmp_path / "run-2", config, checkpoint=None)
    assert find_run_dir(config) == (tmp_path / "run-3", False)
    _unfinished_run(tmp_path / "run-4", config)
    assert find_run_dir(config) == (tmp_path / "run-3", False)  # run-3 exists but is empty


def test_explicit_resume_of_a_finished_or_foreign_directory_is_an_error(demo_data, tmp_path):
    config = _config(demo_data, tmp_path)
    with pytest.raises(DataError, match="not a medvp run directory"):
        check_resumable(config, tmp_path)
    _unfinished_run(tmp_path / "run", config)
    (tmp_path / "run" / "train_summary.json").write_text("{}")
    with pytest.raises(DataError, match="this run finished"):
        check_resumable(config, tmp_path / "run")


def test_a_run_being_trained_cannot_be_trained_again_until_its_process_ends(demo_data, tmp_path):
    from pipeline.engine import train
    from pipeline.engine.rundir import run_lock

    config = _config(demo_data, tmp_path)
    run_dir = _unfinished_run(tmp_path / "run", config)
    with run_lock(run_dir):  # as another process training it would
        with pytest.raises(DataError, match="is being trained by another medvp process"):
            train(config, run_dir, resume=True)
    with run_lock(run_dir):  # released
        pass


def test_an_output_root_that_cannot_hold_folders_is_a_storage_error(demo_data, tmp_path):
    from pipeline.errors import StorageError

    (tmp_path / "a-file").write_text("")
    config = _config(demo_data, tmp_path / "a-file")
    with pytest.raises(StorageError, match=r"a-file/run: cannot create the run directory \(Not a directory\); "
                                           "check output.root"):
        find_run_dir(config)
