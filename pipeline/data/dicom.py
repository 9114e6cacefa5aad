"""DICOM done right: series selection, geometric slice order, HU rescale, MONOCHROME1, multi-frame, tilt checks.

Pixel data is decoded by MONAI's ``PydicomReader`` (which applies RescaleSlope/RescaleIntercept), one file at a
time; this module decides which files form the volume, in which order, and checks the geometry first. Only
non-identifying header fields are ever put into metadata, messages or logs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from monai.data.image_reader import PydicomReader

from pipeline.errors import DataError, first_line

__all__ = ["DicomOptions", "DEFAULT_DICOM", "SeriesInfo", "is_dicom_file", "scan_series", "read_dicom", "patient_key",
           "geometry_problems", "hash_identifier", "first_header"]

logger = logging.getLogger(__name__)

#: Axis order of returned arrays is MONAI's (column index first), as PydicomReader and ITK give them.
_TOLERANCE = 0.01  # relative tolerance on slice spacing
_TILT_DEGREES = 0.5


@dataclass(frozen=True)
class DicomOptions:
    """How strict to be with a series' geometry: ``"error"`` or ``"warn"`` for each kind of problem."""

    series_uid: str | None = None
    uneven_spacing: str = "error"
    missing_slices: str = "error"
    gantry_tilt: str = "warn"
    show_headers: bool = False  # messages may quote header fields (SeriesDescription); off unless the user asks


DEFAULT_DICOM = DicomOptions()


@dataclass(frozen=True)
class SeriesInfo:
    uid: str
    description: str
    files: tuple[Path, ...]


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128), whatever its extension."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _parse(path: Path, stop_before_pixels: bool) -> pydicom.Dataset:
    """Parse from memory: a forged element length then cannot make a file read allocate what it declares."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or type(error).__name__})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels)
    except Exception as error:  # pydicom raises many types (struct.error, NotImplementedError, ...) for damage
        raise DataError(f"{path}: not a readable DICOM file ({type(error).__name__})") from None


def _header(path: Path) -> pydicom.Dataset:
    return _parse(path, stop_before_pixels=True)


def hash_identifier(identifier: str) -> str | None:
    """A one-way hash of a patient identifier (never the identifier itself); None for an empty one."""
    identifier = identifier.strip()
    if not identifier:
        return None
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]


def patient_key(dataset: pydicom.Dataset) -> str | None:
    """The hashed PatientID of a DICOM header, for grouping items by patient."""
    return hash_identifier(str(dataset.get("PatientID", "") or ""))


def first_header(path: Path) -> pydicom.Dataset | None:
    """The header of a DICOM file, or of the first DICOM file of a directory; None when there is none."""
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and is_dicom_file(p))
        path = candidates[0] if candidates else path
    if not path.is_file() or not is_dicom_file(path):
        return None
    return _header(path)


def scan_series(directory: Path, series_uid: str | None = None,
                show_headers: bool = False) -> tuple[SeriesInfo, pydicom.Dataset]:
    """Group a directory's DICOM files by SeriesInstanceUID and pick one.

    Raises:
        DataError: when the directory holds no DICOM file, or several series and none is selected (the message
            lists each series' UID and slice count, and with ``show_headers`` its SeriesDescription).
    """
    files = sorted(path for path in directory.iterdir() if path.is_file() and not path.name.startswith("."))
    if not files:
        raise DataError(f"{directory}: empty directory, expected a DICOM series")
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path in files:
        if not is_dicom_file(path):
            continue
        header = _header(path)
        groups.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    if not groups:
        raise DataError(f"{directory}: no DICOM file found (checked {len(files)} files for the DICM preamble)")
    if series_uid is not None:
        if series_uid not in groups:
            raise DataError(f"{directory}: series {series_uid} not found; series here: {', '.join(groups)}")
        chosen = series_uid
    elif len(groups) > 1:
        def described(header: pydicom.Dataset) -> str:
            return f"{header.get('SeriesDescription', '') or 'no description'}, " if show_headers else ""

        listing = "; ".join(f"{uid} ({described(members[0][1])}{len(members)} slices)"
                            for uid, members in groups.items())
        raise DataError(f"{directory}: {len(groups)} series, select one with data.dicom.series_uid: {listing}")
    else:
        chosen = next(iter(groups))
    members = groups[chosen]
    description = str(members[0][1].get("SeriesDescription", "") or "")
    return SeriesInfo(uid=chosen, description=description, files=tuple(p for p, _ in members)), members[0][1]


def _slice_normal(header: pydicom.Dataset) -> np.ndarray | None:
    orientation = header.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return None
    row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, column)
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else None


def geometry_problems(positions: np.ndarray, normal: np.ndarray, declared_tilt: float = 0.0) -> dict[str, str]:
    """Check a series sorted along ``normal``; return ``{kind: description}`` for uneven spacing, missing
    slices and gantry tilt (slices stacked along a direction that is not the slice normal)."""
    problems: dict[str, str] = {}
    if len(positions) < 2:
        return problems
    steps = np.diff(positions @ normal)
    spacing = float(np.median(steps))
    if spacing <= 0:
        problems["uneven_spacing"] = "slices share a position"
        return problems
    ratio = steps / spacing
    gaps = np.round(ratio)
    if (gaps >= 2).any() and np.allclose(ratio, gaps, rtol=_TOLERANCE, atol=_TOLERANCE):
        problems["missing_slices"] = f"{int((gaps - 1).sum())} missing slice(s) at spacing {spacing:.3f} mm"
    elif not np.allclose(steps, spacing, rtol=_TOLERANCE, atol=1e-3):
        problems["uneven_spacing"] = f"slice spacing varies from {steps.min():.3f} to {steps.max():.3f} mm"
    direction = positions[-1] - positions[0]
    cosine = abs(direction @ normal) / max(np.linalg.norm(direction), 1e-9)
    angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    if angle > _TILT_DEGREES or abs(declared_tilt) > _TILT_DEGREES:
        problems["gantry_tilt"] = (f"gantry tilt {declared_tilt:.1f} degrees (slices stacked {angle:.1f} degrees off "
                                   "the slice normal); not resampled")
    return problems


def _report(problems: dict[str, str], options: DicomOptions, source: Path) -> list[str]:
    warned = []
    for kind, description in problems.items():
        if getattr(options, kind) == "error":
            raise DataError(f"{source}: {description} (data.dicom.{kind}: error)")
        logger.warning("%s: %s", source, description)
        warned.append(f"{kind}: {description}")
    return warned


def _decode(path: Path) -> tuple[np.ndarray, pydicom.Dataset]:
    """One file through MONAI's PydicomReader: rescaled float32 array (x, y[, frames]) and the parsed file."""
    parsed = _parse(path, stop_before_pixels=False)  # checks every element fits the file before MONAI reads it
    if not any(key in parsed for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(f"{path}: a DICOM file without pixel data")
    reader = PydicomReader(swap_ij=False, prune_metadata=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = reader.read(str(path))
            array, _ = reader.get_data(dataset)
    except DataError:
        raise
    except Exception as error:  # pydicom/decoders raise many types for corrupt or unsupported pixel data
        message = first_line(error, 160)
        raise DataError(f"{path}: cannot decode the pixel data ({message})") from None
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        array = array.transpose(2, 1, 0)  # (frames, rows, columns) -> (columns, rows, frames)
    elif array.ndim == 2:
        array = array.T
    return array, parsed


def _monochrome1_inverted(array: np.ndarray, header: pydicom.Dataset) -> np.ndarray:
    """Invert MONOCHROME1 (high values dark) within the stored value range, after rescaling."""
    if str(header.get("PhotometricInterpretation", "")).strip() != "MONOCHROME1":
        return array
    bits = int(header.get("BitsStored", 16))
    signed = int(header.get("PixelRepresentation", 0)) == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(header.get("RescaleSlope", 1.0)), float(header.get("RescaleIntercept", 0.0))
    return (slope * low + intercept) + (slope * high + intercept) - array


def _pixel_spacing(header: pydicom.Dataset) -> tuple[float, float]:
    spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
    if spacing is None:
        return 1.0, 1.0
    return float(spacing[1]), float(spacing[0])  # (column spacing, row spacing) for (x, y) axes


def _affine(header: pydicom.Dataset, spacing: tuple[float, ...], slice_direction: np.ndarray | None) -> np.ndarray:
    """Voxel (x=column, y=row, z=slice) to RAS millimetres."""
    affine = np.eye(4)
    orientation = header.get("ImageOrientationPatient")
    if orientation is not None and len(orientation) == 6:
        row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        affine[:3, 0] = row * spacing[0]
        affine[:3, 1] = column * spacing[1]
        if len(spacing) > 2:
            direction = slice_direction if slice_direction is not None else np.cross(row, column)
            affine[:3, 2] = direction * spacing[2]
        position = header.get("ImagePositionPatient")
        if position is not None:
            affine[:3, 3] = np.asarray(position, float)
    else:
        for axis, value in enumerate(spacing):
            affine[axis, axis] = value
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    return lps_to_ras @ affine


def _meta_tensor(array: np.ndarray, affine: np.ndarray, source: Path, modality: str) -> MetaTensor:
    """Channel-first MetaTensor with only non-identifying metadata."""
    image = MetaTensor(torch.as_tensor(array[None]), affine=torch.as_tensor(affine))
    image.meta["filename_or_obj"] = str(source)
    image.meta["modality"] = modality
    return image


def read_dicom(path: Path, options: DicomOptions = DEFAULT_DICOM) -> tuple[MetaTensor, str | None, list[str]]:
    """Read a DICOM file (single or multi-frame) or a series directory.

    Returns:
        (image ``(1, X, Y[, Z])`` float32 with its RAS affine, hashed patient key or None, geometry warnings).

    Raises:
        DataError: naming the file or directory, for unreadable files, several series, geometry problems set to
            ``"error"``, or pixel data that cannot be decoded.
    """
    if path.is_dir():
        series, first = scan_series(path, options.series_uid, options.show_headers)
        headers = [_header(file) for file in series.files]
        normal = _slice_normal(first)
        positions = np.asarray([h.get("ImagePositionPatient", (0.0, 0.0, float(i))) for i, h in enumerate(headers)],
                               dtype=float)
        if normal is not None and "ImagePositionPatient" in first:
            order = np.argsort(positions @ normal, kind="stable")
        else:
            order = np.argsort([int(h.get("InstanceNumber", i)) for i, h in enumerate(headers)], kind="stable")
            normal = np.array([0.0, 0.0, 1.0])
        headers = [headers[i] for i in order]
        positions = positions[order]
        files = [series.files[i] for i in order]
        warned = _report(geometry_problems(positions, normal, float(first.get("GantryDetectorTilt", 0.0) or 0.0)),
                         options, path)
        slices = [_monochrome1_inverted(_decode(file)[0], header) for file, header in zip(files, headers, strict=True)]
        shapes = {s.shape for s in slices}
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise DataError(f"{path}: series slices differ in shape or are multi-frame: {sorted(shapes)}")
        volume = np.stack(slices, axis=-1)
        # spacing between slice centres (along the stacking direction, which a gantry tilt makes oblique)
        slice_spacing = (float(np.median(np.linalg.norm(np.diff(positions, axis=0), axis=1))) if len(positions) > 1
                         else float(first.get("SliceThickness", 1.0) or 1.0))
        spacing = (*_pixel_spacing(first), slice_spacing)
        direction = None
        if len(positions) > 1 and np.linalg.norm(positions[-1] - positions[0]) > 0:
            direction = (positions[-1] - positions[0]) / np.linalg.norm(positions[-1] - positions[0])
        image = _meta_tensor(volume, _affine(first, spacing, direction), path, str(first.get("Modality", "")))
        return image, patient_key(first), warned
    array, header = _decode(path)
    array = _monochrome1_inverted(array, header)
    spacing: tuple[float, ...] = _pixel_spacing(header)
    if array.ndim == 3:
        spacing = (*spacing, float(header.get("SpacingBetweenSlices", header.get("SliceThickness", 1.0)) or 1.0))
    image = _meta_tensor(array, _affine(header, spacing, None), path, str(header.get("Modality", "")))
    return image, patient_key(header), []
