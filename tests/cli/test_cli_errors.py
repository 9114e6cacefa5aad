"""Expected errors reach the user as one line on stderr and exit code 2; --debug shows the traceback."""

import pytest

from pipeline.cli import main
from pipeline.errors import DataError


@pytest.fixture
def corrupt_data_config(demo_data, tmp_path):
    data = tmp_path / "truncated.npz"
    data.write_bytes(demo_data.read_bytes()[:5000])
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  path: {data}\noutput:\n  root: {tmp_path / 'runs'}\n")
    return config, data


def test_a_corrupt_data_file_is_one_line_naming_the_file(corrupt_data_config, capsys, restore_logging):
    config, data = corrupt_data_config
    assert main(["--quiet", "train", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"medvp: error: {data}: ")


def test_debug_lets_the_error_and_its_traceback_through(corrupt_data_config, restore_logging):
    config, data = corrupt_data_config
    with pytest.raises(DataError, match=str(data)):
        main(["--debug", "train", str(config)])


def test_resume_of_a_directory_without_a_run_is_one_line(repo_root, tmp_path, capsys, restore_logging):
    code = main(["--quiet", "train", str(repo_root / "configs" / "pneumoniamnist_demo.yaml"), "--resume",
                 str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"medvp: error: {tmp_path} is not a medvp run directory (no config.yaml)"


def test_config_error_is_one_line_per_problem(tmp_path, repo_root, medvp_in_process):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: ../x.npz}\nloss: {feature_sampling_ratio: 2}\n")
    result = medvp_in_process("validate", bad)
    assert result.returncode == 2
    assert result.stderr.strip() == f"medvp: error: {bad}: loss.feature_sampling_ratio = 2: " \
                                    "Input should be less than or equal to 1"
    demo = repo_root / "configs" / "pneumoniamnist_demo.yaml"
    result = medvp_in_process("train", demo, "--set", "model.name=alexnet")
    assert result.returncode == 2 and "model.name = 'alexnet': expected one of" in result.stderr


def test_missing_data_and_run_dir_are_clear_errors(tmp_path, repo_root, medvp_in_process):
    demo = repo_root / "configs" / "pneumoniamnist_demo.yaml"
    result = medvp_in_process("validate", demo, "--set", "data.path=nothing.npz")
    assert result.returncode == 2 and "nothing.npz" in result.stderr
    result = medvp_in_process("evaluate", tmp_path)
    assert result.returncode == 2 and "is not a medvp run directory" in result.stderr


def test_network_too_deep_for_the_input_size_is_a_config_error(tmp_path, repo_root, medvp_in_process):
    result = medvp_in_process("train", repo_root / "configs" / "pneumoniamnist_demo.yaml", "--set",
                              "model.name=densenet121", "--set", "model.options={}", "--set", f"output.root={tmp_path}")
    assert result.returncode == 2
    assert "cannot take inputs of shape [1, 28, 28]" in result.stderr and "preprocessing.spatial_size" in result.stderr


def test_tune_seeds_that_are_not_numbers_are_one_line(repo_root, tmp_path, medvp_in_process):
    spec = repo_root / "benchmarks" / "specs" / "pneumoniamnist_scarce_cpu.yaml"
    result = medvp_in_process("tune", "--spec", spec, "--n", "50", "--seeds", "0,one", "--out", tmp_path / "tuning")
    assert result.returncode == 2
    assert result.stderr.strip() == "medvp: error: --seeds '0,one': expected whole numbers separated by commas, " \
                                    "e.g. 0,1,2"
