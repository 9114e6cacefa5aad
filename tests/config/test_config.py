from pathlib import Path

import pytest

from pipeline.config import apply_overrides, load_config, parse_config
from pipeline.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["pneumoniamnist_demo", "pneumoniamnist", "breastmnist", "adrenalmnist3d"])
def test_shipped_configs_validate_and_point_at_embedded_data(repo_root, name):
    config = load_config(repo_root / "configs" / f"{name}.yaml")
    assert config.data.path.is_file()
    assert config.output.name == name


def test_relative_data_path_is_taken_from_the_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    config = load_config(write(tmp_path, "data: {path: sub/x.npz}\n"))
    assert config.data.path == (tmp_path / "sub" / "x.npz").resolve()


def test_errors_name_key_path_value_and_expectation(tmp_path):
    path = write(tmp_path, "data: {path: x.npz, batch_size: 0}\nloss: {feature_sampling_ratio: 1.5}\n"
                           "model: {name: vgg16}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    lines = str(raised.value).splitlines()
    assert f"{path}: data.batch_size = 0: Input should be greater than or equal to 1" in lines
    assert f"{path}: loss.feature_sampling_ratio = 1.5: Input should be less than or equal to 1" in lines
    assert any(line.startswith(f"{path}: model.name = 'vgg16': expected one of [") for line in lines)


def test_unknown_key_lists_the_allowed_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"loss.variance_wieght: unknown key; expected one of .*variance_weight"):
        load_config(write(tmp_path, "data: {path: x.npz}\nloss: {variance_wieght: 0.1}\n"))


def test_missing_section_and_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_config(write(tmp_path, "model: {name: resnet18}\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_config(write(tmp_path, "data:\n  path: [unclosed\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_overrides_set_typed_values_and_new_sections():
    document = apply_overrides({"data": {"path": "a.npz"}}, ["training.max_epochs=3", "loss.taps=[layer1, layer2]",
                                                              "training.amp=false", "data.path=b.npz"])
    assert document == {"data": {"path": "b.npz"}, "training": {"max_epochs": 3, "amp": False},
                        "loss": {"taps": ["layer1", "layer2"]}}
    config = parse_config(document, "cli", Path("/"))
    assert config.training.max_epochs == 3 and config.loss.taps == ["layer1", "layer2"]


@pytest.mark.parametrize("override", ["training.max_epochs", "=3", "training..x=1"])
def test_malformed_override_is_a_config_error(override):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides({}, [override])


def test_override_into_a_value_is_a_config_error():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"data": {"path": "x"}}, ["data.path.deeper=1"])
