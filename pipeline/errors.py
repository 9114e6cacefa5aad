"""Errors that mean "the user's input is wrong": the CLI prints them as one line and exits non-zero."""

from __future__ import annotations

__all__ = ["MedvpError", "ConfigError", "DataError", "StorageError"]


class MedvpError(Exception):
    """Base of the expected errors; the message is complete and names the file or key at fault."""


class ConfigError(MedvpError, ValueError):
    """A configuration document, key or value is invalid."""


class DataError(MedvpError, ValueError):
    """A data file is missing, unreadable or not what the configuration says."""


class StorageError(MedvpError, OSError):
    """A run directory cannot be written (full disk, no permission); what was written before stays intact."""
