"""What a run read, for the bundle: its file kinds (the inference glob) and a few test-split inputs (``sample_data/``).

Samples are written only where no patient identifier can travel with them: MedMNIST arrays (written as PNG or
NIfTI) and PNG/JPEG/NIfTI files copied from the test split. DICOM files carry patient headers, so a DICOM run's
bundle ships no sample (its README says so, and a bare inference run stops with one line asking for a folder).
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np

from pipeline.bundle.configs import IMAGE_SUFFIXES_2D, IMAGE_SUFFIXES_3D
from pipeline.config import Config
from pipeline.data import read_medmnist
from pipeline.engine.rundir import RunDir

__all__ = ["SAMPLE_DIR", "run_file_kinds", "inference_suffixes", "write_samples", "dicom_modality"]

logger = logging.getLogger(__name__)

SAMPLE_DIR = "sample_data"
_DICOM = ".dcm"
_COPYABLE = (*IMAGE_SUFFIXES_2D, *IMAGE_SUFFIXES_3D)


def _suffix(name: str) -> str:
    lowered = name.lower()
    return ".nii.gz" if lowered.endswith(".nii.gz") else Path(lowered).suffix


def _split_items(run: RunDir, split: str) -> list[str]:
    path = run.splits_table
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [row["item"] for row in csv.DictReader(handle) if row.get("split") == split]


def run_file_kinds(run: RunDir, config: Config) -> list[str]:
    """The file suffixes a file-source run trained on (``.dcm`` for DICOM files and series folders); empty for
    MedMNIST arrays."""
    if config.data.source == "medmnist":
        return []
    kinds = {_suffix(name) or _DICOM for name in _split_items(run, "train")}  # a series folder has no suffix
    return sorted(kinds)


def dicom_modality(run: RunDir, config: Config) -> str | None:
    """The Modality tag (0008,0060) of the first training item of a DICOM run (a coded value such as ``CR``, ``CT``,
    never an identifier); None for other runs or when the item is gone."""
    from pipeline.data.dicom import first_header

    base = config.data.path if config.data.path.is_dir() else config.data.path.parent
    for item in _split_items(run, "train")[:1]:
        header = first_header(Path(item) if Path(item).is_absolute() else base / item)
        modality = str(getattr(header, "Modality", "") or "").strip() if header is not None else ""
        return modality or None
    return None


def inference_suffixes(spatial_dims: int, kinds: list[str]) -> list[str]:
    """The inference glob: the default kinds of the dimensionality plus every kind the run read."""
    defaults = IMAGE_SUFFIXES_2D if spatial_dims == 2 else IMAGE_SUFFIXES_3D
    return [*defaults, *(kind for kind in kinds if kind not in defaults)]


def _write_arrays(config: Config, out_dir: Path, count: int) -> list[str]:
    """MedMNIST test images ``(C, *spatial)`` in MONAI's axis order, uint8: 2D as PNG (grey or RGB), 3D as NIfTI,
    written so that MONAI's default readers (the bundle's ``LoadImaged``) give back the array training saw: a PNG
    stores rows (y) first, so the (x, y) plane is transposed for it; NIfTI stores (x, y, z) as is."""
    images = read_medmnist(config.data.path, config.data.spatial_dims)["test"].images[:count]
    names = []
    for index, image in enumerate(np.asarray(images)):
        if image.ndim == 4:
            import nibabel as nib

            name = f"test_{index:03d}.nii.gz"
            nib.save(nib.Nifti1Image(image[0], np.eye(4)), str(out_dir / name))
        else:
            from PIL import Image

            name = f"test_{index:03d}.png"
            rows = np.swapaxes(image, -1, -2)  # (C, x, y) -> (C, y, x): PNG rows are y
            Image.fromarray(rows[0] if rows.shape[0] == 1 else np.moveaxis(rows, 0, -1)).save(out_dir / name)
        names.append(name)
    return names


def _copy_files(run: RunDir, config: Config, out_dir: Path, count: int) -> list[str]:
    names = []
    base = config.data.path if config.data.path.is_dir() else config.data.path.parent  # folder / CSV or datalist
    for item in _split_items(run, "test"):
        source = Path(item) if Path(item).is_absolute() else base / item
        if not source.is_file() or _suffix(source.name) not in _COPYABLE:
            continue  # DICOM (patient headers), series folders, and files no longer there
        name = f"test_{len(names):03d}{_suffix(source.name)}"
        shutil.copyfile(source, out_dir / name)
        names.append(name)
        if len(names) == count:
            break
    return names


def write_samples(run: RunDir, config: Config, bundle_dir: Path, count: int = 4) -> list[str]:
    """Write up to ``count`` test-split inputs into ``bundle_dir/sample_data``; returns their file names."""
    out_dir = bundle_dir / SAMPLE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.data.source == "medmnist":
        names = _write_arrays(config, out_dir, count)
    else:
        names = _copy_files(run, config, out_dir, count)
    if not names:
        logger.warning("the bundle ships no sample input: the run's test items are DICOM or no longer readable")
    return names
