"""What ``medvp predict`` reads: image files, folders of them, DICOM series folders and MedMNIST ``.npz`` splits.

Every file goes through training's reader (:func:`pipeline.data.readers.read_image`: a MetaTensor with its
affine, in MONAI's axis order), and MedMNIST splits through :func:`pipeline.data.read_medmnist`, so that the
preprocessing (:func:`pipeline.data.loading.item_transforms`) sees what it saw in training.

A folder is scanned the way a data source defines items: for a 3D model, a folder that directly holds
single-frame DICOM images is one series (as a series subfolder is one item in training); otherwise every image
file is an item of its own (extensionless DICOM found by content), and subfolders are scanned in turn. What is
left out is logged with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import MetaTensor

from pipeline.data import SPLITS, read_medmnist
from pipeline.data.dicom import DEFAULT_DICOM, DicomOptions, dicom_skip_reason, first_header, is_dicom_file
from pipeline.data.medmnist import medmnist_item_name
from pipeline.data.readers import IMAGE_SUFFIXES, read_image
from pipeline.demo_data import PACKAGED_PREFIX, resolve_data_path
from pipeline.errors import DataError

__all__ = ["InputItem", "IMAGE_SUFFIXES", "collect_inputs"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputItem:
    """One item to classify: a name for the report, its image ``(C, *spatial)`` as read (a MetaTensor with its
    affine for a file or series; an array for a ``.npz`` split's item, in MONAI's axis order) and the file or
    folder it came from (None for a ``.npz`` item)."""

    name: str
    image: MetaTensor | np.ndarray
    path: Path | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _npz_file(spec: str) -> str:
    """``file.npz[:split]`` without the split; ``medvp:<name>.npz[:split]`` names a demo file shipped with medvp."""
    packaged = spec.startswith(PACKAGED_PREFIX)
    path_text = spec[len(PACKAGED_PREFIX):].partition(":")[0] if packaged else spec.partition(":")[0]
    return PACKAGED_PREFIX + path_text if packaged else path_text


def _npz_items(spec: str) -> list[InputItem]:
    path_text = _npz_file(spec)
    split = spec[len(path_text) + 1:] or "test"
    if split not in SPLITS:
        raise DataError(f"{spec}: unknown split {split!r}; expected one of {', '.join(SPLITS)} after the colon")
    images = read_medmnist(resolve_data_path(path_text, Path.cwd()))[split].images
    return [InputItem(name=medmnist_item_name(Path(path_text), split, index), image=image)
            for index, image in enumerate(images)]


def _single_frame_dicom_images(folder: Path) -> list[Path]:
    """The single-frame DICOM image files directly in ``folder`` (the slices of a series)."""
    slices = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if _suffix(path) in IMAGE_SUFFIXES and _suffix(path) != ".dcm" or not is_dicom_file(path):
            continue
        try:
            header = first_header(path)
        except DataError:
            continue  # reported when it is read as an item of its own
        if header is not None and dicom_skip_reason(header) is None and int(header.get("NumberOfFrames", 1) or 1) == 1:
            slices.append(path)
    return slices


def _folder_candidates(folder: Path, spatial_dims: int | None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Items in ``folder`` (files, or the folder itself as a DICOM series) and what is left out with the reason."""
    items: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    series = _single_frame_dicom_images(folder) if spatial_dims == 3 else []
    if len(series) > 1:
        items.append(folder)
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            sub_items, sub_skipped = _folder_candidates(path, spatial_dims)
            items, skipped = items + sub_items, skipped + sub_skipped
        elif path in series and len(series) > 1:
            continue
        elif _suffix(path) in IMAGE_SUFFIXES or is_dicom_file(path):
            items.append(path)
        else:
            skipped.append((path, f"not an image file medvp reads ({', '.join(IMAGE_SUFFIXES)} or DICOM)"))
    return items, skipped


def collect_inputs(inputs: Sequence[str], spatial_dims: int | None = None,
                   dicom: DicomOptions = DEFAULT_DICOM) -> list[InputItem]:
    """Read every input: image files, DICOM series folders, folders of items (searched recursively) and
    ``file.npz[:split]`` (default split: test).

    Args:
        inputs: paths as given on the command line.
        spatial_dims: the model's (2 or 3): decides whether a folder of DICOM slices is one series (3D).
        dicom: the run's DICOM geometry options.

    A named file that cannot be read is an error; an unreadable file found in a folder is skipped with a
    logged reason.

    Raises:
        DataError: for a missing path, an unsupported or unreadable named file, or when nothing is left to predict.
    """
    items: list[InputItem] = []
    for spec in inputs:
        path = Path(spec)
        npz_path = Path(_npz_file(spec)) if ".npz" in spec.lower() else None
        if npz_path is not None and npz_path.suffix.lower() == ".npz" and not path.is_dir():
            items += _npz_items(spec)
        elif path.is_dir():
            candidates, skipped = _folder_candidates(path, spatial_dims)
            for candidate in candidates:
                try:
                    items.append(InputItem(name=str(candidate), image=read_image(candidate, dicom).image,
                                           path=candidate))
                except DataError as error:
                    skipped.append((candidate, str(error).split(": ", 1)[-1]))
            for file, reason in skipped:
                logger.warning("skipped %s: %s", file, reason)
            if skipped:
                logger.warning("%s: %d file(s) skipped (reasons above), %d item(s) read", path, len(skipped),
                               len(candidates) - len([s for s in skipped if s[0] in candidates]))
        elif path.is_file():
            items.append(InputItem(name=str(path), image=read_image(path, dicom).image, path=path))
        else:
            raise DataError(f"{spec}: no such file or folder")
    if not items:
        raise DataError(f"no images to predict in {', '.join(inputs)}")
    return items
