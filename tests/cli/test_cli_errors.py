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
