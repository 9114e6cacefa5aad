"""What a bundle's ``train.yaml`` and ``evaluate.yaml`` call into medvp for: the run's data reader.

Everything else in those configs is a MONAI, ignite or torch component (plus medvp's ``FeatureTap`` and
``VariancePenalizedLoss``). Reading the data goes through medvp's own sources (MedMNIST ``.npz``, a folder tree, a
CSV, a MONAI datalist, DICOM series), so the bundle trains on exactly the items and splits the run trained on.

``monai.bundle run`` prints a full traceback for any exception raised while a config is parsed; the functions here
stop with one line (``SystemExit``) instead, naming the config key to set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config.schema import DataConfig
from pipeline.data.sources import load_source
from pipeline.demo_data import resolve_data_path
from pipeline.errors import MedvpError

__all__ = ["read_splits"]


def _stop(message: str) -> SystemExit:
    return SystemExit(f"medvp bundle: error: {message}")


def read_splits(data: dict[str, Any], dataset_dir: str | None) -> dict[str, list[dict]]:
    """The items of each split (``train``, ``val``, ``test``) as ``{"image", "label", "name"}`` dictionaries.

    Args:
        data: the run's ``data`` section without ``path`` (source, class names, task, split settings, DICOM rules).
        dataset_dir: the dataset (``.npz`` file, folder, CSV or datalist of ``data.source``); ``medvp:<name>`` is a
            demo file shipped with medvp; a relative path is taken from the working folder.

    Raises:
        SystemExit: one line when ``dataset_dir`` is not set or the data cannot be read as the run's source.
    """
    if not dataset_dir:
        raise _stop(f"dataset_dir is not set: this bundle does not ship its training data; pass --dataset_dir "
                    f"PATH (a data.source = {data.get('source', 'medmnist')!r} dataset, as the run used)")
    try:
        path = resolve_data_path(dataset_dir, Path.cwd())
        settings = DataConfig.model_validate({**data, "path": path})
    except ValidationError as error:
        raise _stop(f"data: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}") from None
    except MedvpError as error:
        raise _stop(str(error)) from None
    if not settings.path.exists():
        raise _stop(f"dataset_dir = {dataset_dir}: no such file or folder")
    try:
        source = load_source(settings)
    except MedvpError as error:
        raise _stop(str(error)) from None
    return {split: [{key: item[key] for key in ("image", "label", "name")} for item in items]
            for split, items in source.splits.items()}
