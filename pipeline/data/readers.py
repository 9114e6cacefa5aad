"""Read one item (a file or a DICOM series directory) into a channel-first MetaTensor, through MONAI's readers.

DICOM goes through :mod:`pipeline.data.dicom` (pydicom with its LUTs, plus geometry checks), NIfTI through
``NibabelReader``, PNG/JPEG through ``PILReader``, and ITK formats (``.mha``, ``.mhd``, ``.nrrd``) through
SimpleITK. Only non-identifying metadata is kept: the affine, the file name and the modality.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.image_reader import NibabelReader, PILReader
from monai.transforms import MapTransform

from pipeline.data.dicom import DEFAULT_DICOM, DicomOptions, is_dicom_file, read_dicom
from pipeline.errors import DataError, first_line
from pipeline.extras import require_extra

__all__ = ["ReadResult", "read_image", "ReadImaged", "IMAGE_SUFFIXES"]

_NIFTI = (".nii", ".nii.gz")
_PIL = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_ITK = (".mha", ".mhd", ".nrrd", ".nhdr")
IMAGE_SUFFIXES = (".dcm", *_NIFTI, *_PIL, *_ITK)


@dataclass(frozen=True)
class ReadResult:
    image: MetaTensor
    patient: str | None
    warnings: tuple[str, ...] = ()


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _as_meta_tensor(array: np.ndarray, affine: np.ndarray, path: Path, modality: str = "") -> MetaTensor:
    image = MetaTensor(torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32)), affine=torch.as_tensor(affine))
    image.meta["filename_or_obj"] = str(path)
    image.meta["modality"] = modality
    return image


def _read_with(reader, path: Path) -> tuple[np.ndarray, dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reader.get_data(reader.read(str(path)))
    except Exception as error:  # the readers raise many exception types for corrupt files
        message = first_line(error, 160)
        raise DataError(f"{path}: cannot read the image ({message})") from None


def _check_nifti_size(path: Path) -> None:
    """Compare the voxel data a NIfTI header declares with what the file can hold, before anything is allocated
    (nibabel allocates the declared size first, so a forged header could otherwise claim gigabytes)."""
    try:
        header = nib.load(str(path)).header
        shape = tuple(int(size) for size in header.get_data_shape())
        declared = math.prod(shape) * header.get_data_dtype().itemsize + int(header.get("vox_offset", 0))
    except Exception as error:  # nibabel raises many types for damaged headers
        message = first_line(error, 160)
        raise DataError(f"{path}: cannot read the NIfTI header ({message})") from None
    if _suffix(path) == ".nii.gz":
        with open(path, "rb") as handle:  # gzip's trailer holds the uncompressed size modulo 2**32
            handle.seek(0, 2)
            if handle.tell() < 18:
                raise DataError(f"{path}: truncated gzip file")
            handle.seek(-4, 2)
            available = int.from_bytes(handle.read(4), "little")
        if path.stat().st_size < 2**32 and declared > 2**32:
            raise DataError(f"{path}: the header declares {declared} bytes of voxel data, more than the file holds")
        declared %= 2**32
    else:
        available = path.stat().st_size
    if declared > available:
        raise DataError(f"{path}: the header declares {declared} bytes of voxel data but the file holds {available}")


def _read_nifti(path: Path) -> MetaTensor:
    _check_nifti_size(path)
    array, meta = _read_with(NibabelReader(), path)
    affine = np.asarray(meta.get("affine", np.eye(4)))
    if array.ndim == 4:  # (x, y, z, t): the fourth axis becomes channels
        return _as_meta_tensor(np.moveaxis(array, -1, 0), affine, path, "MR")
    if array.ndim in (2, 3):
        return _as_meta_tensor(array[None], affine, path)
    raise DataError(f"{path}: a NIfTI image of {array.ndim} dimensions; expected 2, 3 or 4")


def _read_pil(path: Path) -> MetaTensor:
    array, _ = _read_with(PILReader(), path)  # (x, y) or (x, y, channels): MONAI's column-first order
    if array.ndim == 3:
        if array.shape[-1] == 4:
            array = array[..., :3]
        return _as_meta_tensor(np.moveaxis(array, -1, 0), np.eye(4), path)
    return _as_meta_tensor(array[None], np.eye(4), path)


def _read_itk(path: Path) -> MetaTensor:
    sitk = require_extra("SimpleITK", f"{path}: reading {path.suffix or 'this'} files")

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(f"{path}: cannot read the image ({str(error).strip().splitlines()[-1][:160]})") from None
    array = sitk.GetArrayFromImage(image)  # (z, y, x[, components])
    dims = image.GetDimension()
    array = np.moveaxis(array, range(dims), range(dims)[::-1])  # -> (x, y, z[, components])
    direction = np.asarray(image.GetDirection(), float).reshape(dims, dims)
    affine = np.eye(4)
    affine[:dims, :dims] = direction * np.asarray(image.GetSpacing())
    affine[:dims, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # ITK is LPS
    if image.GetNumberOfComponentsPerPixel() > 1:
        return _as_meta_tensor(np.moveaxis(array, -1, 0), affine, path)
    return _as_meta_tensor(array[None], affine, path)


def read_image(path: Path, dicom: DicomOptions = DEFAULT_DICOM) -> ReadResult:
    """Read ``path`` into a float32 ``(C, *spatial)`` MetaTensor with its affine.

    Raises:
        DataError: naming the path, when it is missing, an empty directory, of an unsupported type, corrupt,
            or holds NaN/Inf values.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    suffix = _suffix(path)
    patient, notes = None, []
    if path.is_dir() or suffix == ".dcm" or (suffix not in IMAGE_SUFFIXES and is_dicom_file(path)):
        image, patient, notes = read_dicom(path, dicom)
    elif suffix in _NIFTI:
        image = _read_nifti(path)
    elif suffix in _PIL:
        image = _read_pil(path)
    elif suffix in _ITK:
        image = _read_itk(path)
    else:
        raise DataError(f"{path}: not an image medvp reads (DICOM, NIfTI, PNG/JPEG, MHA/NRRD)")
    if image.numel() == 0:
        raise DataError(f"{path}: the image is empty")
    if not torch.isfinite(image.as_tensor()).all():
        raise DataError(f"{path}: the image holds NaN or infinite values")
    return ReadResult(image=image, patient=patient, warnings=tuple(notes))


class ReadImaged(MapTransform):
    """MONAI dictionary transform: replace the path under each key with the image :func:`read_image` gives.

    A value that is not a path (an array of a MedMNIST source) is left as it is.
    """

    def __init__(self, keys="image", dicom: DicomOptions = DEFAULT_DICOM, spatial_dims: int | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dicom = dicom
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        result = dict(data)
        for key in self.key_iterator(result):
            if not isinstance(result[key], str | Path):
                continue  # an array source's item (MedMNIST), already channel first in MONAI's axis order
            path = Path(result[key])
            image = read_image(path, self.dicom).image
            if self.spatial_dims is not None and image.ndim - 1 != self.spatial_dims:
                raise DataError(f"{path}: a {image.ndim - 1}D image where {self.spatial_dims}D images are expected "
                                f"(shape {tuple(image.shape[1:])})")
            result[key] = image
        return result
