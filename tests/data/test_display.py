"""One display rule (preview, saliency): 2D images as their PNG/DICOM viewer shows them, 3D in the radiological
convention. Asymmetric images whose expected view is known are checked pixel by pixel."""

from __future__ import annotations

from pathlib import Path

import matplotlib.axes
import nibabel as nib
import numpy as np
import pydicom
import yaml
from nibabel.testing import data_path as NIBABEL_DATA
from PIL import Image
from pydicom.data import get_testdata_file

from pipeline.config import load_config
from pipeline.data.display import display_image, display_planes
from pipeline.data.medmnist import read_medmnist
from pipeline.data.readers import read_image
from pipeline.engine.preview import write_preview
from pipeline.inference.saliency import save_saliency_png


def _letter_l(rows: int = 12, columns: int = 9) -> np.ndarray:
    """An 'L': a bar down the left edge and a foot along the bottom; no flip or transpose leaves it unchanged."""
    image = np.zeros((rows, columns), dtype=np.uint8)
    image[1:-1, 1] = 200
    image[-2, 1:-2] = 120
    return image


def test_a_png_and_a_medmnist_array_show_as_the_png_does(tmp_path):
    picture = _letter_l()
    Image.fromarray(picture).save(tmp_path / "l.png")
    assert np.array_equal(display_image(read_image(tmp_path / "l.png").image), picture)
    images = np.stack([picture] * 3)
    np.savez(tmp_path / "l.npz", **{f"{split}_{kind}": images if kind == "images" else np.zeros((3, 1), np.uint8)
                                    for split in ("train", "val", "test") for kind in ("images", "labels")})
    assert np.array_equal(display_image(read_medmnist(tmp_path / "l.npz")["train"].images[0]), picture)


def test_a_dicom_image_shows_as_a_dicom_viewer_does():
    path = get_testdata_file("MR_small.dcm")
    stored = pydicom.dcmread(path).pixel_array  # rows, columns: what a viewer draws
    assert np.array_equal(display_image(read_image(Path(path)).image), stored)


def _marked_volume() -> tuple[np.ndarray, np.ndarray]:
    """A RAS volume with a bright voxel at the patient's right, anterior, superior corner region."""
    volume = np.zeros((9, 11, 7), dtype=np.float32)
    volume[7, 9, 3] = 1.0  # RAS: x grows towards the patient's right, y towards anterior, z towards superior
    volume[7, 5, 5] = 0.5  # right, central (the coronal plane shown), superior
    return volume, np.diag([2.0, 2.0, 3.0, 1.0])


def test_3d_volumes_are_shown_in_the_radiological_convention_whatever_their_storage_order():
    volume, affine = _marked_volume()
    ras = nib.Nifti1Image(volume, affine)
    las = ras.as_reoriented([[0, -1], [1, 1], [2, 1]])  # stored left-to-right instead
    pir = ras.as_reoriented([[1, -1], [2, -1], [0, 1]])  # another axis order entirely
    views = [display_planes(np.asarray(image.dataobj)[None], image.affine) for image in (ras, las, pir)]
    for name in ("axial", "coronal", "sagittal"):
        assert np.array_equal(views[0][name], views[1][name]) and np.array_equal(views[0][name], views[2][name])
    # the marked voxel is at the patient's right (RAS x = 7 of 9) and anterior (y = 9 of 11): in an axial view
    # (anterior up, patient's right on the viewer's left) it is in the upper left part
    axial = views[0]["axial"]
    row, column = np.argwhere(axial == 1.0)[0]
    assert axial.shape == (11, 9) and (row, column) == (11 - 1 - 9, 9 - 1 - 7)
    coronal = views[0]["coronal"]  # superior up, patient's right on the viewer's left
    row, column = np.argwhere(coronal == 0.5)[0]
    assert (row, column) == (7 - 1 - 5, 9 - 1 - 7)


def test_a_real_brain_axial_view_has_anterior_up():
    anatomy = nib.load(f"{NIBABEL_DATA}/anatomical.nii")
    image = read_image(Path(f"{NIBABEL_DATA}/anatomical.nii")).image
    flipped = nib.Nifti1Image(np.asarray(anatomy.dataobj)[:, ::-1], anatomy.affine @ np.array(
        [[1, 0, 0, 0], [0, -1, 0, anatomy.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]]))
    assert np.array_equal(display_image(image), display_image(np.asarray(flipped.dataobj)[None], flipped.affine))


def test_preview_and_saliency_draw_by_the_one_rule(tmp_path, monkeypatch):
    drawn: list[np.ndarray] = []
    original = matplotlib.axes.Axes.imshow
    monkeypatch.setattr(matplotlib.axes.Axes, "imshow",
                        lambda self, data, *a, **k: drawn.append(np.asarray(data)) or original(self, data, *a, **k))
    picture = _letter_l()
    root = tmp_path / "data"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(picture).save(root / label / f"{index}.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")
    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump({"data": {"source": "folder", "path": str(root), "on_bad_item": "skip"},
                                           "preprocessing": {"source_range": [0, 255], "target_range": [0, 1]},
                                           "model": {"name": "simplecnn"}}))
    write_preview(load_config(config_path), tmp_path / "preview.png", count=2)  # skips broken.png
    assert np.array_equal(drawn[0], picture)  # "as read"
    assert np.allclose(drawn[1], picture / 255.0)  # "preprocessed"
    drawn.clear()
    image = read_image(root / "a" / "0.png").image
    save_saliency_png(tmp_path / "s.png", np.asarray(image), np.asarray(image[0]) / 200.0, "t")
    assert np.allclose(drawn[0] * 200, picture) and np.allclose(drawn[2], picture / 200.0)
