"""Hostile and careless config files: one line each, refused before anything expensive happens."""

import errno
import time

import pytest

from pipeline.config import apply_overrides, load_config, parse_config
from pipeline.config.loader import MAX_NODES, read_yaml
from pipeline.errors import ConfigError


def _write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _laughs(levels=9):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        previous, current = chr(96 + level), chr(97 + level)
        lines.append(f"{current}: &{current} [{', '.join([f'*{previous}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("data: {path: a.npz}\nmodel: {name: simplecnn}\ndata: {path: b.npz}\n",
     "line 3, column 1: duplicate key 'data' (first given on line 1)"),
    ("data: {path: a.npz, path: b.npz}\n", "duplicate key 'path' (first given on line 1)"),
    (_laughs(), f"the document is more than {MAX_NODES} values once its aliases (*name) are expanded; refused"),
    ("a: " + "[" * 20000 + "]" * 20000 + "\n", "the document is nested more than 64 levels deep; refused"),
])
def test_duplicate_keys_alias_bombs_and_deep_nesting_are_one_line(tmp_path, text, expected):
    path = _write(tmp_path, text)
    started = time.perf_counter()
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: ") and str(raised.value).endswith(expected)
    assert len(str(raised.value).splitlines()) == 1
    assert time.perf_counter() - started < 5


def test_overrides_copy_only_the_path_they_set_and_keep_aliases_shared(tmp_path):
    document = read_yaml(_write(tmp_path, "shared: &s {k: 1, big: [1, 2, 3]}\nother: *s\n"))
    result = apply_overrides(document, ["shared.k=2"])
    assert result == {"shared": {"k": 2, "big": [1, 2, 3]}, "other": {"k": 1, "big": [1, 2, 3]}}
    assert document["shared"]["k"] == 1  # the caller's document is unchanged
    assert result["other"] is document["other"] and result["shared"]["big"] is document["shared"]["big"]


def test_unreadable_and_non_regular_config_files_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=f"^config file {tmp_path} is a directory; expected a YAML file$"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="^config file /dev/null is not a regular file; expected a YAML file$"):
        load_config("/dev/null")
    path = _write(tmp_path, "data: {path: a.npz}\n")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("pipeline.config.loader.open", refuse, raising=False)
    with pytest.raises(ConfigError, match=f"^config file {path}: cannot be read \\(Permission denied\\)$"):
        load_config(path)


@pytest.mark.parametrize(("section", "key"), [("optimizer", "lr"), ("optimizer", "weight_decay"),
                                              ("loss", "variance_weight"), ("loss", "lambda_"),
                                              ("evaluation", "confidence"), ("preprocessing", "target_range")])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), float("-inf")])
def test_every_float_is_finite(tmp_path, section, key, value):
    value = [0.0, value] if key == "target_range" else value
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
        parse_config({"data": {"path": "a.npz"}, section: {key: value}}, "c.yaml", tmp_path)


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "a\\b", "..", ".", "", ".hidden", "bad\nname"])
def test_output_name_is_one_safe_folder(tmp_path, name):
    with pytest.raises(ConfigError, match="output.name .*expected a single folder name"):
        parse_config({"data": {"path": "a.npz"}, "output": {"name": name}}, "c.yaml", tmp_path)
