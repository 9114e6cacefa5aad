"""DICOM done right: series selection, geometric slice order, the Modality LUT, colour, enhanced multi-frame.

Pixel data is decoded by pydicom (``pixel_array``, with pylibjpeg's codecs), then pydicom's own
``apply_modality_lut`` (Rescale Slope/Intercept or the Modality LUT Sequence) and ``apply_color_lut`` (palette
colour) are applied. MONAI's ``PydicomReader`` is not used here because it ignores the Modality LUT Sequence,
palette colour, YBR and the functional groups of enhanced multi-frame objects.

Every file becomes a list of frames, each with its own geometry (position, orientation, pixel spacing, rescale):
a series folder gives one frame per file, an enhanced multi-frame object one frame per functional group. Frames
are ordered along the slice normal and checked (duplicates, missing slices, uneven spacing, gantry tilt) by one
code path. Only non-identifying header fields are ever put into metadata, messages or logs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.pixels import apply_color_lut, apply_modality_lut

from pipeline.errors import DataError, first_line

__all__ = ["DicomOptions", "DEFAULT_DICOM", "SeriesInfo", "is_dicom_file", "scan_series", "read_dicom", "patient_key",
           "geometry_problems", "hash_identifier", "first_header", "dicom_skip_reason"]

logger = logging.getLogger(__name__)

#: Axis order of returned arrays is MONAI's: (channels, x = column, y = row[, z = slice]).
_TOLERANCE = 0.01  # relative tolerance on slice spacing
_TILT_DEGREES = 0.5
_DICOMDIR = "1.2.840.10008.1.3.10"
_GREY = ("MONOCHROME1", "MONOCHROME2")
#: SOP classes with pixel data that are not images: segmentations (binary or fractional label maps)
_NOT_IMAGES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")


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
    """The files of the chosen series, and the files of the folder left out with the reason for each."""

    uid: str
    description: str
    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...] = ()


@dataclass
class _Frame:
    """One image plane, channel first in MONAI order ``(C, x, y)``, with the geometry its header gives."""

    pixels: np.ndarray
    label: str  # the file, plus the frame number in a multi-frame file: for messages
    position: np.ndarray | None = None
    orientation: np.ndarray | None = None
    spacing: tuple[float, float] | None = None  # (column spacing, row spacing): along x, along y
    notes: list[str] = field(default_factory=list)


def _parse_bytes(data: bytes, force: bool, stop_before_pixels: bool) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels, force=force)


def _has_dicom_content(data: bytes) -> bool:
    """A file without the 128-byte preamble (raw DICOM, as some scanners write): it must parse to a dataset whose
    SOP Class UID is a DICOM one."""
    try:
        dataset = _parse_bytes(data[:65536], force=True, stop_before_pixels=True)
        return str(dataset.get("SOPClassUID", "")).startswith("1.2.840.10008.")
    except Exception:  # noqa: BLE001 - anything pydicom cannot parse is not DICOM
        return False


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM file, whatever its extension: the ``DICM`` preamble, or a raw dataset with a SOP class."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return head[128:132] == b"DICM" or _has_dicom_content(head)


def _convert_every_element(dataset: pydicom.Dataset) -> None:
    """Convert every element now: pydicom converts lazily, so a damaged element (an unknown VR, a bad length)
    would otherwise raise wherever it is first read, outside the error handling of :func:`_parse`."""
    meta = getattr(dataset, "file_meta", None)
    for part in (meta, dataset) if meta is not None else (dataset,):
        for _ in part.iterall():
            pass


def _parse(path: Path, stop_before_pixels: bool) -> pydicom.Dataset:
    """Parse from memory: a forged element length then cannot make a file read allocate what it declares."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error.strerror or type(error).__name__})") from None
    force = data[128:132] != b"DICM"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=stop_before_pixels, force=force)
            _convert_every_element(dataset)
    except Exception as error:  # pydicom raises many types (struct.error, NotImplementedError, ...) for damage
        raise DataError(f"{path}: not a readable DICOM file ({type(error).__name__})") from None
    if any("End of file reached" in str(warning.message) for warning in caught):
        raise DataError(f"{path}: truncated DICOM file (the data ends inside an element)")
    _infer_transfer_syntax(dataset)
    return dataset


def _infer_transfer_syntax(dataset: pydicom.Dataset) -> None:
    """A file without File Meta Information (no preamble) still says how it was encoded: record it, so that
    its pixel data can be decoded (only the uncompressed syntaxes can be read without a meta header)."""
    meta = dataset.file_meta if hasattr(dataset, "file_meta") else None
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(dataset, "original_encoding", (None, None))
    if implicit is None:
        return
    syntax = (pydicom.uid.ImplicitVRLittleEndian if implicit else
              pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    if meta is None:
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax


def _header(path: Path) -> pydicom.Dataset:
    """The parsed file, pixel data undecoded: the file is read into memory anyway, and whether it holds pixel
    data at all tells an image from a report or a DICOMDIR."""
    return _parse(path, stop_before_pixels=False)


def hash_identifier(identifier: str) -> str | None:
    """A one-way hash of a patient identifier (never the identifier itself); None for an empty one."""
    identifier = identifier.strip()
    if not identifier:
        return None
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]


def patient_key(dataset: pydicom.Dataset) -> str | None:
    """The hashed PatientID of a DICOM header, for grouping items by patient."""
    return hash_identifier(str(dataset.get("PatientID", "") or ""))


def dicom_skip_reason(header: pydicom.Dataset) -> str | None:
    """Why a parsed DICOM object is not an image medvp reads (DICOMDIR, report, presentation state, ...), or None.

    Only the SOP class's standard name is given: never a header field that could identify the patient.
    """
    media_class = str(header.get("file_meta", {}).get("MediaStorageSOPClassUID", "")) if hasattr(
        header, "file_meta") else ""
    sop_class = header.get("SOPClassUID")
    if media_class == _DICOMDIR or "DirectoryRecordSequence" in header:
        return "a DICOMDIR (a media directory, not an image)"
    name = getattr(sop_class, "name", None) or str(sop_class or "unknown SOP class")
    if not any(key in header for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return f"no pixel data ({name}): not an image"
    if str(sop_class or "") in _NOT_IMAGES:
        return f"a {name} object, not an image (its pixel data are labels)"
    return None


def first_header(path: Path) -> pydicom.Dataset | None:
    """The header of a DICOM file, or of the first DICOM image file of a directory; None when there is none."""
    if path.is_dir():
        for candidate in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            if is_dicom_file(candidate):
                header = _header(candidate)
                if dicom_skip_reason(header) is None:
                    return header
        return None
    if not path.is_file() or not is_dicom_file(path):
        return None
    return _header(path)


def _classify(directory: Path) -> tuple[dict[str, list[tuple[Path, pydicom.Dataset]]], list[tuple[Path, str]]]:
    """The folder's DICOM image files by SeriesInstanceUID, and every other file with the reason it is left out."""
    groups: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    skipped: list[tuple[Path, str]] = []
    for path in sorted(p for p in directory.iterdir() if not p.name.startswith(".")):
        if path.is_dir():
            skipped.append((path, "a subfolder inside a series folder"))
            continue
        if not is_dicom_file(path):
            skipped.append((path, "not a DICOM file"))
            continue
        try:
            header = _header(path)
        except DataError as error:
            skipped.append((path, str(error).split(": ", 1)[-1]))
            continue
        reason = dicom_skip_reason(header)
        if reason is not None:
            skipped.append((path, reason))
            continue
        groups.setdefault(str(header.get("SeriesInstanceUID", "")), []).append((path, header))
    return groups, skipped


def scan_series(directory: Path, series_uid: str | None = None,
                show_headers: bool = False) -> tuple[SeriesInfo, pydicom.Dataset]:
    """Group a directory's DICOM image files by SeriesInstanceUID and pick one.

    Files that are not DICOM, and DICOM objects that are not images (DICOMDIR, structured reports, presentation
    states, ...), are left out; each is logged with its reason and listed in ``SeriesInfo.skipped``.

    Raises:
        DataError: when the directory holds no DICOM image, or several series and none is selected (the message
            lists each series' UID and slice count, and with ``show_headers`` its SeriesDescription).
    """
    if not any(True for _ in directory.iterdir()):
        raise DataError(f"{directory}: empty directory, expected a DICOM series")
    groups, skipped = _classify(directory)
    for path, reason in skipped:
        logger.info("%s: left out of the series: %s", path, reason)
    if not groups:
        reasons = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3])
        raise DataError(f"{directory}: no DICOM image file found ({len(skipped)} file(s) left out: {reasons})")
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
    others = [(p, f"another series ({uid})") for uid, group in groups.items() if uid != chosen for p, _ in group]
    description = str(members[0][1].get("SeriesDescription", "") or "")
    return SeriesInfo(uid=chosen, description=description, files=tuple(p for p, _ in members),
                      skipped=tuple(skipped + others)), members[0][1]


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


@contextmanager
def _quiet_pydicom():
    """pydicom logs decoder failures with tracebacks before raising; the raised error is reported instead."""
    pydicom_logger = logging.getLogger("pydicom")
    previous = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_logger.setLevel(previous)


def _decoded(path: Path, dataset: pydicom.Dataset) -> np.ndarray:
    """``pixel_array`` (YBR converted to RGB by pydicom), or a one-line error naming the file and the syntax."""
    syntax = dataset.file_meta.get("TransferSyntaxUID") if hasattr(dataset, "file_meta") else None
    try:
        with _quiet_pydicom():
            return dataset.pixel_array
    except Exception as error:  # pydicom and its decoders raise many types for corrupt or unsupported pixel data
        reason = first_line(error).rstrip(":")
        if "all available plugins" in reason:  # the plugins' own reasons follow on further lines
            reason = "no installed decoder can decode it"
        name = getattr(syntax, "name", None) or "unknown transfer syntax"
        bits = dataset.get("BitsStored")
        raise DataError(f"{path}: cannot decode the pixel data ({name}{f', {bits}-bit' if bits else ''}): "
                        f"{reason}") from None


def _group(item: pydicom.Dataset | None, sequence: str) -> pydicom.Dataset | None:
    if item is None or sequence not in item or not item[sequence].value:
        return None
    return item[sequence].value[0]


def _functional(dataset: pydicom.Dataset, frame: int, sequence: str) -> pydicom.Dataset | None:
    """A functional group macro for one frame: the per-frame one, else the shared one."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    own = _group(per_frame[frame], sequence) if per_frame is not None and frame < len(per_frame) else None
    shared = dataset.get("SharedFunctionalGroupsSequence")
    return own if own is not None else _group(shared[0] if shared else None, sequence)


def _spacing(source: pydicom.Dataset | None, label: str) -> tuple[float, float] | None:
    """(column spacing, row spacing) from PixelSpacing (or ImagerPixelSpacing); an error when not positive."""
    if source is None:
        return None
    value = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    if value is None:
        return None
    try:
        row, column = float(value[0]), float(value[1])
    except (TypeError, ValueError, IndexError):
        raise DataError(f"{label}: PixelSpacing is not two numbers") from None
    if not (np.isfinite(row) and np.isfinite(column) and row > 0 and column > 0):
        raise DataError(f"{label}: PixelSpacing {row:g}\\{column:g} is not positive; a zero pixel size has no "
                        "geometry (fix the file's PixelSpacing)")
    return column, row


def _vector(source: pydicom.Dataset | None, key: str, size: int) -> np.ndarray | None:
    value = source.get(key) if source is not None else None
    if value is None or len(value) != size:
        return None
    return np.asarray([float(v) for v in value])


def _grey(array: np.ndarray, dataset: pydicom.Dataset, transform: pydicom.Dataset | None) -> np.ndarray:
    """The Modality LUT (Rescale Slope/Intercept, or the Modality LUT Sequence) and MONOCHROME1 inversion."""
    if transform is not None and "RescaleSlope" in transform:
        values = array * float(transform.RescaleSlope) + float(transform.get("RescaleIntercept", 0.0))
        slope, intercept = float(transform.RescaleSlope), float(transform.get("RescaleIntercept", 0.0))
    else:
        values = apply_modality_lut(array, dataset)
        slope, intercept = float(dataset.get("RescaleSlope", 1.0) or 1.0), float(dataset.get("RescaleIntercept", 0.0)
                                                                                or 0.0)
    values = np.asarray(values, dtype=np.float32)
    if str(dataset.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        bits = int(dataset.get("BitsStored", 16))
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if int(dataset.get("PixelRepresentation", 0)) else (
            0, 2**bits - 1)
        values = (slope * low + intercept) + (slope * high + intercept) - values
    return values


def _colour(array: np.ndarray, dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        try:
            return np.asarray(apply_color_lut(array, dataset), dtype=np.float32)
        except Exception as error:  # a palette that does not fit the data
            raise DataError(f"{path}: cannot apply the palette colour lookup table ({error})") from None
    return np.asarray(array, dtype=np.float32)


def _frames(path: Path) -> tuple[list[_Frame], pydicom.Dataset]:
    """Decode a file into frames with their own geometry (enhanced multi-frame: from the functional groups)."""
    dataset = _parse(path, stop_before_pixels=False)  # checks every element fits the file before decoding
    reason = dicom_skip_reason(dataset)
    if reason is not None:
        raise DataError(f"{path}: {reason}")
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric not in (*_GREY, *_COLOUR, "PALETTE COLOR"):
        raise DataError(f"{path}: photometric interpretation {photometric or 'missing'} is not supported "
                        f"(expected one of {', '.join((*_GREY, 'RGB', 'YBR_*', 'PALETTE COLOR'))})")
    colour = photometric not in _GREY
    _spacing(dataset, str(path))  # a zero PixelSpacing is refused before the pixel data are decoded
    array = _decoded(path, dataset)
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    planes = array if count > 1 else array[None]
    enhanced = "PerFrameFunctionalGroupsSequence" in dataset or "SharedFunctionalGroupsSequence" in dataset
    frames = []
    for index, plane in enumerate(planes):
        label = f"{path} frame {index + 1}" if count > 1 else str(path)
        measures = _functional(dataset, index, "PixelMeasuresSequence") if enhanced else None
        position = _functional(dataset, index, "PlanePositionSequence") if enhanced else None
        orientation = _functional(dataset, index, "PlaneOrientationSequence") if enhanced else None
        transform = _functional(dataset, index, "PixelValueTransformationSequence") if enhanced else None
        values = _colour(plane, dataset, path) if colour else _grey(plane, dataset, transform)
        pixels = values.transpose(2, 1, 0) if values.ndim == 3 else values.T[None]  # -> (C, x = column, y = row)
        place = _vector(position if enhanced else dataset, "ImagePositionPatient", 3)
        if not enhanced and count > 1:  # a classic multi-frame object: frames along the normal by the grid offsets
            place = _offset_position(dataset, place, index)
        frames.append(_Frame(pixels=pixels, label=label, position=place,
                             orientation=_vector(orientation if enhanced else dataset, "ImageOrientationPatient",
                                                 6),
                             spacing=_spacing(measures, label) or _spacing(dataset, str(path))))
    return frames, dataset


def _offset_position(dataset: pydicom.Dataset, first: np.ndarray | None, index: int) -> np.ndarray | None:
    """A classic multi-frame frame's position: the first frame's plus its GridFrameOffsetVector entry (RT Dose)
    along the normal; None (frames then keep their stored order) without offsets."""
    offsets = dataset.get("GridFrameOffsetVector")
    normal = _normal(_vector(dataset, "ImageOrientationPatient", 6))
    if first is None or normal is None or offsets is None or index >= len(offsets):
        return first if index == 0 and offsets is None else None
    return first + float(offsets[index]) * normal


def _normal(orientation: np.ndarray | None) -> np.ndarray | None:
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(normal)
    return normal / norm if norm > 0 else None


def _duplicates(frames: list[_Frame], along: np.ndarray, source: Path) -> None:
    steps = np.diff(along)
    close = np.flatnonzero(np.abs(steps) < 1e-3)
    if close.size:
        pairs = "; ".join(f"{Path(frames[i].label).name} and {Path(frames[i + 1].label).name}" for i in close[:3])
        raise DataError(f"{source}: {close.size} duplicate slice(s) at the same position along the slice normal "
                        f"({pairs}); remove the duplicates")


def _ordered(frames: list[_Frame], source: Path, options: DicomOptions, tilt: float,
             fallback: list[float]) -> tuple[list[_Frame], float | None, np.ndarray | None, list[str]]:
    """Frames sorted along the slice normal and checked: (frames, slice spacing, stacking direction, warnings)."""
    normal = _normal(frames[0].orientation)
    if normal is None or any(frame.position is None for frame in frames):
        order = np.argsort(fallback, kind="stable")
        return [frames[i] for i in order], None, None, []
    orientations = np.asarray([frame.orientation for frame in frames])
    if not np.allclose(orientations, orientations[0], atol=1e-4):
        raise DataError(f"{source}: the slices have different ImageOrientationPatient; not one volume")
    positions = np.asarray([frame.position for frame in frames])
    order = np.argsort(positions @ normal, kind="stable")
    frames, positions = [frames[i] for i in order], positions[order]
    _duplicates(frames, positions @ normal, source)
    warned = _report(geometry_problems(positions, normal, tilt), options, source)
    # spacing between slice centres (along the stacking direction, which a gantry tilt makes oblique)
    spacing = float(np.median(np.linalg.norm(np.diff(positions, axis=0), axis=1)))
    direction = (positions[-1] - positions[0]) / np.linalg.norm(positions[-1] - positions[0])
    return frames, spacing, direction, warned


def _affine(first: _Frame, spacing: tuple[float, ...], direction: np.ndarray | None) -> np.ndarray:
    """Voxel (x = column, y = row, z = slice) to RAS millimetres, from the first frame along the normal."""
    affine = np.eye(4)
    if first.orientation is not None:
        row, column = first.orientation[:3], first.orientation[3:]
        affine[:3, 0] = row * spacing[0]
        affine[:3, 1] = column * spacing[1]
        if len(spacing) > 2:
            affine[:3, 2] = (direction if direction is not None else np.cross(row, column)) * spacing[2]
        if first.position is not None:
            affine[:3, 3] = first.position
    else:
        for axis, value in enumerate(spacing):
            affine[axis, axis] = value
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _meta_tensor(array: np.ndarray, affine: np.ndarray, source: Path, modality: str) -> MetaTensor:
    """Channel-first MetaTensor with only non-identifying metadata."""
    image = MetaTensor(torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32)), affine=torch.as_tensor(affine))
    image.meta["filename_or_obj"] = str(source)
    image.meta["modality"] = modality
    return image


def _pixel_spacing(frames: list[_Frame], source: Path, notes: list[str]) -> tuple[float, float]:
    spacings = {frame.spacing for frame in frames}
    if len(spacings) > 1:
        raise DataError(f"{source}: the slices have different PixelSpacing {sorted(s for s in spacings if s)}")
    spacing = spacings.pop()
    if spacing is None:
        notes.append("no PixelSpacing: 1 mm assumed")
        logger.warning("%s: no PixelSpacing (or ImagerPixelSpacing); 1 mm pixels assumed", source)
        return 1.0, 1.0
    return spacing


def _volume(frames: list[_Frame], source: Path, options: DicomOptions, header: pydicom.Dataset,
            fallback: list[float]) -> tuple[MetaTensor, list[str]]:
    """Stack frames (one file's, or a series') into ``(C, x, y[, z])`` with its affine."""
    shapes = {frame.pixels.shape for frame in frames}
    if len(shapes) != 1:
        raise DataError(f"{source}: slices differ in shape or channels: {sorted(shapes)}")
    notes: list[str] = []
    pixel_spacing = _pixel_spacing(frames, source, notes)
    if len(frames) == 1:
        image = frames[0].pixels
        return _meta_tensor(image, _affine(frames[0], pixel_spacing, None), source,
                            str(header.get("Modality", ""))), notes
    tilt = float(header.get("GantryDetectorTilt", 0.0) or 0.0)
    frames, slice_spacing, direction, warned = _ordered(frames, source, options, tilt, fallback)
    if slice_spacing is None:  # no plane positions: frames in stored order, spacing as declared
        slice_spacing = float(header.get("SpacingBetweenSlices", header.get("SliceThickness", 1.0)) or 1.0)
    volume = np.stack([frame.pixels for frame in frames], axis=-1)
    image = _meta_tensor(volume, _affine(frames[0], (*pixel_spacing, slice_spacing), direction), source,
                         str(header.get("Modality", "")))
    return image, notes + warned


def read_dicom(path: Path, options: DicomOptions = DEFAULT_DICOM) -> tuple[MetaTensor, str | None, list[str]]:
    """Read a DICOM file (single or multi-frame, grey or colour) or a series directory.

    Grey images are ``(1, x, y[, z])`` after the Modality LUT (Hounsfield units for CT); colour images (RGB, YBR,
    palette) are ``(3, x, y[, frames])`` RGB. Enhanced multi-frame objects take each frame's position,
    orientation, pixel spacing and rescale from their functional groups. The affine's origin is the first slice
    along the slice normal.

    Returns:
        (image with its RAS affine, hashed patient key or None, warnings).

    Raises:
        DataError: naming the file or directory, for unreadable files, several series, duplicates, geometry
            problems set to ``"error"``, a zero PixelSpacing, or pixel data that cannot be decoded.
    """
    if path.is_dir():
        series, first = scan_series(path, options.series_uid, options.show_headers)
        frames = []
        for file in series.files:
            decoded, _ = _frames(file)
            if len(decoded) != 1:
                raise DataError(f"{file}: a multi-frame file inside a series folder; give it as an item of its own")
            frames += decoded
        numbers = [float(_header(f).get("InstanceNumber", i) or i) for i, f in enumerate(series.files)] if any(
            frame.position is None for frame in frames) else [0.0] * len(frames)
        image, notes = _volume(frames, path, options, first, numbers)
        return image, patient_key(first), notes + [f"left out {p.name}: {r}" for p, r in series.skipped]
    frames, header = _frames(path)
    image, notes = _volume(frames, path, options, header, list(range(len(frames))))
    return image, patient_key(header), notes
