"""Read a YAML pipeline, apply ``--set`` overrides, validate it once, and write it back resolved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import Config
from pipeline.errors import ConfigError

__all__ = ["load_config", "parse_config", "apply_overrides", "save_config", "format_validation_error"]


def _read_yaml(path: Path) -> dict[str, Any]:
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


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] = Config) -> str:
    """One line per problem: ``source: key.path = value: what is expected``."""
    lines = []
    for item in error.errors():
        location = tuple(item["loc"])
        key = ".".join(str(part) for part in location) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, location)
            lines.append(f"{source}: {key}: unknown key; expected one of {', '.join(allowed)}")
        elif item["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            message = item["msg"].removeprefix("Value error, ")
            value = repr(item.get("input"))
            value = value if len(value) <= 60 else value[:57] + "..."
            lines.append(f"{source}: {key} = {value}: {message}")
    return "\n".join(lines)


def parse_config(document: dict[str, Any], source: str, base_dir: Path) -> Config:
    """Validate a configuration mapping; relative data paths are taken from ``base_dir``.

    Raises:
        ConfigError: naming each key path, the value given and what is expected.
    """
    try:
        config = Config.model_validate(document)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source)) from None
    data_path = config.data.path if config.data.path.is_absolute() else (base_dir / config.data.path).resolve()
    return config.model_copy(update={"data": config.data.model_copy(update={"path": data_path})})


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate the YAML pipeline at ``path``."""
    path = Path(path)
    document = apply_overrides(_read_yaml(path), overrides)
    config = parse_config(document, str(path), path.resolve().parent)
    if config.output.name is None:
        config = config.model_copy(update={"output": config.output.model_copy(update={"name": path.stem})})
    return config


def save_config(config: Config, path: Path) -> None:
    """Write the resolved configuration (every default filled in, absolute data path) as YAML."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
