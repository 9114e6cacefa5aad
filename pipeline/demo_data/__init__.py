"""The demo datasets shipped inside the package (official MedMNIST v2 files; see README.md here).

A configuration names one with ``data.path: medvp:<file name>`` (e.g. ``medvp:pneumoniamnist.npz``), which
:func:`resolve_data_path` turns into the installed file, so the demo configs work from a wheel, a Docker image or
an editable checkout alike. The files are read through :mod:`importlib.resources`, never from the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.errors import ConfigError

__all__ = ["PACKAGED_PREFIX", "DEMO_FILES", "packaged_file", "resolve_data_path"]

#: ``data.path`` values starting with this name a file shipped in this package.
PACKAGED_PREFIX = "medvp:"
DEMO_FILES = ("pneumoniamnist.npz", "breastmnist.npz", "adrenalmnist3d.npz")


def packaged_file(name: str) -> Path:
    """The installed path of the shipped demo file ``name``.

    Raises:
        ConfigError: ``name`` is not one of :data:`DEMO_FILES`, or the installation lacks the file.
    """
    if name not in DEMO_FILES:
        raise ConfigError(f"data.path = {PACKAGED_PREFIX}{name}: medvp ships {', '.join(DEMO_FILES)}")
    path = Path(str(resources.files(__name__) / name))
    if not path.is_file():
        raise ConfigError(f"{path}: the packaged demo file is missing from this medvp installation; reinstall medvp")
    return path


def resolve_data_path(path: str | Path, base_dir: Path) -> Path:
    """``medvp:<name>`` as the packaged file; other relative paths from ``base_dir``; absolute paths unchanged."""
    text = str(path)
    if text.startswith(PACKAGED_PREFIX):
        return packaged_file(text[len(PACKAGED_PREFIX):])
    path = Path(path)
    return path if path.is_absolute() else (base_dir / path).resolve()
