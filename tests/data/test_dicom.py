"""DICOM reading against SimpleITK on the real files in shared/data/dicom."""

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from pipeline.data.dicom import DicomOptions, read_dicom
from pipeline.data.readers import read_image
from pipeline.errors import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "dicom"
SERIES = SHARED / "ct_head_ge_series"
pytestmark = pytest.mark.skipif(not SERIES.is_dir(), reason="shared/data/dicom is not beside the repository")


def sitk_reference(path: Path) -> tuple[np.ndarray, tuple]:
    """SimpleITK's array in MONAI's (x, y[, z]) order, and its spacing."""
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        image = reader.Execute()
    else:
        image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float32).transpose(2, 1, 0)
    spacing = image.GetSpacing()
    if array.shape[-1] == 1:
        return array[..., 0], spacing[:2]
    return array, spacing


def spacing_of(image) -> np.ndarray:
    return np.sqrt((np.asarray(image.affine)[:3, : image.ndim - 1] ** 2).sum(axis=0))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "RG3_J2KR.dcm", "emri_small.dcm"])
def test_single_files_match_simpleitk(name):
    result = read_image(SHARED / "single" / name)
    ours = np.asarray(result.image)[0]
    reference, spacing = sitk_reference(SHARED / "single" / name)
    assert ours.shape == reference.shape
    assert np.array_equal(ours, reference)
    assert np.allclose(spacing_of(result.image)[:2], spacing[:2], atol=1e-4)


def test_ct_is_in_hounsfield_units():
    raw = pydicom.dcmread(SHARED / "single" / "CT_small.dcm")
    ours = np.asarray(read_image(SHARED / "single" / "CT_small.dcm").image)[0]
    expected = raw.pixel_array.T * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    assert np.array_equal(ours, expected)
    assert ours.min() < -800  # air


def test_monochrome1_jpeg2000_radiograph_is_inverted():
    raw = pydicom.dcmread(SHARED / "single" / "RG3_J2KR.dcm")
    assert raw.PhotometricInterpretation == "MONOCHROME1"
    ours = np.asarray(read_image(SHARED / "single" / "RG3_J2KR.dcm").image)[0]
    assert np.array_equal(ours, (2**raw.BitsStored - 1) - raw.pixel_array.T.astype(np.float32))


def test_multiframe_file_is_a_volume_with_frames_last():
    image = read_image(SHARED / "single" / "emri_small.dcm").image
    assert tuple(image.shape) == (1, 64, 64, 10)


def test_series_matches_simpleitk_and_reports_the_gantry_tilt():
    image, patient, warnings = read_dicom(SERIES)
    reference, spacing = sitk_reference(SERIES)
    assert tuple(image.shape) == (1, 512, 512, 14)
    assert np.array_equal(np.asarray(image)[0], reference)
    assert np.allclose(spacing_of(image), spacing, atol=1e-3)  # (0.488, 0.488, 4.22)
    assert any("gantry tilt 18.5 degrees" in warning for warning in warnings)
    assert patient is not None and len(patient) == 16
    with pytest.raises(DataError, match="gantry tilt 18.5 degrees .*data.dicom.gantry_tilt: error"):
        read_dicom(SERIES, DicomOptions(gantry_tilt="error"))


def copy_series(target: Path, rename=None, skip=(), edit=None) -> Path:
    target.mkdir()
    for index, path in enumerate(sorted(SERIES.iterdir())):
        if path.name in skip:
            continue
        name = rename(index, path.name) if rename else path.name
        if edit is None:
            shutil.copy(path, target / name)
        else:
            dataset = pydicom.dcmread(path)
            edit(index, dataset)
            dataset.save_as(target / name)
    return target


def test_slices_are_ordered_by_position_not_by_file_name_or_instance_number(tmp_path):
    def scramble(index, dataset):
        dataset.InstanceNumber = (index * 5) % 14 + 1

    shuffled = copy_series(tmp_path / "series", rename=lambda index, name: f"{(index * 5) % 14:02d}_{name[::-1]}",
                           edit=scramble)
    original = np.asarray(read_dicom(SERIES)[0])
    assert np.array_equal(np.asarray(read_dicom(shuffled)[0]), original)


def test_missing_slice_is_detected(tmp_path):
    gap = copy_series(tmp_path / "series", skip=("07.dcm",))
    with pytest.raises(DataError, match=r"1 missing slice\(s\)"):
        read_dicom(gap)
    image, _, warnings = read_dicom(gap, DicomOptions(missing_slices="warn"))
    assert image.shape[-1] == 13 and any("missing" in warning for warning in warnings)


def test_uneven_spacing_is_detected(tmp_path):
    def shift(index, dataset):
        if index == 5:
            position = [float(v) for v in dataset.ImagePositionPatient]
            position[2] += 1.5
            dataset.ImagePositionPatient = position

    uneven = copy_series(tmp_path / "series", edit=shift)
    with pytest.raises(DataError, match="slice spacing varies"):
        read_dicom(uneven)


def test_several_series_are_listed_unless_one_is_selected(tmp_path):
    mixed = copy_series(tmp_path / "mixed")
    shutil.copy(SHARED / "single" / "CT_small.dcm", mixed / "other.dcm")
    other_uid = pydicom.dcmread(SHARED / "single" / "CT_small.dcm").SeriesInstanceUID
    series_uid = pydicom.dcmread(SERIES / "01.dcm").SeriesInstanceUID
    with pytest.raises(DataError) as raised:
        read_dicom(mixed)
    message = str(raised.value)
    assert "2 series" in message and series_uid in message and other_uid in message
    assert "14 slices" in message and "1 slices" in message
    assert "data.dicom.series_uid" in message
    image, _, _ = read_dicom(mixed, DicomOptions(series_uid=series_uid))
    assert image.shape[-1] == 14


def test_errors_and_metadata_never_carry_patient_identifiers(tmp_path):
    dataset = pydicom.dcmread(SHARED / "single" / "CT_small.dcm")
    name, patient_id = str(dataset.PatientName), str(dataset.PatientID)
    assert name and patient_id
    image = read_image(SHARED / "single" / "CT_small.dcm").image
    assert set(image.meta) <= {"filename_or_obj", "modality", "affine", "original_affine", "space",
                               "original_channel_dim"}
    assert name not in repr(image.meta) and patient_id not in repr(image.meta)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((SHARED / "single" / "CT_small.dcm").read_bytes()[:3000])
    with pytest.raises(DataError) as raised:
        read_image(truncated)
    assert "truncated.dcm" in str(raised.value)
    assert name not in str(raised.value) and patient_id not in str(raised.value)


def test_extensionless_dicom_is_recognised_by_its_preamble(tmp_path):
    target = tmp_path / "IM0001"
    shutil.copy(SHARED / "single" / "CT_small.dcm", target)
    assert np.array_equal(np.asarray(read_image(target).image), np.asarray(read_image(SHARED / "single" /
                                                                                      "CT_small.dcm").image))
