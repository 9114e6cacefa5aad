"""``medvp predict RUN FILES`` gives the probabilities training's own test evaluation wrote, item for item.

One tiny run per source kind (1 epoch, a few items): real NIfTI (nibabel's test anatomy) stored in mixed
orientations with ``orientation`` and ``spacing`` set, DICOM series folders (with a report object that is left
out), MedMNIST, and a PNG folder. ``predictions_test.csv`` names every item; predict's rows are matched by name.
"""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import yaml
from nibabel.testing import data_path as NIBABEL_DATA
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pipeline.cli import main as medvp

pytestmark = pytest.mark.slow

SPLITS = {"train": 4, "val": 2, "test": 3}  # items per class and split
TINY = {"name": "simplecnn", "options": {"channels": [4, 4, 8, 8]}}


def _config(tmp_path: Path, name: str, data: dict, preprocessing: dict) -> Path:
    config = {"data": {"batch_size": 4, "cache": "memory", **data}, "preprocessing": preprocessing, "model": TINY,
              "loss": {"variance_weight": 0.01, "taps": "last_block"}, "training": {"max_epochs": 1, "seed": 0},
              "evaluation": {"splits": ["test"], "bootstrap_samples": 10},
              "output": {"root": str(tmp_path / "runs"), "name": name}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _train_and_compare(tmp_path: Path, config: Path, inputs: list[str], name_of) -> dict[str, dict]:
    """Train, predict ``inputs``, and assert every evaluated test item has predict's probabilities (1e-5)."""
    assert medvp(["train", str(config)]) == 0
    run_dir = tmp_path / "runs" / config.stem
    evaluated = {row["item"]: row for row in _rows(run_dir / "predictions_test.csv")}
    out = tmp_path / f"{config.stem}_predicted.csv"
    assert medvp(["predict", str(run_dir), *inputs, "--out", str(out)]) == 0
    predicted = {name_of(row["item"]): row for row in _rows(out)}
    assert set(evaluated) == set(predicted) and len(evaluated) == 2 * SPLITS["test"]
    columns = [key for key in next(iter(evaluated.values())) if key.startswith("probability_")]
    for item, row in evaluated.items():
        for column in columns:
            assert abs(float(row[column]) - float(predicted[item][column])) <= 1e-5, (item, column)
    return evaluated


def _reoriented(volume: np.ndarray, affine: np.ndarray, flips: tuple[int, ...], order: tuple[int, int, int]):
    """The same anatomy stored in another voxel order: flip and permute axes, and the affine with them."""
    ornt = np.array([[order.index(axis), -1 if axis in flips else 1] for axis in range(3)], dtype=float)
    image = nib.Nifti1Image(volume, affine).as_reoriented(ornt)
    return np.asarray(image.dataobj), image.affine


def test_nifti_of_mixed_orientation_with_orientation_and_spacing(tmp_path):
    anatomy = nib.load(Path(NIBABEL_DATA) / "anatomical.nii")
    volume, affine = np.asarray(anatomy.dataobj, dtype=np.float32), anatomy.affine
    storages = [((), (0, 1, 2)), ((0,), (0, 1, 2)), ((1, 2), (1, 0, 2)), ((0, 2), (2, 1, 0))]
    root, count = tmp_path / "nifti", 0
    for split, per_class in SPLITS.items():
        for label, scale in (("low", 0.6), ("high", 1.4)):
            for index in range(per_class):
                flips, order = storages[count % len(storages)]
                data, moved = _reoriented(volume * scale + index, affine, flips, order)
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(data, moved), folder / f"item{count:02d}.nii.gz")
                count += 1
    codes = {nib.aff2axcodes(nib.load(p).affine) for p in root.rglob("*.nii.gz")}
    assert len(codes) >= 3  # mixed orientation on disk
    config = _config(tmp_path, "nifti", {"source": "folder", "path": str(root), "class_names": ["low", "high"]},
                     {"preset": "range", "source_range": [0, 40000], "orientation": "RAS", "spacing": [4, 4, 4],
                      "spatial_size": [16, 16, 16]})
    files = sorted(str(p) for p in (root / "test").rglob("*.nii.gz"))
    _train_and_compare(tmp_path, config, files, lambda name: str(Path(name).relative_to(root)))


def _write_series(folder: Path, base: pydicom.Dataset, slices: int, offset: float, with_report: bool) -> None:
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for index in range(slices):
        dataset = copy.deepcopy(base)
        dataset.SeriesInstanceUID, dataset.SOPInstanceUID = series_uid, generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        position = [float(v) for v in base.ImagePositionPatient]
        dataset.ImagePositionPatient = [position[0], position[1], position[2] + 5.0 * index]
        pixels = base.pixel_array.astype(np.int16) + np.int16(offset * (index + 1))
        dataset.PixelData = pixels.tobytes()
        dataset.save_as(folder / f"{(index * 7) % slices:03d}_slice")  # names out of order, no extension
    if with_report:
        shutil.copy(get_testdata_file("test-SR.dcm"), folder / "report.dcm")


def test_dicom_series_folders(tmp_path):
    base = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    root = tmp_path / "dicom"
    for split, per_class in SPLITS.items():
        for label, offset in (("dim", 0.0), ("bright", 300.0)):
            for index in range(per_class):
                _write_series(root / split / label / f"series{index}", base, 4, offset + 20 * index,
                              with_report=index == 0)
    config = _config(tmp_path, "dicom", {"source": "folder", "path": str(root), "class_names": ["dim", "bright"]},
                     {"preset": "ct_window", "window": [40, 400], "orientation": "RAS", "spacing": [5, 5, 5],
                      "spatial_size": [16, 16, 8]})
    # the test split's folder as one input: its subfolders are the series, as in training
    _train_and_compare(tmp_path, config, [str(root / "test")], lambda name: str(Path(name).relative_to(root)))
    skipped = _rows(tmp_path / "runs" / "dicom" / "skipped_items.csv")
    assert any(row["item"].endswith("report.dcm") and "Comprehensive SR" in row["reason"] for row in skipped)


def test_medmnist(tmp_path, small_demo_data):
    config = _config(tmp_path, "medmnist", {"source": "medmnist", "path": str(small_demo_data),
                                            "class_names": ["normal", "pneumonia"]},
                     {"source_range": [0, 255], "target_range": [-1, 1]})
    with np.load(small_demo_data) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for split in ("train", "val", "test"):  # a few items: the comparison is per item
        keep = {"train": 24, "val": 8, "test": 6}[split]
        labels = arrays[f"{split}_labels"][:, 0]
        chosen = np.concatenate([np.flatnonzero(labels == c)[: keep // 2] for c in (0, 1)])
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = (arrays[f"{split}_images"][chosen],
                                                                arrays[f"{split}_labels"][chosen])
    small = tmp_path / "tiny.npz"
    np.savez(small, **arrays)
    config_data = yaml.safe_load(config.read_text())
    config_data["data"]["path"] = str(small)
    config.write_text(yaml.safe_dump(config_data))
    _train_and_compare(tmp_path, config, [f"{small}:test"], lambda name: name)


def test_png_folder(tmp_path, demo_data):
    with np.load(demo_data) as archive:
        images, labels = archive["test_images"][:200], archive["test_labels"][:200, 0]
    root = tmp_path / "png"
    for split, per_class in SPLITS.items():
        for label, name in ((0, "normal"), (1, "pneumonia")):
            folder = root / split / name
            folder.mkdir(parents=True)
            start = {"train": 0, "val": 4, "test": 6}[split]
            chosen = np.flatnonzero(labels == label)[start:start + per_class]
            for index in chosen:
                Image.fromarray(images[index]).save(folder / f"{split}_{index:03d}.png")
    config = _config(tmp_path, "png", {"source": "folder", "path": str(root), "class_names": ["normal", "pneumonia"]},
                     {"source_range": [0, 255], "target_range": [-1, 1]})
    files = sorted(str(p) for p in (root / "test").rglob("*.png"))
    _train_and_compare(tmp_path, config, files, lambda name: str(Path(name).relative_to(root)))
