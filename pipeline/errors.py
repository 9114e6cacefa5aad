"""Errors that mean "the user's input is wrong": the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["MedvpError", "ConfigError", "DataError", "StorageError", "first_line"]


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
