"""Run directories: where a new run goes, and when ``medvp train`` resumes an unfinished one instead.

The rule (also in README.md): ``output.root/output.name`` and then ``name-2``, ``name-3``, ... are looked at in turn.
A missing or empty folder starts a new run. A finished run (it has ``train_summary.json``) or one that never
wrote a resumable checkpoint is passed over. An unfinished run with a checkpoint is resumed when its configuration
equals the new one (ignoring :data:`IGNORED_FOR_RESUME`), and is an error otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from pipeline.config import Config
from pipeline.engine.checkpoint import CHECKPOINT_DIR
from pipeline.errors import ConfigError, DataError, StorageError

__all__ = ["create_run_dir", "find_run_dir", "check_resumable", "is_finished", "has_resumable_checkpoint",
           "run_lock", "SUMMARY_FILE", "IGNORED_FOR_RESUME", "LOCK_FILE"]

SUMMARY_FILE = "train_summary.json"
# Settings that do not change what is trained: where the run lives, how progress shows, what is evaluated after.
IGNORED_FOR_RESUME = ("output", "evaluation", "training.progress_bar")
LOCK_FILE = ".medvp.lock"


def _candidates(config: Config):
    root, name = config.output.root, config.output.name or "run"
    yield root / name
    index = 2
    while True:
        yield root / f"{name}-{index}"
        index += 1


def _is_empty(folder: Path) -> bool:
    return not folder.exists() or folder.is_dir() and not any(folder.iterdir())


def is_finished(run_dir: Path) -> bool:
    return (run_dir / SUMMARY_FILE).is_file()


def has_resumable_checkpoint(run_dir: Path) -> bool:
    folder = run_dir / CHECKPOINT_DIR
    return any(folder.glob("checkpoint_epoch=*.pt")) or any(folder.glob("checkpoint_iteration=*.pt"))


def _make(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(f"{folder}: cannot create the run directory ({error.strerror or error}); "
                           "check output.root") from None
    return folder


def create_run_dir(config: Config) -> Path:
    """``output.root/output.name``, or the first free ``name-2``, ``name-3``, ... when it is taken."""
    for candidate in _candidates(config):
        if _is_empty(candidate):
            return _make(candidate)
    raise AssertionError("unreachable")


def find_run_dir(config: Config) -> tuple[Path, bool]:
    """The run directory for ``medvp train`` and whether it resumes an unfinished run there.

    Raises:
        ConfigError: an unfinished run of the same name was trained with a different configuration.
    """
    for candidate in _candidates(config):
        if _is_empty(candidate):
            return _make(candidate), False
        if not is_finished(candidate) and has_resumable_checkpoint(candidate):
            check_resumable(config, candidate)
            return candidate, True
    raise AssertionError("unreachable")


def _flatten(document: object, prefix: str = "") -> dict[str, object]:
    if isinstance(document, dict):
        flat: dict[str, object] = {}
        for key, value in document.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): document}


def _ignored(key: str) -> bool:
    return any(key == ignored or key.startswith(f"{ignored}.") for ignored in IGNORED_FOR_RESUME)


def _with_defaults(saved: object) -> dict:
    """A saved configuration with the keys added to the schema since it was written filled in with their
    defaults, so a run from an older version can still be resumed; as written when it no longer validates."""
    if not isinstance(saved, dict):
        return {}
    try:
        return Config.model_validate(saved).model_dump(mode="json")
    except ValueError:
        return saved


def check_resumable(config: Config, run_dir: Path) -> None:
    """Check that ``run_dir`` holds an unfinished run trained with ``config`` (but for the ignored settings).

    Raises:
        DataError: ``run_dir`` is not a run directory, is finished, or has no checkpoint to resume from.
        ConfigError: the configurations differ; names the differing keys.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise DataError(f"{run_dir} is not a medvp run directory (no config.yaml)")
    if is_finished(run_dir):
        raise DataError(f"{run_dir}: this run finished ({SUMMARY_FILE} exists); nothing to resume")
    if not has_resumable_checkpoint(run_dir):
        raise DataError(f"{run_dir}: no checkpoint to resume from (it stopped before its first checkpoint)")
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(f"{saved_path}: unreadable ({type(error).__name__})") from None
    old = {key: value for key, value in _flatten(_with_defaults(saved)).items() if not _ignored(key)}
    new = {key: value for key, value in _flatten(config.model_dump(mode="json")).items() if not _ignored(key)}
    differing = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))
    if differing:
        shown = ", ".join(f"{key} ({old.get(key)!r} -> {new.get(key)!r})" for key in differing[:5])
        more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
        raise ConfigError(f"{run_dir} holds an unfinished run with a different configuration: {shown}{more}; "
                          "train with its config.yaml to resume it, or set output.name for a new run")


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` while training, so a second ``medvp train`` of the same config cannot
    resume a run that is still going. The operating system releases it when the process dies (even by SIGKILL).

    Raises:
        DataError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    try:
        handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise StorageError(f"{run_dir / LOCK_FILE}: cannot create the run lock ({error.strerror or error}); "
                           "check output.root") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{run_dir} is being trained by another medvp process; wait for it to finish, "
                            "or set output.name for a new run") from None
        try:
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as error:
            reason = "disk full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
            raise StorageError(f"{run_dir / LOCK_FILE}: cannot write the run lock ({reason}); free space in "
                               f"{run_dir.parent} or set output.root") from None
        yield
