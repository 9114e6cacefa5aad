"""NIfTI, PNG and ITK reading against SimpleITK, and bad inputs."""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from pipeline.data.readers import ReadImaged, read_image
from pipeline.errors import DataError

NIFTI = Path(__file__).resolve().parents[3] / "shared" / "data" / "nifti"
needs_nifti = pytest.mark.skipif(not NIFTI.is_dir(), reason="shared/data/nifti is not beside the repository")


@needs_nifti
@pytest.mark.parametrize("name", ["FLAIR.nii.gz", "anatomical.nii", "chris_t1.nii.gz", "example4d.nii.gz"])
def test_nifti_matches_simpleitk(name):
    image = read_image(NIFTI / name).image
    reference = sitk.ReadImage(str(NIFTI / name))
    array = sitk.GetArrayFromImage(reference).astype(np.float32)
    array = np.moveaxis(array, range(array.ndim), range(array.ndim)[::-1])  # (x, y, z[, t])
    if array.ndim == 4:  # the fourth axis becomes channels
        array = np.moveaxis(array, -1, 0)
    else:
        array = array[None]
    assert tuple(image.shape) == array.shape
    assert np.allclose(np.asarray(image), array)
    spacing = np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(axis=0))
    assert np.allclose(spacing, reference.GetSpacing()[:3], atol=1e-5)


def test_png_grey_and_rgb_are_channel_first_in_monai_axis_order(tmp_path):
    grey = (np.arange(24).reshape(6, 4) * 10).astype(np.uint8)  # 6 rows, 4 columns
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png").image
    assert tuple(image.shape) == (1, 4, 6) and np.array_equal(np.asarray(image)[0], grey.T)
    rgb = np.stack([grey, grey // 2, grey // 3], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    image = read_image(tmp_path / "rgb.png").image
    assert tuple(image.shape) == (3, 4, 6) and np.array_equal(np.asarray(image)[1], (grey // 2).T)


def test_mha_reads_like_the_nifti_it_was_written_from(tmp_path):
    volume = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    reference = sitk.GetImageFromArray(volume)  # (z, y, x) -> image of size (7, 6, 5)
    reference.SetSpacing((0.5, 0.7, 2.0))
    sitk.WriteImage(reference, str(tmp_path / "v.mha"))
    image = read_image(tmp_path / "v.mha").image
    assert tuple(image.shape) == (1, 7, 6, 5)
    assert np.allclose(np.asarray(image)[0], volume.transpose(2, 1, 0))
    assert np.allclose(np.sqrt((np.asarray(image.affine)[:3, :3] ** 2).sum(0)), (0.5, 0.7, 2.0))


def test_bad_inputs_give_one_line_errors_naming_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    truncated = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), tmp_path / "whole.nii.gz")
    truncated.write_bytes((tmp_path / "whole.nii.gz").read_bytes()[:60])
    nan_volume = np.ones((4, 4, 4), np.float32)
    nan_volume[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(nan_volume, np.eye(4)), tmp_path / "nan.nii")
    (tmp_path / "garbage.png").write_bytes(gzip.compress(b"garbage"))
    cases = {
        tmp_path / "notes.txt": "not an image medvp reads",
        empty: "empty directory",
        tmp_path / "absent.nii": "no such file or directory",
        truncated: "cannot read the NIfTI header",
        tmp_path / "nan.nii": "NaN or infinite",
        tmp_path / "garbage.png": "cannot read the image",
    }
    for path, message in cases.items():
        with pytest.raises(DataError) as raised:
            read_image(path)
        text = str(raised.value)
        assert text.startswith(str(path)) and message in text and "\n" not in text, text


def test_wrong_dimensionality_is_reported(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / "volume.nii")
    with pytest.raises(DataError, match=r"volume.nii: a 3D image where 2D images are expected"):
        ReadImaged(keys="image", spatial_dims=2)({"image": str(tmp_path / "volume.nii")})
