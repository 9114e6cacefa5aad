"""Property-based tests over configuration documents and --set overrides: every document either validates or
raises ConfigError whose every line names a key path; nothing else escapes."""

import re
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pipeline.config import Config, apply_overrides, parse_config
from pipeline.errors import ConfigError

EXAMPLES = 250
SOURCE = "fuzz.yaml"
BASE = Path("/nonexistent/configs")


def _schema_keys(model: type[BaseModel]) -> dict[str, dict]:
    keys = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        keys[name] = _schema_keys(annotation) if isinstance(annotation, type) and issubclass(annotation, BaseModel) \
            else {}
    return keys


SCHEMA = _schema_keys(Config)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 300), st.floats(),
                    st.floats(0, 1), st.text(max_size=12), st.sampled_from(["auto", "cpu", "adam", "cosine", "best",
                                                                            "simplecnn", "resnet18", "test", "1e-3"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)
odd_keys = st.one_of(st.text(max_size=10), st.integers(), st.booleans(), st.none())


def _section(keys: dict[str, dict]):
    known = st.sampled_from(sorted(keys)) if keys else st.nothing()
    return st.dictionaries(st.one_of(known, known, odd_keys), st.deferred(lambda: _value_for(keys)), max_size=6)


def _value_for(keys: dict[str, dict]):
    nested = [_section(sub) for sub in keys.values() if sub]
    return st.one_of(values, *nested)


documents = st.dictionaries(st.one_of(st.sampled_from(sorted(SCHEMA)), odd_keys),
                            st.one_of(values, *[_section(sub) for sub in SCHEMA.values() if sub]), max_size=9)


def _paths(document, prefixes=("",)) -> set[str]:
    """Every key path a message may name: document paths (list items by index; a key as text or quoted) and
    schema paths."""
    found = {prefix.rstrip(".") for prefix in prefixes if prefix}
    if isinstance(document, dict):
        for key, value in document.items():
            found |= _paths(value, [f"{prefix}{form}." for prefix in prefixes for form in {str(key), repr(key)}])
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found |= _paths(value, [f"{prefix}{index}." for prefix in prefixes])
    return found


SCHEMA_PATHS = _paths(SCHEMA)


def _assert_validates_or_names_keys(document) -> None:
    try:
        config = parse_config(document, SOURCE, BASE)
    except ConfigError as error:
        paths = _paths(document) | SCHEMA_PATHS | {"(top level)"}
        lines = str(error).split("\n")
        assert lines and all(line.startswith(f"{SOURCE}: ") for line in lines), str(error)
        for line in lines:
            rest = line[len(SOURCE) + 2:]
            # a path (quoted keys taken whole: they may hold ": "), then items of a tuple or list it holds
            name = re.match(r"((?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^'\"])*?)(\.\d+)*( = |: )", rest)
            assert name and name.group(1) in paths, line
    else:
        assert isinstance(config, Config) and config.data.path.is_absolute()


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(document=documents)
@example(document={"'": {}, "a: b": None})  # keys holding a quote or ": " (found by this test once)
def test_any_document_validates_or_raises_config_error_naming_key_paths(document):
    _assert_validates_or_names_keys(document)


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(document=st.fixed_dictionaries({"data": _section(SCHEMA["data"])}, optional={
    name: _section(sub) for name, sub in SCHEMA.items() if sub and name != "data"}))
@example(document={"data": {": ": {}}, "'": {}})  # keys holding ": " and a quote (found by these tests once)
def test_documents_close_to_the_schema_validate_or_name_key_paths(document):
    _assert_validates_or_names_keys(document)


key_paths = st.one_of(st.sampled_from(sorted(SCHEMA_PATHS)), st.text(max_size=20))
overrides = st.one_of(st.builds(lambda key, value: f"{key}={value}", key_paths, st.text(max_size=20)),
                      st.text(max_size=30))


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True)
@given(settings_=st.lists(overrides, max_size=4))
def test_set_overrides_apply_or_raise_config_error(settings_):
    base = {"data": {"path": "data.npz"}, "training": {"max_epochs": 2}}
    try:
        document = apply_overrides(base, settings_)
    except ConfigError as error:
        assert str(error).startswith("--set ")
        return
    assert base == {"data": {"path": "data.npz"}, "training": {"max_epochs": 2}}  # the input is not changed
    _assert_validates_or_names_keys(document)
