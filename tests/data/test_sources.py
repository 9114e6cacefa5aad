import csv
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import parse_config
from pipeline.data.sources import load_source, split_table
from pipeline.data.splits import grouped_stratified_split
from pipeline.engine.data_setup import prepare_data
from pipeline.errors import DataError


def image(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def config_for(tmp_path, source, path, **data):
    return parse_config({"data": {"source": source, "path": str(path), **data}}, "test", tmp_path)


def test_grouped_split_keeps_patients_whole_and_is_stratified_and_seeded():
    rng = np.random.default_rng(0)
    groups = [f"p{index // 3}" for index in range(600)]
    labels = [int(rng.random() < 0.3) if index % 3 == 0 else None for index in range(600)]
    labels = [labels[index - index % 3] for index in range(600)]  # one label per patient
    splits = grouped_stratified_split(labels, groups, (0.7, 0.15, 0.15), seed=1)
    assert splits == grouped_stratified_split(labels, groups, (0.7, 0.15, 0.15), seed=1)
    assert splits != grouped_stratified_split(labels, groups, (0.7, 0.15, 0.15), seed=2)
    by_patient = {}
    for group, split in zip(groups, splits, strict=True):
        by_patient.setdefault(group, set()).add(split)
    assert all(len(found) == 1 for found in by_patient.values())
    counts = Counter(splits)
    assert abs(counts["train"] / 600 - 0.7) < 0.02 and abs(counts["test"] / 600 - 0.15) < 0.02
    positives = {split: np.mean([label for label, s in zip(labels, splits, strict=True) if s == split])
                 for split in counts}
    assert max(positives.values()) - min(positives.values()) < 0.05


def test_folder_with_split_layout_and_class_folders(tmp_path):
    for split in ("train", "val", "test"):
        for name, value in (("benign", 10), ("malignant", 200)):
            for index in range(2):
                image(tmp_path / split / name / f"{index}.png", value)
    data = load_source(config_for(tmp_path, "folder", tmp_path).data)
    assert data.class_names == ["benign", "malignant"] and not data.split_made_here
    assert [item["name"] for item in data.splits["val"]] == ["val/benign/0.png", "val/benign/1.png",
                                                             "val/malignant/0.png", "val/malignant/1.png"]
    assert [float(item["label"][0]) for item in data.splits["val"]] == [0, 0, 1, 1]


def test_csv_with_patients_is_split_here_and_identifiers_are_hashed(tmp_path):
    rows = []
    for index in range(60):
        label = "pneumonia" if index % 2 else "normal"
        image(tmp_path / "images" / f"{index}.png", index)
        rows.append({"image": f"images/{index}.png", "label": label, "patient_id": f"SMITH^JOHN-{index // 2}"})
    with open(tmp_path / "items.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    data = load_source(config_for(tmp_path, "csv", tmp_path / "items.csv").data)
    assert data.split_made_here
    table = split_table(data)
    assert len(table) == 60 and "SMITH" not in json.dumps(table)
    patients = {}
    for row in table:
        patients.setdefault(row["patient"], set()).add(row["split"])
    assert len(patients) == 30 and all(len(splits) == 1 for splits in patients.values())


def test_labels_outside_the_class_list_are_an_error_naming_an_item(tmp_path):
    image(tmp_path / "cat" / "a.png", 1)
    image(tmp_path / "dog" / "b.png", 2)
    with pytest.raises(DataError, match=r"label\(s\) \['dog'\] not in data.class_names \['cat', 'cow'\] "
                                        r"\(e.g. dog/b.png\)"):
        load_source(config_for(tmp_path, "folder", tmp_path, class_names=["cat", "cow"]).data)


def test_datalist_source(tmp_path):
    entries = {key: [{"image": str(image(tmp_path / key / f"{i}.png", i)), "label": i % 2} for i in range(4)]
               for key in ("training", "validation", "test")}
    (tmp_path / "datalist.json").write_text(json.dumps(entries))
    data = load_source(config_for(tmp_path, "datalist", tmp_path / "datalist.json").data)
    assert {split: len(items) for split, items in data.splits.items()} == {"train": 4, "val": 4, "test": 4}
    assert data.class_names == ["0", "1"]


def test_bad_items_are_skipped_with_reasons_when_asked(tmp_path):
    for split in ("train", "val", "test"):
        for name in ("a", "b"):
            for index in range(3):
                image(tmp_path / split / name / f"{index}.png", 50 * index)
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(Exception) as raised:  # MONAI's CacheDataset wraps what a transform raises
        prepare_data(config_for(tmp_path, "folder", tmp_path))
    cause = raised.value
    while cause is not None and not isinstance(cause, DataError):
        cause = cause.__cause__
    assert isinstance(cause, DataError) and "broken.png: cannot read the image" in str(cause)
    prepared = prepare_data(config_for(tmp_path, "folder", tmp_path, on_bad_item="skip"))
    assert [entry["item"] for entry in prepared.skipped] == ["train/a/broken.png"]
    assert "cannot read the image" in prepared.skipped[0]["reason"]
    assert prepared.sizes["train"] == 6


def test_disk_cache_holds_preprocessed_items(tmp_path):
    for split in ("train", "val", "test"):
        for name in ("a", "b"):
            image(tmp_path / "data" / split / name / "0.png", 100)
    config = config_for(tmp_path, "folder", tmp_path / "data", cache="disk")
    prepared = prepare_data(config, cache_dir=tmp_path / "cache")
    first = [batch["image"] for batch in prepared.loaders["val"]]
    cached = list((tmp_path / "cache" / "val").iterdir())
    assert len(cached) == 2
    again = [batch["image"] for batch in prepared.loaders["val"]]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
