"""Errors that mean "the user's input is wrong": the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MedvpError", "ConfigError", "DataError", "StorageError", "first_line", "storage_cause", "os_reason",
           "writing"]

#: what an operating system says when a file cannot be written for reasons of the disk or its permissions
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                             errno.EIO})


class MedvpError(Exception):
    """Base of the expected errors; the message is complete and names the file or key at fault."""


class ConfigError(MedvpError, ValueError):
    """A configuration document, key or value is invalid."""


class DataError(MedvpError, ValueError):
    """A data file is missing, unreadable or not what the configuration says."""


class StorageError(MedvpError, OSError):
    """A run directory cannot be written (full disk, no permission); what was written before stays intact."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of ``error``'s message (at most ``limit`` characters), or its type's name when the
    message is empty: the reason part of a one-line error.

    Example:
        >>> first_line(ValueError("bad shape\\n  at layer 3"))
        'bad shape'
        >>> first_line(EOFError())
        'EOFError'
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(error).__name__


def storage_cause(error: BaseException) -> OSError | None:
    """The ``OSError`` of a full disk, a read-only or forbidden folder behind ``error`` (libraries such as torch
    wrap it in their own exceptions), or None."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.errno in _STORAGE_ERRNOS:
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def os_reason(error: BaseException) -> str:
    """The operating system's reason for a failed write (``disk full`` for ENOSPC), looking through wrapping
    exceptions; else the first line of ``error``."""
    cause = storage_cause(error)
    if cause is None:
        cause = error if isinstance(error, OSError) else None
    if cause is None:
        return first_line(error)
    return "disk full" if cause.errno == errno.ENOSPC else (cause.strerror or first_line(cause))


@contextmanager
def writing(path: Path | str, what: str) -> Iterator[None]:
    """Turn a full disk or a forbidden folder while writing ``what`` to ``path`` into one :class:`StorageError`
    line naming it; other errors pass unchanged.

    Example:
        >>> with writing("out/roc.png", "the figure"):  # doctest: +SKIP
        ...     figure.savefig("out/roc.png")
    """
    try:
        yield
    except MedvpError:
        raise
    except Exception as error:
        if storage_cause(error) is None:
            raise
        raise StorageError(f"{path}: cannot write {what} ({os_reason(error)})") from None
