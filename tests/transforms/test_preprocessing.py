import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from pipeline.config import PreprocessingConfig
from pipeline.data.readers import read_image
from pipeline.transforms import preprocessing_transforms


def run(config: PreprocessingConfig, image: torch.Tensor, dims: int) -> np.ndarray:
    return np.asarray(preprocessing_transforms(config, dims)({"image": image, "label": 0})["image"])


def test_ct_windows_map_hounsfield_units():
    hu = MetaTensor(torch.tensor([[[-2000.0, -1350.0, -600.0, 150.0, 3000.0]]]))
    lung = run(PreprocessingConfig(preset="ct_lung", target_range=(0, 1)), hu, 2)
    assert np.allclose(lung[0, 0], [0, 0, 0.5, 1, 1])
    brain = run(PreprocessingConfig(preset="ct_brain", target_range=(0, 1)),
                MetaTensor(torch.tensor([[[0.0, 40.0, 80.0]]])), 2)
    assert np.allclose(brain[0, 0], [0, 0.5, 1])
    custom = run(PreprocessingConfig(preset="ct_window", window=(100, 200), target_range=(-1, 1)),
                 MetaTensor(torch.tensor([[[0.0, 100.0, 200.0]]])), 2)
    assert np.allclose(custom[0, 0], [-1, 0, 1])


def test_resize_keeps_the_aspect_ratio_and_pads_instead_of_stretching():
    image = MetaTensor(torch.full((1, 40, 20), 255.0))  # a 2:1 image
    out = run(PreprocessingConfig(spatial_size=[32, 32], interpolation="nearest"), image, 2)
    assert out.shape == (1, 32, 32)
    content = out[0] > -1  # the image maps to +1, padding to the low end of the target range
    assert content.sum(axis=1).max() == 16 and content.sum(axis=0).max() == 32
    assert np.allclose(out[0][~content], -1)


def test_zscore_and_percentile_presets():
    values = MetaTensor(torch.arange(1.0, 101.0).reshape(1, 10, 10))
    z = run(PreprocessingConfig(preset="mr_zscore"), values, 2)
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-2
    p = run(PreprocessingConfig(preset="mr_percentile", percentiles=(10, 90), target_range=(0, 1)), values, 2)
    assert p.min() == 0 and p.max() == 1 and (p == 0).sum() >= 10


def test_orientation_and_spacing_for_3d_volumes(tmp_path):
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS at 2 mm
    volume = np.arange(4 * 4 * 4, dtype=np.float32).reshape(4, 4, 4)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "las.nii")
    image = read_image(tmp_path / "las.nii").image
    transform = preprocessing_transforms(PreprocessingConfig(orientation="RAS", spacing=[1.0, 1.0, 1.0],
                                                             source_range=(0, 63), target_range=(0, 63)),
                                         3, ensure_plain=False)
    out = transform({"image": image, "label": 0})["image"]
    assert np.all(np.diag(np.asarray(out.affine))[:3] > 0)
    assert out.shape[1:] == (7, 7, 7) or out.shape[1:] == (8, 8, 8)
    assert np.isclose(float(out[0, -1, 0, 0]), volume[0, 0, 0], atol=1.0)  # x flipped: first voxel now last
