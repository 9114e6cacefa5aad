import os

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.experiments.subsets import stratified_indices, subset_file


def test_subsets_keep_class_shares_are_nested_and_depend_only_on_the_seed():
    labels = np.array([0] * 300 + [1] * 700)[np.random.default_rng(1).permutation(1000)]
    small, large = stratified_indices(labels, 50, seed=3), stratified_indices(labels, 200, seed=3)
    assert len(small) == len(set(small)) == 50 and np.bincount(labels[small]).tolist() == [15, 35]
    assert np.bincount(labels[large]).tolist() == [60, 140]
    assert set(small) <= set(large)  # nested: the 50 of a seed are among its 200
    assert np.array_equal(small, stratified_indices(labels, 50, seed=3))  # every arm gets the same subset
    assert not np.array_equal(small, stratified_indices(labels, 50, seed=4))
    # a rare class keeps at least one item
    rare = np.array([0] * 995 + [1] * 5)
    assert np.bincount(rare[stratified_indices(rare, 20, seed=0)]).tolist() == [19, 1]
    with pytest.raises(ConfigError, match="n_train 1001: expected 1..1000"):
        stratified_indices(labels, 1001, seed=0)


def _medmnist_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{split}_images": rng.integers(0, 255, (count, 28, 28), dtype=np.uint8)
              for split, count in (("train", 120), ("val", 30), ("test", 40))}
    arrays |= {f"{split}_labels": rng.integers(0, 2, (count, 1)) for split, count in (("train", 120), ("val", 30),
                                                                                    ("test", 40))}
    source = tmp_path / "set.npz"
    np.savez(source, **arrays)
    return source, arrays


def test_subset_file_changes_the_training_split_only(tmp_path):
    source, arrays = _medmnist_file(tmp_path)
    path, record = subset_file(source, 24, seed=5, folder=tmp_path / "subsets")
    again, _ = subset_file(source, 24, seed=5, folder=tmp_path / "subsets")
    assert again == path and record["n_train"] == 24 and sum(record["class_counts"].values()) == 24
    with np.load(path) as subset:
        indices = stratified_indices(arrays["train_labels"], 24, 5)
        assert np.array_equal(subset["train_images"], arrays["train_images"][indices])
        for key in ("val_images", "val_labels", "test_images", "test_labels"):
            assert np.array_equal(subset[key], arrays[key])


def test_two_shards_materializing_one_subset_at_once_both_succeed(tmp_path, monkeypatch):
    """Benchmark shards draw the same subset at the same seed: the other shard writing and renaming the file
    between this one's write and rename must not take this one's temporary away (it did: FileNotFoundError)."""
    source, arrays = _medmnist_file(tmp_path)
    folder, savez, other_shard_done = tmp_path / "subsets", np.savez, []

    def savez_then_the_other_shard_finishes(file, **kwargs):
        savez(file, **kwargs)
        if not other_shard_done:
            other_shard_done.append(True)
            with monkeypatch.context() as other_process:
                other_process.setattr(os, "getpid", lambda: 999_999_999)
                subset_file(source, 24, seed=5, folder=folder)

    monkeypatch.setattr(np, "savez", savez_then_the_other_shard_finishes)
    path, _ = subset_file(source, 24, seed=5, folder=folder)
    assert other_shard_done and [entry.name for entry in folder.iterdir()] == [path.name]
    with np.load(path) as subset:
        assert np.array_equal(subset["train_images"], arrays["train_images"][stratified_indices(
            arrays["train_labels"], 24, 5)])
