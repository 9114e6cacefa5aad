import numpy as np
import pytest

from pipeline.data import describe_dataset, encode_labels, read_medmnist
from pipeline.demo_data import packaged_file
from pipeline.errors import DataError


def save_npz(path, images, labels, **extra):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_demo_file_has_official_splits(demo_data):
    splits = read_medmnist(demo_data)
    assert {name: len(split) for name, split in splits.items()} == {"train": 4708, "val": 524, "test": 624}
    assert splits["train"].images.shape[1:] == (1, 28, 28)
    info = describe_dataset(splits, "auto", ["normal", "pneumonia"], "demo")
    assert (info.task, info.num_outputs, info.spatial_dims, info.in_channels) == ("binary", 1, 2, 1)
    assert np.bincount(splits["test"].labels.ravel()).tolist() == [234, 390]


def test_3d_file_reads_channel_first_volumes(repo_root):
    splits = read_medmnist(packaged_file("adrenalmnist3d.npz"))
    assert splits["train"].images.shape == (1188, 1, 28, 28, 28)
    assert describe_dataset(splits, "auto", None, "adrenal").spatial_dims == 3


def test_rgb_2d_images_become_three_channels(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (6, 28, 28, 3), dtype=np.uint8)
    labels = np.array([[0], [1], [2], [3], [1], [2]], dtype=np.uint8)
    splits = read_medmnist(save_npz(tmp_path / "dermamnist.npz", images, labels))
    assert splits["train"].images.shape == (6, 3, 28, 28)
    assert np.array_equal(splits["train"].images[2, 1], images[2, :, :, 1].T)  # MONAI order: (x, y)
    info = describe_dataset(splits, "auto", None, "x")
    assert (info.task, info.num_classes, info.num_outputs) == ("multiclass", 4, 4)


def test_multilabel_labels_are_detected(tmp_path):
    labels = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=np.uint8)
    splits = read_medmnist(save_npz(tmp_path / "chest.npz", np.zeros((4, 28, 28), np.uint8), labels))
    info = describe_dataset(splits, "auto", None, "x")
    assert (info.task, info.num_outputs) == ("multilabel", 3)
    assert encode_labels(labels, "multilabel").dtype == np.float32
    assert encode_labels(np.array([[2], [0]]), "multiclass").tolist() == [2, 0]


def test_bad_files_raise_data_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="absent.npz not found"):
        read_medmnist(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="garbage.npz: not a readable"):
        read_medmnist(garbage)
    partial = tmp_path / "partial.npz"
    np.savez(partial, train_images=np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match=r"partial.npz: missing arrays \['train_labels'"):
        read_medmnist(partial)


def test_declared_task_and_class_names_are_checked(demo_data):
    splits = read_medmnist(demo_data)
    with pytest.raises(DataError, match="data.class_names lists 3 names but the labels have 2 classes"):
        describe_dataset(splits, "auto", ["a", "b", "c"], "demo")
    with pytest.raises(DataError, match="data.task='multilabel'"):
        describe_dataset(splits, "multilabel", None, "demo")
    assert describe_dataset(splits, "multiclass", None, "demo").num_outputs == 2


def test_arrays_are_in_the_axis_order_of_the_same_image_read_from_a_file(tmp_path):
    """One axis convention: a MedMNIST array equals the PNG (2D) / NIfTI-like stack (3D) of it read from a file."""
    from PIL import Image

    from pipeline.data.readers import read_image

    grey = np.random.default_rng(1).integers(0, 255, (6, 28, 20), dtype=np.uint8)
    labels = np.array([[0], [1], [0], [1], [0], [1]], dtype=np.uint8)
    splits = read_medmnist(save_npz(tmp_path / "asym.npz", grey, labels))
    Image.fromarray(grey[0]).save(tmp_path / "first.png")
    from_file = np.asarray(read_image(tmp_path / "first.png").image)
    assert splits["train"].images.shape == (6, 1, 20, 28)
    assert np.array_equal(splits["train"].images[0], from_file)
    volumes = np.random.default_rng(2).integers(0, 255, (4, 5, 6, 7), dtype=np.uint8)  # (N, slice, row, column)
    splits = read_medmnist(save_npz(tmp_path / "v3d.npz", volumes, labels[:4]), 3)
    assert splits["train"].images.shape == (4, 1, 7, 6, 5)
    assert np.array_equal(splits["train"].images[1, 0, :, :, 2], volumes[1, 2].T)  # slice 2 as (x, y)
