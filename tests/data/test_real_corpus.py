"""Every public test file medvp can get from PyPI, read by medvp and by a reference reader.

Corpus: pydicom's own test files and the ``pydicom-data`` package (a dev dependency), the DICOM series in
pydicom's ``dicomdirtests``, and nibabel's test data. For each file medvp reads, the array, the voxel spacing and
the direction/origin are compared with SimpleITK (grey images), or with pydicom's ``pixel_array`` plus
``apply_modality_lut`` / ``apply_color_lut`` where SimpleITK differs by design (colour: GDCM leaves YBR as is or
scales palettes to 8 bits; the Modality LUT Sequence, which GDCM ignores; 12-bit JPEG, which it cannot decode).
Every file medvp refuses must be refused for the reason listed here, in one line naming the file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from nibabel.testing import data_path as NIBABEL_DATA
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT, DataTypes, external_data_sources
from pydicom.pixels import apply_color_lut, apply_modality_lut

from pipeline.data.readers import read_image
from pipeline.errors import DataError

_SKIP_SUFFIXES = (".txt", ".json", ".dump", ".icc", ".gz", "README")


#: the largest files, left out of CI to keep this test near 20 s on two cores (they read equal to their
#: reference when run by hand: ``MEDVP_FULL_CORPUS=1 pytest tests/data/test_real_corpus.py``)
HEAVY = ("color3d_jpeg_baseline.dcm", "examples_ybr_color.dcm", "RG3_J2KR.dcm", "RG3_J2KI.dcm")


def _installed_test_files() -> list[Path]:
    """pydicom's own test files and the pydicom-data package's, as installed. Not ``get_testdata_files``: it also
    tries to download every file of pydicom's online list that is not cached, and the corpus is what PyPI ships."""
    files = list((Path(DATA_ROOT) / "test_files").glob("*"))
    for source in external_data_sources().values():
        files += [Path(name) for name in source.get_paths("*", DataTypes.DATASET)]
    return files


def _dicom_corpus() -> list[Path]:
    files = _installed_test_files()
    full = os.environ.get("MEDVP_FULL_CORPUS") == "1"
    return sorted({path for path in files if path.is_file() and not path.name.endswith(_SKIP_SUFFIXES)
                   and (full or path.name not in HEAVY)}, key=lambda path: path.name)


DICOM_FILES = _dicom_corpus()
DICOMDIR_TESTS = Path(get_testdata_file("DICOMDIR")).parent
SERIES = [DICOMDIR_TESTS / "98892001" / "CT5N"]
#: series folders of the corpus medvp refuses, and why
REFUSED_SERIES = {DICOMDIR_TESTS / "77654033" / "CT2": r"161 missing slice\(s\) at spacing 1.250 mm",
                  DICOMDIR_TESTS / "98892003" / "MR2": r"3 series, select one with data.dicom.series_uid",
                  DICOMDIR_TESTS / "98892003" / "MR700": r"different ImageOrientationPatient; not one volume",
                  DICOMDIR_TESTS / "98892001" / "CT2N": r"different ImageOrientationPatient; not one volume",
                  DICOMDIR_TESTS: r"no DICOM image file found \(12 file\(s\) left out: 77654033: a subfolder"}
NIFTI_FILES = sorted(Path(NIBABEL_DATA).glob("*.nii*"))
OTHER_FORMATS = sorted(path for suffix in ("*.mgz", "*.mnc", "*.PAR", "*.hdr") for path in Path(NIBABEL_DATA).glob(
    suffix))[:6]

#: file name -> the reason medvp refuses it (a regular expression on the one-line error)
REFUSED = {
    "RG1_J2KI.dcm": r"PixelSpacing 0\\0 is not positive", "RG1_J2KR.dcm": r"PixelSpacing 0\\0 is not positive",
    "RG1_UNCI.dcm": r"PixelSpacing 0\\0 is not positive", "RG1_UNCR.dcm": r"PixelSpacing 0\\0 is not positive",
    "JPEG-lossy.dcm": r"cannot decode the pixel data \(JPEG Extended \(Process 2 and 4\), 12-bit\): no installed",
    "JPEG2000-embedded-sequence-delimiter.dcm": r"cannot decode the pixel data \(JPEG 2000",
    "MR_truncated.dcm": r"cannot decode the pixel data .*less than expected",
    "emri_small_jpeg_2k_lossless_too_short.dcm": r"truncated DICOM file",
    "badVR.dcm": r"cannot decode the pixel data", "liver.dcm": r"Segmentation Storage object, not an image",
    "liver_expb.dcm": r"Segmentation Storage object, not an image",
    "liver_1frame.dcm": r"Segmentation Storage object, not an image",
    "liver_expb_1frame.dcm": r"Segmentation Storage object, not an image",
    "resampled_anat_moved.nii": r"the image holds NaN or infinite values",
    "meta_missing_tsyntax.dcm": r"photometric interpretation missing is not supported",
    "nested_priv_SQ.dcm": r"photometric interpretation missing is not supported",
    "ExplVR_BigEndNoMeta.dcm": r"no pixel data \(RT Ion Plan Storage\)",
    "ExplVR_LitEndNoMeta.dcm": r"no pixel data \(RT Ion Plan Storage\)",
    "UN_sequence.dcm": r"no pixel data", "empty_charset_LEI.dcm": r"no pixel data", "no_meta.dcm": r"no pixel data",
    "no_meta_group_length.dcm": r"no pixel data", "priv_SQ.dcm": r"no pixel data",
    "reportsi.dcm": r"no pixel data \(Basic Text SR Storage\)",
    "reportsi_with_empty_number_tags.dcm": r"no pixel data \(Basic Text SR Storage\)",
    "rtplan.dcm": r"no pixel data \(RT Plan Storage\)", "rtplan_truncated.dcm": r"no pixel data \(RT Plan Storage\)",
    "rtstruct.dcm": r"no pixel data \(RT Structure Set Storage\)",
    "test-SR.dcm": r"no pixel data \(Comprehensive SR Storage\)",
    "waveform_ecg.dcm": r"no pixel data \(12-lead ECG Waveform Storage\)",
    "row_major.dconn.nii": r"cannot read the NIfTI header",
}

#: files whose reference is pydicom, with why SimpleITK differs by design
PYDICOM_REFERENCE = {
    "mlut_18.dcm": "Modality LUT Sequence (GDCM ignores it)",
    "JPGExtended.dcm": "12-bit JPEG (GDCM cannot decode it)",
    "rtdose_expb.dcm": "big-endian RT Dose: GDCM byte order differs",
    "rtdose_1frame.dcm": "GDCM fails to read it", "rtdose_expb_1frame.dcm": "GDCM fails to read it",
    "rtdose_rle_1frame.dcm": "GDCM fails to read it",
}
#: SimpleITK cannot read NIfTI-2: nibabel is the reference
NIBABEL_REFERENCE = ("example_nifti2.nii.gz",)
#: SimpleITK ignores SpacingBetweenSlices in these classic multi-frame MR files (1.0 mm; the header says 1.2 mm)
SLICE_SPACING_FROM_HEADER = ("emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm",
                             "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm")


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.ERROR)
    sitk.ProcessObject_SetGlobalWarningDisplay(False)


def _itk_ras_affine(image: sitk.Image) -> np.ndarray:
    """Voxel to RAS of the first three axes (a 4D image's fourth axis is time: medvp's channels)."""
    dims = image.GetDimension()
    spatial = min(dims, 3)
    direction = np.asarray(image.GetDirection()).reshape(dims, dims)[:spatial, :spatial]
    affine = np.eye(4)
    affine[:spatial, :spatial] = direction * np.asarray(image.GetSpacing())[:spatial]
    affine[:spatial, 3] = image.GetOrigin()[:spatial]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _itk_array(image: sitk.Image) -> np.ndarray:
    """SimpleITK's array as ``(C, x, y[, z])`` (a 4D image's time axis as channels)."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    if image.GetDimension() == 4:
        return np.transpose(array, (0, 3, 2, 1))
    array = np.moveaxis(array, -1, 0) if image.GetNumberOfComponentsPerPixel() > 1 else array[None]
    return np.transpose(array, (0, *range(array.ndim - 1, 0, -1)))


def _on_reference_grid(ours: np.ndarray, our_affine: np.ndarray, reference_affine: np.ndarray) -> np.ndarray:
    """Our array with its voxels moved to the reference's voxel grid; asserts the two grids are the same
    points in space (same spacing and directions, up to axis order and flips, and the same origin)."""
    spatial = ours.ndim - 1
    mapping = np.linalg.inv(reference_affine) @ our_affine
    block = mapping[:spatial, :spatial]
    permutation = np.rint(block)
    assert np.allclose(block, permutation, atol=2e-3), f"grids differ in spacing or direction:\n{mapping}"
    assert sorted(np.abs(permutation).sum(axis=0)) == [1.0] * spatial
    for axis in range(spatial):  # our axis -> reference axis, flipped where the sign is negative
        target = int(np.argmax(np.abs(permutation[:, axis])))
        if permutation[target, axis] < 0:
            assert np.isclose(mapping[target, -1], ours.shape[1 + axis] - 1, atol=2e-2), "origins differ"
        else:
            assert np.isclose(mapping[target, -1], 0, atol=2e-2), "origins differ"
    flips = [1 + axis for axis in range(spatial) if permutation[:, axis].sum() < 0]
    moved = np.flip(ours, axis=flips) if flips else ours
    order = [int(np.argmax(np.abs(permutation[:, axis]))) for axis in range(spatial)]
    return np.transpose(moved, (0, *[1 + order.index(target) for target in range(spatial)]))


def _pydicom_reference(path: Path) -> np.ndarray:
    dataset = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in dataset.file_meta:  # a file without meta header: as it was encoded
        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if implicit else (
            pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian)
    array = dataset.pixel_array
    photometric = dataset.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        array = apply_color_lut(array, dataset)
    elif photometric.startswith("MONOCHROME"):
        array = apply_modality_lut(array, dataset)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    array = np.asarray(array, dtype=np.float32)
    if photometric.startswith("MONOCHROME"):
        array = array[..., None]
    planes = array if frames > 1 else array[None]  # (frames, rows, columns, channels)
    return np.transpose(planes, (3, 2, 1, 0)) if frames > 1 else np.transpose(planes[0], (2, 1, 0))


def _check_against_reference(path: Path) -> str:
    image = read_image(path).image
    ours, affine = np.asarray(image), np.asarray(image.affine)
    dataset = pydicom.dcmread(path, force=True, stop_before_pixels=True) if path.suffix != ".nii" and not \
        path.name.endswith(".nii.gz") else None
    colour = dataset is not None and not str(dataset.get("PhotometricInterpretation", "")).startswith("MONOCHROME")
    if colour or path.name in PYDICOM_REFERENCE:
        reference = _pydicom_reference(path)
        assert ours.shape == reference.shape
        assert np.allclose(ours, reference, atol=1e-3)
        return "pydicom"
    if path.name in NIBABEL_REFERENCE:
        loaded = nib.load(path)
        reference = np.asarray(loaded.dataobj, dtype=np.float32)
        assert np.allclose(affine, loaded.affine, atol=1e-4)
        assert np.allclose(ours, reference[None] if reference.ndim == 3 else np.moveaxis(reference, -1, 0))
        return "nibabel"
    itk = sitk.ReadImage(str(path))
    reference, reference_affine = _itk_array(itk), _itk_ras_affine(itk)
    if ours.ndim == 3 and reference.ndim == 4 and reference.shape[-1] == 1:
        reference = reference[..., 0]
        reference_affine[:, 2] = affine[:, 2]  # a 2D image: no third axis to compare
    if path.name in SLICE_SPACING_FROM_HEADER:
        assert np.isclose(np.linalg.norm(affine[:3, 2]), float(dataset.SpacingBetweenSlices))
        reference_affine[:3, 2] *= np.linalg.norm(affine[:3, 2]) / np.linalg.norm(reference_affine[:3, 2])
    if ours.ndim == 3:  # a 2D image: the same in-plane axes and origin in space, and the same array
        assert np.allclose(affine[:3, :2], reference_affine[:3, :2], atol=2e-3)
        assert np.allclose(affine[:3, 3], reference_affine[:3, 3], atol=2e-2)
        assert ours.shape == reference.shape and np.allclose(ours, reference, atol=1e-3)
        return "SimpleITK"
    moved = _on_reference_grid(ours, affine, reference_affine)
    assert moved.shape == reference.shape
    assert np.allclose(moved, reference, atol=1e-3)
    return "SimpleITK"


def _assert_one_line_refusal(path: Path, pattern: str) -> None:
    with pytest.raises(DataError) as raised:
        read_image(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("path", DICOM_FILES + NIFTI_FILES, ids=lambda path: path.name)
def test_every_public_file_reads_like_the_reference_or_is_refused_with_its_reason(path):
    if path.name in REFUSED:
        _assert_one_line_refusal(path, REFUSED[path.name])
    else:
        _check_against_reference(path)


@pytest.mark.parametrize("folder", SERIES, ids=lambda path: path.name)
def test_series_folders_read_like_simpleitks_series_reader(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    itk = reader.Execute()
    image = read_image(folder).image
    moved = _on_reference_grid(np.asarray(image), np.asarray(image.affine), _itk_ras_affine(itk))
    assert np.allclose(moved, _itk_array(itk), atol=1e-3)


@pytest.mark.parametrize("folder", list(REFUSED_SERIES), ids=lambda path: path.name)
def test_series_folders_that_are_not_one_volume_are_refused_with_the_reason(folder):
    _assert_one_line_refusal(folder, REFUSED_SERIES[folder])


@pytest.mark.parametrize("path", OTHER_FORMATS, ids=lambda path: path.name)
def test_formats_medvp_does_not_read_are_refused_naming_the_file(path):
    _assert_one_line_refusal(path, r"not an image medvp reads")


def test_the_corpus_is_the_whole_public_set():
    """pydicom-data is installed (the dev extra): without it the corpus would silently shrink to pydicom's own."""
    assert len(DICOM_FILES) + len(HEAVY) >= 140 and len(NIFTI_FILES) >= 7
    assert any(path.name == "eCT_Supplemental.dcm" for path in DICOM_FILES)  # a pydicom-data file
