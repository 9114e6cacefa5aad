"""What a recorded result needs to be traced: the commit of the code, whether it had uncommitted changes, the
CPU model, thread count and the versions of every package that shapes the numbers."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from pipeline.engine.device import cpu_model
from pipeline.errors import ConfigError

__all__ = ["NUMERIC_PACKAGES", "Provenance", "package_versions", "provenance", "require_clean",
           "commit_exists"]

#: distributions whose versions can change a trained model's numbers or how they are measured
NUMERIC_PACKAGES = ("torch", "monai", "numpy", "pytorch-ignite", "optuna", "scipy", "scikit-learn", "pydicom",
                    "nibabel", "SimpleITK", "pillow")

#: where a copy of a checkout that has no git (a GPU machine is sent the files, not the repository) names its
#: commit; whoever sets it vouches that the files are that commit's (benchmarks/gpu_lease.sh checks their hashes)
COMMIT_VARIABLE = "MEDVP_COMMIT"

#: the package's source folder: results are refused while it has uncommitted changes
_CODE = Path(__file__).resolve().parents[1]

Provenance = dict


def _git(*args: str) -> str | None:
    try:
        found = subprocess.run(["git", *args], cwd=_CODE, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout


def package_versions() -> dict[str, str]:
    """Installed version of each of NUMERIC_PACKAGES (absent ones are left out)."""
    versions = {}
    for name in NUMERIC_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _dirty_paths() -> list[str] | None:
    status = _git("status", "--porcelain", "--", ".")
    return None if status is None else [line[3:] for line in status.splitlines() if line.strip()]


def _commit() -> tuple[str | None, str | None]:
    """The commit and where it was read: git, else the COMMIT_VARIABLE environment variable (a copy without git),
    else (None, None)."""
    commit = _git("rev-parse", "HEAD")
    if commit:
        return commit.strip(), "git"
    named = os.environ.get(COMMIT_VARIABLE, "").strip()
    return (named, COMMIT_VARIABLE) if named else (None, None)


def provenance() -> Provenance:
    """The record every benchmark result and tuning study carries: ``commit`` (None when neither git nor
    COMMIT_VARIABLE names one), ``commit_source``, ``dirty`` (uncommitted changes under pipeline/; None when
    unknown), ``cpu``, ``threads``, ``versions``."""
    commit, source = _commit()
    dirty = _dirty_paths()
    return {"commit": commit, "commit_source": source, "dirty": None if dirty is None else bool(dirty),
            "cpu": cpu_model(), "threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": package_versions()}


def require_clean(allow_dirty: bool) -> Provenance:
    """The provenance, refusing (ConfigError) uncommitted changes under pipeline/ unless ``allow_dirty``: a result
    must name the code that made it."""
    record = provenance()
    if record["dirty"] and not allow_dirty:
        changed = ", ".join(_dirty_paths()[:5])
        raise ConfigError(f"uncommitted changes under pipeline/ ({changed}): commit them first, or pass "
                          "--allow-dirty to record the results as dirty (the report flags them)")
    return record


def commit_exists(commit: str | None, repository: Path) -> bool:
    """Whether ``commit`` is an object of the git repository at ``repository`` (False for None)."""
    if not commit:
        return False
    try:
        subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repository, capture_output=True,
                       timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True
