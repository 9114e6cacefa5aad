"""Optional dependencies: the parts only some verbs use are pip extras, imported when first needed.

``medvp[itk]`` (SimpleITK: MetaImage, NRRD and other ITK formats), ``medvp[tune]`` (Optuna and SQLAlchemy:
``medvp tune``), ``medvp[stats]`` (SciPy: benchmark reports' t-intervals and paired tests), ``medvp[all]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipeline.errors import MedvpError

__all__ = ["EXTRAS", "require_extra"]

#: module -> the extra that installs it
EXTRAS = {"SimpleITK": "itk", "optuna": "tune", "sqlalchemy": "tune", "scipy": "stats"}


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (a key of :data:`EXTRAS`), or fail with one line naming the extra to install.

    Raises:
        MedvpError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MedvpError(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                         f"pip install 'medvp[{EXTRAS[module.split('.')[0]]}]'") from None
