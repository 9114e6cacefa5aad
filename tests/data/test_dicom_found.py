"""The DICOM problems issue 11 found, each on a real file (pydicom's test files, pydicom-data) or a series built
from one: colour, palette, enhanced multi-frame, series origin, objects that are not images, zero pixel spacing,
duplicates, thin volumes, predict's folder semantics, validate on folders. All run from a clean clone."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from pipeline.cli import main as medvp
from pipeline.config.schema import PreprocessingConfig
from pipeline.data.dicom import read_dicom, scan_series
from pipeline.data.loading import item_transforms
from pipeline.data.readers import read_image
from pipeline.errors import DataError
from pipeline.inference.inputs import collect_inputs


def _file(name: str) -> Path:
    return Path(get_testdata_file(name))


def _series(folder: Path, slices: int = 4, step: float = 5.0, names=None, edit=None) -> Path:
    """A CT series from pydicom's CT_small.dcm: one slice per ``step`` mm along the normal."""
    base = pydicom.dcmread(_file("CT_small.dcm"))
    folder.mkdir(parents=True)
    for index in range(slices):
        dataset = copy.deepcopy(base)
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()
        position = [float(v) for v in base.ImagePositionPatient]
        dataset.ImagePositionPatient = [position[0], position[1], position[2] + step * index]
        dataset.PixelData = (base.pixel_array + index).astype(base.pixel_array.dtype).tobytes()
        if edit is not None:
            edit(index, dataset)
        dataset.save_as(folder / (names(index) if names else f"{index:02d}.dcm"))
    return folder


def test_colour_images_are_three_channel_rgb_and_multiframe_colour_is_frames_of_rgb():
    rgb = read_image(_file("SC_rgb.dcm")).image
    ybr = read_image(_file("SC_ybr_full_uncompressed.dcm")).image
    assert rgb.shape == ybr.shape == (3, 100, 100)
    difference = np.abs(np.asarray(rgb) - np.asarray(ybr))  # YBR converted to RGB (up to the YBR rounding)
    assert difference.mean() < 1 and difference.max() <= 8
    assert read_image(_file("SC_rgb_2frame.dcm")).image.shape == (3, 100, 100, 2)


def test_palette_colour_goes_through_the_palette_not_used_as_grey():
    image = np.asarray(read_image(_file("OT-PAL-8-face.dcm")).image)  # also: no meta header, no preamble
    dataset = pydicom.dcmread(_file("OT-PAL-8-face.dcm"), force=True)
    assert image.shape == (3, dataset.Columns, dataset.Rows)
    assert not np.array_equal(image[0], image[1])  # colour, not grey indices
    assert image.max() > 255  # the palette's 16-bit entries, not the 8-bit indices


def test_enhanced_ct_takes_hu_spacing_and_geometry_from_its_functional_groups():
    image = read_image(_file("eCT_Supplemental.dcm")).image
    affine = np.asarray(image.affine)
    assert image.shape == (1, 512, 512, 2)
    assert float(image.min()) == -1024.0  # RescaleIntercept from the Pixel Value Transformation group
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), [0.388671875, 0.388671875, 10.0])


def test_series_origin_is_the_first_slice_along_the_normal_whatever_the_file_names(tmp_path):
    ordered = read_dicom(_series(tmp_path / "a"))[0]
    renamed = read_dicom(_series(tmp_path / "b", names=lambda index: f"{9 - index:02d}_x"))[0]
    assert np.allclose(np.asarray(ordered.affine), np.asarray(renamed.affine))
    lowest = float(pydicom.dcmread(_file("CT_small.dcm")).ImagePositionPatient[2])
    assert np.isclose(float(np.asarray(renamed.affine)[2, 3]), lowest)


def test_objects_that_are_not_images_are_left_out_of_a_series_with_reasons(tmp_path, caplog):
    folder = _series(tmp_path / "s")
    shutil.copy(_file("test-SR.dcm"), folder / "report")
    shutil.copy(Path(get_testdata_file("DICOMDIR")), folder / "DICOMDIR")
    shutil.copy(_file("rtplan.dcm"), folder / "plan.dcm")
    (folder / "notes.txt").write_text("scanner notes")
    raw = folder / "raw_slice"  # a slice written without the 128-byte preamble
    pydicom.dcmread(folder / "00.dcm").save_as(raw, enforce_file_format=False)
    raw.write_bytes(raw.read_bytes()[132:] if raw.read_bytes()[128:132] == b"DICM" else raw.read_bytes())
    with caplog.at_level(logging.INFO):
        series, _ = scan_series(folder)
    reasons = {path.name: reason for path, reason in series.skipped}
    assert "Comprehensive SR" in reasons["report"] and "DICOMDIR" in reasons["DICOMDIR"]
    assert "RT Plan" in reasons["plan.dcm"] and reasons["notes.txt"] == "not a DICOM file"
    assert "report: left out of the series" in caplog.text
    with pytest.raises(DataError, match="duplicate slice"):  # the preamble-less copy of slice 00 is read too
        read_dicom(folder)
    name = str(pydicom.dcmread(_file("CT_small.dcm")).PatientName)
    assert name not in caplog.text


def test_duplicate_slices_are_named_as_duplicates(tmp_path):
    folder = _series(tmp_path / "s")
    shutil.copy(folder / "02.dcm", folder / "02_copy.dcm")
    with pytest.raises(DataError) as raised:
        read_dicom(folder)
    assert "1 duplicate slice(s)" in str(raised.value) and "02.dcm and 02_copy.dcm" in str(raised.value)


def test_zero_pixel_spacing_is_an_error_naming_the_file(tmp_path):
    dataset = pydicom.dcmread(_file("CT_small.dcm"))
    dataset.PixelSpacing = [0, 0]
    dataset.save_as(tmp_path / "zero.dcm")
    with pytest.raises(DataError, match=r"zero.dcm: PixelSpacing 0\\0 is not positive"):
        read_image(tmp_path / "zero.dcm")


def test_a_thin_volume_resized_to_a_cube_is_an_error_naming_the_file_and_shapes(tmp_path):
    folder = _series(tmp_path / "thin", slices=3)
    transform = item_transforms(PreprocessingConfig(preset="ct_window", window=(40, 400), spatial_size=(64, 64, 64)),
                                3)
    with pytest.raises(RuntimeError) as raised:  # MONAI's Compose wraps it; the CLI prints the DataError
        transform({"image": str(folder)})
    error = raised.value.__cause__
    assert isinstance(error, DataError) and "\n" not in str(error)
    assert str(folder) in str(error) and "[64, 64, 2] inside a [64, 64, 64] input: 3% image" in str(error)
    fitted = item_transforms(PreprocessingConfig(preset="ct_window", window=(40, 400), spacing=(2.0, 2.0, 2.0),
                                                 spatial_size=(48, 48, 8)), 3)({"image": str(folder)})["image"]
    assert tuple(fitted.shape) == (1, 48, 48, 8)


def test_predict_folders_follow_the_sources_item_rules(tmp_path, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(_file(name), folder / name)
    shutil.copy(_file("CT_small.dcm"), folder / "IM0001")  # extensionless DICOM, found by content
    shutil.copy(_file("test-SR.dcm"), folder / "report.dcm")
    (folder / "readme.txt").write_text("x")
    with caplog.at_level(logging.WARNING):
        items = collect_inputs([str(folder)], spatial_dims=2)
    assert sorted(Path(item.name).name for item in items) == ["CT_small.dcm", "IM0001", "MR_small.dcm"]
    assert "report.dcm: no pixel data (Comprehensive SR Storage)" in caplog.text and "readme.txt" in caplog.text
    series_parent = tmp_path / "studies"
    _series(series_parent / "one")
    _series(series_parent / "two", slices=5)
    volumes = collect_inputs([str(series_parent)], spatial_dims=3)
    assert [Path(item.name).name for item in volumes] == ["one", "two"]
    assert [item.image.shape[-1] for item in volumes] == [4, 5]


def test_validate_checks_folder_sources_as_folders(tmp_path, capsys):
    (tmp_path / "data" / "a").mkdir(parents=True)
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{source: folder, path: {tmp_path / 'data'}}}\nmodel: {{name: simplecnn}}\n")
    assert medvp(["validate", str(config)]) == 0
    config.write_text(f"data: {{source: folder, path: {config}}}\nmodel: {{name: simplecnn}}\n")
    assert medvp(["validate", str(config)]) == 2
    assert "data.source: folder needs a folder" in capsys.readouterr().err


def test_an_element_pydicom_cannot_convert_is_an_error_naming_the_file(tmp_path):
    """pydicom converts elements lazily: a damaged one (here an unknown VR in the file meta, found by the loader
    fuzzing) must be refused when the file is read, not raise wherever the element is first used."""
    data = bytearray(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    at = data.find(b"\x02\x00\x02\x00UI")
    data[at + 4:at + 6] = b"TI"
    path = tmp_path / "unknown_vr.dcm"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"unknown_vr\.dcm: not a readable DICOM file \(NotImplementedError\)$"):
        read_image(path)
