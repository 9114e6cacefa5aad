"""Run directories: the :class:`RunDir` type that owns a run's files, where a new run goes, and when
``medvp train`` resumes an unfinished one instead.

Every reader and writer of a run (train, evaluate, predict, export-bundle, the experiments runner, resume) goes
through :class:`RunDir`; the file names below are written nowhere else.

The rule (also in README.md): ``output.root/output.name`` and then ``name-2``, ``name-3``, ... are looked at in turn.
A missing or empty folder starts a new run. A finished run (it has ``train_summary.json``) or one that never
wrote a resumable checkpoint is passed over. An unfinished run with a checkpoint is resumed when its configuration
equals the new one (ignoring :data:`IGNORED_FOR_RESUME`), and is an error otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.config import Config, load_saved_config, read_yaml, save_config
from pipeline.config.loader import format_validation_error
from pipeline.data import DatasetInfo
from pipeline.engine.checkpoint import BEST_CHECKPOINT, CHECKPOINT_DIR, load_checkpoint, write_run_file
from pipeline.engine.history import json_safe
from pipeline.errors import ConfigError, DataError, StorageError, first_line

__all__ = ["RunDir", "RunSummary", "create_run_dir", "find_run_dir", "check_resumable", "is_finished",
           "has_resumable_checkpoint", "run_lock", "IGNORED_FOR_RESUME"]

# Settings that do not change what is trained: where the run lives, how progress shows, what is evaluated after.
IGNORED_FOR_RESUME = ("output", "evaluation", "training.progress_bar")

Which = Literal["best", "last"]


class RunSummary(BaseModel):
    """``train_summary.json``: what a finished run trained on, how it went, and where (written once, at the end)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    epochs_run: int
    #: the epoch of the best checkpoint, chosen by ``selection_metric``
    best_epoch: int
    #: validation AUC and validation loss (the classification term) at ``best_epoch``
    best_val_auc: float | None
    best_val_loss: float | None = None
    #: the validation metric that chose ``best_epoch``; runs written before it was recorded used val_auc
    selection_metric: str = "val_auc"
    train_seconds: float
    resumed_from: dict | None = None
    hardware: str = ""
    deterministic: bool = True
    autocast: str | None = None
    task: str
    class_names: list[str]
    in_channels: int
    spatial_dims: int
    input_shape: list[int]
    taps: list[str] = []
    versions: dict[str, str] = {}
    split_made_here: bool = False
    items: dict[str, int] = {}
    skipped_items: int = 0
    unsafe_augmentation: list[str] = []
    distributed: dict | None = None
    #: the axis order of every source (``"monai"``); None in runs written before it was recorded
    axis_order: str | None = None

    @property
    def info(self) -> DatasetInfo:
        """The dataset description the network was built for (task, classes, channels, preprocessed shape)."""
        return DatasetInfo(task=self.task, class_names=list(self.class_names), in_channels=self.in_channels,
                           spatial_dims=self.spatial_dims, spatial_shape=tuple(self.input_shape[1:]))


class RunDir:
    """A run directory and its layout::

        config.yaml              the resolved configuration (every default filled in)
        train_summary.json       RunSummary, written when training finished
        metrics.csv/.json        one record per epoch; curves.png plots them
        splits.csv               every item's split; skipped_items.csv: items left out as unreadable
        checkpoints/             best.pt (network weights), checkpoint_epoch=N.pt / checkpoint_iteration=I.pt
        metrics_<split>.json     evaluation of a split; predictions_<split>.csv: its per-item probabilities
        tensorboard/, cache/     TensorBoard events; MONAI's persistent cache (data.cache = disk)

    Reading refuses a file that is not what it should be with one line naming it (:mod:`pipeline.errors`).
    """

    CONFIG = "config.yaml"
    SUMMARY = "train_summary.json"
    LOCK = ".medvp.lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- paths -------------------------------------------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def summary_file(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def lock_file(self) -> Path:
        return self.path / self.LOCK

    @property
    def history_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def history_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def curves(self) -> Path:
        return self.path / "curves.png"

    @property
    def splits_table(self) -> Path:
        return self.path / "splits.csv"

    @property
    def skipped_table(self) -> Path:
        return self.path / "skipped_items.csv"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def cache_dir(self) -> Path:
        return self.path / "cache"

    def metrics_file(self, split: str) -> Path:
        return self.path / f"metrics_{split}.json"

    def predictions_file(self, split: str) -> Path:
        return self.path / f"predictions_{split}.csv"

    # -- state -------------------------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_file.is_file()

    def is_finished(self) -> bool:
        return self.summary_file.is_file()

    def has_resumable_checkpoint(self) -> bool:
        folder = self.checkpoint_dir
        return any(folder.glob("checkpoint_epoch=*.pt")) or any(folder.glob("checkpoint_iteration=*.pt"))

    # -- reading -----------------------------------------------------------------------------------------------------
    def config(self) -> Config:
        """The resolved configuration the run was trained with.

        Raises:
            DataError: not a run directory. ConfigError: ``config.yaml`` is not YAML or not a medvp configuration.
        """
        self._require_config()
        return load_saved_config(self.config_file)

    def config_document(self) -> dict:
        """``config.yaml`` as the plain mapping it holds (for writing it elsewhere, e.g. a bundle's train.yaml)."""
        self._require_config()
        return read_yaml(self.config_file)

    def summary(self) -> RunSummary:
        """The finished run's summary.

        Raises:
            DataError: no ``train_summary.json`` (training did not finish), or it is truncated or not a summary.
        """
        path = self.summary_file
        if not path.is_file():
            raise DataError(f"{self.path}: no {self.SUMMARY}; did training finish?")
        try:
            return RunSummary.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable run summary ({first_line(error)})") from None
        except ValidationError as error:
            raise DataError(format_validation_error(error, str(path), RunSummary).replace("\n", "; ")) from None

    def metrics(self, split: str) -> dict | None:
        """The evaluation report of ``split`` (``medvp evaluate``), None when the split was not evaluated."""
        path = self.metrics_file(split)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable metrics report ({first_line(error)})") from None

    def history(self) -> list[dict]:
        """The per-epoch records (``metrics.json``)."""
        try:
            return json.loads(self.history_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{self.history_json}: not a readable history ({first_line(error)})") from None

    def checkpoint(self, which: Which) -> Path:
        """``best``: the weights of the highest validation AUC; ``last``: the latest epoch checkpoint.

        Raises:
            DataError: there is no such checkpoint.
        """
        if which not in ("best", "last"):
            raise ConfigError(f"checkpoint {which!r}: expected best or last")
        directory = self.checkpoint_dir
        if which == "best":
            path = directory / BEST_CHECKPOINT
        else:
            epochs = sorted(directory.glob("checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
            path = epochs[-1] if epochs else directory / "checkpoint_epoch=?.pt"
        if not path.is_file():
            raise DataError(f"{self.path}: no {which} checkpoint ({path.name}); did training finish an epoch?")
        return path

    def weights(self, which: Which) -> dict[str, torch.Tensor]:
        """The network's state dict in checkpoint ``which``, loaded safely (tensors only, never pickled code)."""
        return network_weights(self.checkpoint(which))

    def load_weights(self, network: torch.nn.Module, which: Which = "best") -> None:
        """Load checkpoint ``which`` into ``network``.

        Raises:
            DataError: the checkpoint is unreadable, holds code, or does not fit the network.
        """
        load_weights(network, self.checkpoint(which))

    # -- writing -----------------------------------------------------------------------------------------------------
    def save_config(self, config: Config) -> None:
        save_config(config, self.config_file)

    def write_summary(self, summary: RunSummary) -> None:
        document = summary.model_dump(mode="json", exclude={"distributed"} if summary.distributed is None else None)
        text = json.dumps(json_safe(document), indent=1)
        write_run_file(self.summary_file, text)

    def _require_config(self) -> None:
        if not self.config_file.is_file():
            raise DataError(f"{self.path} is not a medvp run directory (no {self.CONFIG})")


def network_weights(path: Path) -> dict[str, torch.Tensor]:
    """A network state dict from ``path``: a plain state dict (``best.pt``, a bundle's ``model.pt``) or an epoch
    checkpoint's ``network`` entry, loaded with ``weights_only``.

    Raises:
        DataError: the file is unreadable, holds anything but weights and plain state, or is no state dict.
    """
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("network"), dict):
        state = state["network"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise DataError(f"{path}: not a network state dict (expected parameter names mapped to tensors)")
    return state


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load the weights at ``path`` (see :func:`network_weights`) into ``network``.

    Raises:
        DataError: the file is not loadable weights, or its parameter names or shapes do not fit ``network``.
    """
    try:
        network.load_state_dict(network_weights(path))
    except RuntimeError as error:
        raise DataError(f"{path}: weights do not fit the network ({first_line(error, 200)})") from None


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
    return RunDir(run_dir).is_finished()


def has_resumable_checkpoint(run_dir: Path) -> bool:
    return RunDir(run_dir).has_resumable_checkpoint()


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
    run = RunDir(run_dir)
    if not run.is_run():
        raise DataError(f"{run_dir} is not a medvp run directory (no {RunDir.CONFIG})")
    if run.is_finished():
        raise DataError(f"{run_dir}: this run finished ({RunDir.SUMMARY} exists); nothing to resume")
    if not run.has_resumable_checkpoint():
        raise DataError(f"{run_dir}: no checkpoint to resume from (it stopped before its first checkpoint)")
    saved = run.config_document()
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
    lock_file = RunDir(run_dir).lock_file
    try:
        handle = open(lock_file, "a+", encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as error:
        raise StorageError(f"{lock_file}: cannot create the run lock ({error.strerror or error}); "
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
            raise StorageError(f"{lock_file}: cannot write the run lock ({reason}); free space in "
                               f"{run_dir.parent} or set output.root") from None
        yield
