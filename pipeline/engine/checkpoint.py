"""Checkpoint files of a run: atomic, fsync'ed writes with ignite's ``DiskSaver``, and safe loading.

Layout of ``run_dir/checkpoints``:

- ``best.pt``: the network's state dict at the best validation AUC so far;
- ``checkpoint_epoch=N.pt``: everything needed to resume after epoch ``N`` (the last one only);
- ``checkpoint_iteration=I.pt``: the same after training iteration ``I`` (``training.checkpoint_every_iterations``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import ignite.distributed as idist
import torch
from ignite.handlers import Checkpoint, DiskSaver

from pipeline.errors import DataError, StorageError, first_line, os_reason

__all__ = ["AtomicDiskSaver", "CHECKPOINT_DIR", "BEST_CHECKPOINT", "EPOCH_PATTERN", "ITERATION_PATTERN",
           "load_checkpoint", "resume_checkpoint", "adopt_saved_files",
           "remove_orphaned_temporaries", "delete_checkpoints", "write_atomically", "write_run_file"]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.pt"
EPOCH_PATTERN = "checkpoint_epoch={global_step}.{ext}"
ITERATION_PATTERN = "checkpoint_iteration={global_step}.{ext}"
_RESUMABLE = re.compile(r"checkpoint_(epoch|iteration)=(\d+)\.pt")
# AtomicDiskSaver's temporary files: ".<target name>.<random>.tmp"
_TEMPORARY = re.compile(r"\.(checkpoint_(epoch|iteration)=\d+\.pt|best\.pt)\.[^/]+\.tmp")


class AtomicDiskSaver(DiskSaver):
    """ignite's ``DiskSaver`` made crash-safe: each checkpoint goes to a temporary file in the same folder, is
    flushed and fsync'ed, then renamed over the target (and the folder fsync'ed), so a reader sees the old file or
    the new one, never a torn one. A file ignite asks to remove is only deleted once the next save succeeded, so a
    failed save (full disk) leaves the previous checkpoint in place.

    Args:
        dirname: the checkpoint folder (created when missing).
        filename: a fixed name for every save (e.g. ``best.pt``) instead of ignite's generated one.

    Raises (on save):
        StorageError: the folder cannot be written; names the file and the reason.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None) -> None:
        try:
            super().__init__(dirname=str(dirname), atomic=True, create_dir=True, require_empty=False)
        except OSError as error:
            raise StorageError(f"{dirname}: cannot create the checkpoint folder ({error.strerror or error})") from None
        self.filename = filename
        self._stale: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint, filename, metadata)  # writes on rank save_on_rank (0) only
        if idist.get_rank() != self.save_on_rank:
            self._stale.clear()
            return
        for stale in self._stale:
            if stale != filename:
                (self.dirname / stale).unlink(missing_ok=True)
        self._stale.clear()

    def remove(self, filename: str) -> None:
        """Defer the removal to after the next successful save (ignite removes before it saves)."""
        self._stale.append(self.filename or filename)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        temporary = None
        try:
            with tempfile.NamedTemporaryFile(dir=self.dirname, prefix=f".{path.name}.", suffix=".tmp",
                                             delete=False) as handle:
                temporary = Path(handle.name)
                func(checkpoint, handle, **self.kwargs)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            temporary = None
            os.chmod(path, os.stat(path).st_mode | stat.S_IRGRP | stat.S_IROTH)
            _fsync_folder(self.dirname)
        except (OSError, RuntimeError) as error:  # torch.save reports a failed write as a RuntimeError
            raise StorageError(f"{path}: cannot write the checkpoint ({os_reason(error)}); "
                               "the previous checkpoint is kept") from None
        finally:
            if temporary is not None:
                temporary.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.

    Raises:
        DataError: when the file is unreadable, truncated, or holds anything but weights and plain state.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} not found") from None
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for a bad file
        raise DataError(f"{path}: not a loadable medvp checkpoint ({first_line(error)})") from None


def resume_checkpoint(checkpoint_dir: Path) -> tuple[Path, dict] | None:
    """The resumable checkpoint with the most training iterations, loaded; None when there is none.

    A file that does not load (e.g. cut short by a crash outside ``AtomicDiskSaver``) is skipped with a warning.
    """
    best: tuple[int, Path, dict] | None = None
    for path in sorted(checkpoint_dir.glob("checkpoint_*=*.pt")):
        if not _RESUMABLE.fullmatch(path.name):
            continue
        try:
            state = load_checkpoint(path)
            iteration = int(state["trainer"]["iteration"])
        except (DataError, KeyError, TypeError, ValueError) as error:
            logger.warning("skipping %s: %s", path, error)
            continue
        if best is None or iteration > best[0]:
            best = (iteration, path, state)
    return None if best is None else (best[1], best[2])


def adopt_saved_files(checkpoint: Checkpoint, folder: Path, pattern: str) -> None:
    """Let a fresh ignite ``Checkpoint`` own the files an earlier process wrote with ``pattern``, so its
    ``n_saved`` rotation replaces them instead of leaving them behind."""
    prefix = pattern.split("{")[0]
    saved = []
    for path in folder.glob(f"{prefix}*.pt"):
        step = path.stem[len(prefix):]
        if step.isdigit():
            saved.append((int(step), path.name))
    checkpoint.load_state_dict({"_saved": sorted(saved)})


def remove_orphaned_temporaries(checkpoint_dir: Path) -> list[str]:
    """Delete the temporary files of checkpoint writes a killed process left in ``checkpoint_dir``.

    Call it only while holding the run's lock (no other process of this run can be writing); files that are not
    :class:`AtomicDiskSaver` temporaries are left alone. Returns the names removed.
    """
    removed = []
    if not checkpoint_dir.is_dir():
        return removed
    for path in checkpoint_dir.iterdir():
        if _TEMPORARY.fullmatch(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        logger.info("removed %d temporary checkpoint file(s) of an interrupted write: %s", len(removed),
                    ", ".join(sorted(removed)))
    return removed


def delete_checkpoints(run_dir: Path) -> None:
    """Delete a run's checkpoint folder, once nothing will resume it or read its weights (a finished benchmark
    run whose result is written, a tuning trial that is scored or pruned): a ResNet-18 run's checkpoints take
    about 170 MB, so a study of a thousand runs would fill a disk. Its curves and logs stay."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(handle)`` on a temporary file of this process, fsync it and rename it over
    ``path``: a reader sees the old file or the whole new one, and two processes writing the same file at once
    (benchmark shards materializing one training subset) each rename their own temporary. ``OSError`` propagates
    to the caller, which names what the file is; the temporary is removed either way."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_run_file(path: Path, text: str, after: str = "the checkpoints are kept, rerun to finish") -> None:
    """Write a run file (metrics, summary, a benchmark's spec record) atomically (:func:`write_atomically`): a full
    disk or a read-only folder is a one-line :class:`StorageError` naming the file and saying what state it leaves
    (``after``), and the previous version of the file, if any, stays intact.
    """
    try:
        write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))
    except OSError as error:
        raise StorageError(f"{path}: cannot write ({os_reason(error)}); {after}") from None
