"""Read a YAML pipeline, apply ``--set`` overrides, validate it once, and write it back resolved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import Config
from pipeline.demo_data import resolve_data_path
from pipeline.errors import ConfigError

__all__ = ["load_config", "parse_config", "apply_overrides", "save_config", "format_validation_error", "read_yaml",
           "load_saved_config"]


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in the YAML file at ``path`` (safe loading: a ``!!python`` tag is refused, not run).

    Raises:
        ConfigError: the file is missing, not UTF-8 text, not YAML, or not a mapping; one line naming the file.
    """
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, loss, ...), "
                          f"got {type(document).__name__}")
    return document


def apply_overrides(document: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``document`` with each ``section.key=value`` set (the value is read as YAML)."""
    result = _deep_copy(document)
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {override!r}: expected section.key=value")
        try:
            value = yaml.safe_load(raw_value) if raw_value else ""
        except yaml.YAMLError:
            value = raw_value
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _deep_copy(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_deep_copy(value) for value in document]
    return document


def _allowed_keys(model: type[BaseModel], location: tuple) -> list[str]:
    """Field names of the section at ``location`` (without its last element)."""
    current: Any = model
    for part in location[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def _key_path(parts: tuple) -> str:
    """``section.key`` for a pydantic location; a key that is not a plain name (empty, with dots, spaces or line
    breaks, not text) is quoted, so the path stays on one line and unambiguous."""
    rendered = []
    for part in parts:
        plain = isinstance(part, str) and part and part.isprintable() and not any(c in part for c in ". \t")
        index = isinstance(part, int) and not isinstance(part, bool)
        rendered.append(str(part) if plain or index else repr(part))
    return ".".join(rendered)


def _field_location(location: tuple, model: type[BaseModel] = Config) -> tuple:
    """The key path of a pydantic location without its union-member tags (``loss.taps.str`` -> ``loss.taps``)."""
    kept: list = []
    current: Any = model
    for part in location:
        fields = getattr(current, "model_fields", None) if isinstance(current, type) else None
        if fields is not None:
            kept.append(part)
            current = fields[part].annotation if part in fields else None
        elif isinstance(part, int) or current is None:
            kept.append(part)
    return tuple(kept)


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] = Config) -> str:
    """One line per problem: ``source: key.path = value: what is expected``."""
    lines: dict[str, list[str]] = {}
    for item in error.errors():
        location = tuple(item["loc"])
        key = _key_path(_field_location(location, model)) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, location)
            lines.setdefault(f"{source}: {key}: unknown key; expected one of {', '.join(allowed)}", [])
        elif item["type"] == "invalid_key":  # a YAML key that is not text (1:, true:, null:)
            parent = _key_path(location[:-1]) or "(top level)"
            lines.setdefault(f"{source}: {parent}: key {item.get('input')!r} is not a name; keys are text", [])
        elif item["type"] == "missing":
            lines.setdefault(f"{source}: {key}: required key is missing", [])
        else:  # the alternatives of a union share one line
            message = " ".join(item["msg"].removeprefix("Value error, ").split())
            lines.setdefault(f"{source}: {key} = {item.get('input')!r}: ", []).append(message)
    return "\n".join(line + " or ".join(dict.fromkeys(messages)) for line, messages in lines.items())


def parse_config(document: dict[str, Any], source: str, base_dir: Path) -> Config:
    """Validate a configuration mapping; relative data paths are taken from ``base_dir``.

    Raises:
        ConfigError: naming each key path, the value given and what is expected.
    """
    try:
        config = Config.model_validate(document)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
    data_path = resolve_data_path(config.data.path, base_dir)
    return config.model_copy(update={"data": config.data.model_copy(update={"path": data_path})})


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate the YAML pipeline at ``path``."""
    path = Path(path)
    document = apply_overrides(read_yaml(path), overrides)
    config = parse_config(document, str(path), path.resolve().parent)
    if config.output.name is None:
        config = config.model_copy(update={"output": config.output.model_copy(update={"name": path.stem})})
    return config


def load_saved_config(path: Path) -> Config:
    """The resolved configuration a run saved with :func:`save_config` (its data path is already absolute)."""
    return parse_config(read_yaml(path), str(path), path.parent)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved configuration (every default filled in, absolute data path) as YAML."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
