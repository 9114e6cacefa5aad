"""What ``medvp predict`` reads: image files, folders of them, and MedMNIST ``.npz`` splits, as channel-first arrays."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from monai.data import NibabelReader, PILReader, PydicomReader
from monai.transforms import LoadImage

from pipeline.data import SPLITS, read_medmnist
from pipeline.data.dicom import is_dicom_file
from pipeline.data.readers import read_image
from pipeline.demo_data import PACKAGED_PREFIX, resolve_data_path
from pipeline.errors import DataError, first_line

__all__ = ["InputItem", "IMAGE_SUFFIXES", "image_reader", "load_image_file", "collect_inputs"]

logger = logging.getLogger(__name__)

#: file suffix -> the kind of reader that opens it.
IMAGE_SUFFIXES: dict[str, str] = {".png": "pil", ".jpg": "pil", ".jpeg": "pil", ".nii": "nifti", ".nii.gz": "nifti",
                                  ".dcm": "dicom"}


@dataclass(frozen=True)
class InputItem:
    """One item to classify: a name for the report, its image ``(C, *spatial)`` (as stored, not preprocessed)
    and the file it came from (None for an array of a ``.npz`` split)."""

    name: str
    image: np.ndarray
    path: Path | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def image_reader(path: Path) -> PILReader | NibabelReader | PydicomReader:
    """The MONAI reader for ``path`` that keeps numpy (row, column[, slice]) order, as MedMNIST arrays are stored.

    MONAI's ``PILReader`` and ``PydicomReader`` transpose the first two axes by default; training saw
    numpy ``(H, W)`` arrays, so both are asked not to.
    """
    kind = IMAGE_SUFFIXES.get(_suffix(path))
    if kind == "pil":
        return PILReader(reverse_indexing=False)
    if kind == "dicom":
        return PydicomReader(swap_ij=False)
    if kind == "nifti":
        return NibabelReader()
    raise DataError(f"{path}: unsupported image file; expected one of {', '.join(sorted(IMAGE_SUFFIXES))} "
                    "or a MedMNIST .npz[:split]")


def load_image_file(path: Path, loaders: dict[str, LoadImage] | None = None) -> np.ndarray:
    """Read one image file with MONAI's ``LoadImage`` and return it channel-first, ``(C, *spatial)``.

    Only the pixel data is kept: no header field (and so no patient identifier) leaves this function.
    ``loaders`` (suffix kind -> LoadImage) reuses the loaders across files; each new one sets up every reader.

    Raises:
        DataError: when the suffix is unsupported or the file cannot be read.

    Example:
        >>> load_image_file(Path("chest.png")).shape  # doctest: +SKIP
        (1, 28, 28)
    """
    kind = IMAGE_SUFFIXES.get(_suffix(path), "")
    loaders = {} if loaders is None else loaders
    if kind not in loaders:
        loaders[kind] = LoadImage(reader=image_reader(path), image_only=True, ensure_channel_first=True)
    loader = loaders[kind]
    try:
        image = loader(str(path))
    except Exception as error:  # MONAI wraps every reader failure in RuntimeError or the reader's own error
        reason = first_line(error)
        raise DataError(f"{path}: cannot read the image ({reason})") from None
    return np.asarray(image.array if hasattr(image, "array") else image)


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
    splits = read_medmnist(resolve_data_path(path_text, Path.cwd()))
    images = splits[split].images
    return [InputItem(name=f"{Path(path_text).name}:{split}:{index}", image=image) for index, image in
            enumerate(images)]


def _folder_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if _suffix(path) in IMAGE_SUFFIXES:
            files.append(path)
        else:
            logger.warning("skipped %s: not an image file medvp reads (%s)", path, ", ".join(sorted(IMAGE_SUFFIXES)))
    return files


def _is_dicom_series(folder: Path) -> bool:
    return any(is_dicom_file(path) for path in folder.iterdir() if path.is_file())


def collect_inputs(inputs: Sequence[str], numpy_order: bool = True) -> list[InputItem]:
    """Read every input: image files, folders (searched recursively) and ``file.npz[:split]`` (default: test).

    ``numpy_order``: read as the model's training data was stored. True for models trained on MedMNIST arrays
    (numpy row-column order); False for models trained from files, which are then read exactly as training
    read them (:func:`pipeline.data.readers.read_image`: DICOM series folders as one volume, HU, MONOCHROME1).
    A named file that cannot be read is an error; an unreadable file found in a folder is skipped with a
    logged reason.

    Raises:
        DataError: for a missing path, an unsupported or unreadable named file, or when nothing is left to predict.
    """
    items: list[InputItem] = []
    loaders: dict[str, LoadImage] = {}

    def read(file: Path) -> np.ndarray:
        if numpy_order:
            return load_image_file(file, loaders)
        return np.asarray(read_image(file).image)

    for spec in inputs:
        path = Path(spec)
        npz_path = Path(_npz_file(spec)) if ".npz" in spec.lower() else None
        if npz_path is not None and npz_path.suffix.lower() == ".npz" and not path.is_dir():
            items += _npz_items(spec)
        elif path.is_dir() and not numpy_order and _is_dicom_series(path):
            items.append(InputItem(name=str(path), image=read(path), path=path))
        elif path.is_dir():
            for file in _folder_files(path):
                try:
                    items.append(InputItem(name=str(file), image=read(file), path=file))
                except DataError as error:
                    logger.warning("skipped %s", error)
        elif path.is_file():
            items.append(InputItem(name=str(path), image=read(path), path=path))
        else:
            raise DataError(f"{spec}: no such file or folder")
    if not items:
        raise DataError(f"no images to predict in {', '.join(inputs)}")
    return items
