"""Read a YAML pipeline, apply ``--set`` overrides, validate it once, and write it back resolved."""

from __future__ import annotations

import stat
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


#: bounds checked on the event stream, before anything is built: a config nests a few levels and holds a few hundred
#: values; an alias "billion laughs" document expands exponentially, and deep nesting overflows the recursive builder
MAX_DEPTH = 64
MAX_NODES = 100_000
MAX_BYTES = 1 << 20


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that gives a key twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_shape(text: str) -> str | None:
    """What is wrong with the document's size or nesting (aliases counted expanded), or None; reads the parser's
    events only, so a bomb is refused before it is expanded."""
    stack: list[list] = []  # [anchor, expanded size] of each open collection
    sizes: dict[str, int] = {}
    total = 0

    def add(count: int) -> int:
        if stack:
            stack[-1][1] += count
            return stack[-1][1]
        return total + count

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep"
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, count = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            count = sizes.get(event.anchor, 1)
        else:
            continue
        size = add(count)
        if not stack:
            total = size
        if size > MAX_NODES:
            return f"more than {MAX_NODES} values once its aliases (*name) are expanded"
    return None


def _read_text(path: Path) -> str:
    """The file's text; one line for a missing, non-regular, unreadable, oversized or non-UTF-8 file."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(f"config file {path} is {kind}; expected a YAML file")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot be read ({error.strerror or error})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"config file {path}: larger than {MAX_BYTES} bytes; a medvp config is a few kilobytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in the YAML file at ``path`` (safe loading: a ``!!python`` tag is refused, not run; a duplicated
    key, an alias bomb or nesting past :data:`MAX_DEPTH` is refused before anything is built).

    Raises:
        ConfigError: the file is missing, not a regular file, unreadable, too large, not UTF-8 text, not YAML, or
            not a mapping; one line naming the file.
    """
    text = _read_text(path)
    try:
        problem = _check_shape(text)
        if problem is not None:
            raise ConfigError(f"{path}: the document is {problem}; refused")
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, loss, ...), "
                          f"got {type(document).__name__}")
    return document


def apply_overrides(document: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``document`` with each ``section.key=value`` set (the value is read as YAML)."""
    # Copy-on-write along each override's key path only: the rest stays shared with ``document`` (aliased values
    # are not expanded, and the caller's document is not changed).
    result = dict(document)
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
            child = node.get(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {override!r}: {part} is a value, not a section")
            node[part] = node = dict(child)
        node[parts[-1]] = value
    return result


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
    """``section.key`` for a pydantic location; a key that is not a plain name (empty, with dots, spaces, quotes,
    colons or line breaks, not text) is quoted, so the path stays on one line and unambiguous."""
    rendered = []
    for part in parts:
        plain = isinstance(part, str) and part and part.isprintable() and not any(c in part for c in ". \t'\":")
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
