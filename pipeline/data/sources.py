"""Dataset sources: where items and labels come from (MedMNIST .npz, a folder tree, a CSV, a MONAI datalist).

Every source gives items ``{"image": path-or-array, "label": class index, "name": str, "patient": hash-or-None}``
per split. When the data gives no split, the items are split here, grouped by patient and stratified by label.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from monai.data import load_decathlon_datalist

from pipeline.data.checks import check_arrays, check_classes
from pipeline.data.dicom import first_header, hash_identifier, patient_key, scan_series
from pipeline.data.items import SPLITS, DatasetInfo, describe_dataset, encode_labels
from pipeline.data.medmnist import medmnist_item_name, read_medmnist
from pipeline.data.splits import grouped_stratified_split
from pipeline.errors import DataError
from pipeline.kinds import Task

__all__ = ["SourceData", "SourceSettings", "SOURCES", "load_source", "split_table", "data_path_problem"]

logger = logging.getLogger(__name__)

_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "test": "test", "testing": "test"}


class SourceSettings(Protocol):
    """The settings a source reads (the configuration's validated ``data`` section has them)."""

    source: str
    path: Path
    task: str
    class_names: list[str] | None
    spatial_dims: str | int
    split_fractions: Sequence[float]
    split_seed: int
    max_pixels: int


@dataclass
class SourceData:
    """Items per split; ``info`` is known up front for array sources, else built after reading an item."""

    splits: dict[str, list[dict]]
    class_names: list[str]
    task: str
    from_files: bool
    split_made_here: bool = False
    info: DatasetInfo | None = None
    notes: list[str] = field(default_factory=list)
    #: files inside series folders that are not part of the item: ``{"item", "split", "reason"}`` each
    left_out: list[dict] = field(default_factory=list)


def _medmnist(settings: SourceSettings) -> SourceData:
    arrays = read_medmnist(settings.path, settings.spatial_dims)
    check_arrays(arrays, str(settings.path), settings.max_pixels)
    info = describe_dataset(arrays, settings.task, settings.class_names, str(settings.path))
    splits = {}
    for split in SPLITS:
        labels = encode_labels(arrays[split].labels, info.task)
        splits[split] = [{"image": image, "label": label, "name": medmnist_item_name(settings.path, split, index),
                          "patient": None}
                         for index, (image, label) in enumerate(zip(arrays[split].images, labels, strict=True))]
    return SourceData(splits=splits, class_names=info.class_names, task=info.task, from_files=False, info=info)


def _is_item(path: Path) -> bool:
    return not path.name.startswith(".") and (path.is_file() or path.is_dir())


def _patient_of(path: Path) -> str | None:
    try:
        header = first_header(path)
    except DataError:
        return None  # unreadable items are reported when they are read
    return patient_key(header) if header is not None else None


def _record(path: Path, root: Path, **fields) -> dict:
    """An item record: a series folder's files that are left out (not DICOM, not an image) come with reasons."""
    left_out: list[tuple[str, str]] = []
    if path.is_dir():
        try:
            series, first = scan_series(path)
            patient = patient_key(first)
            left_out = [(str(file.relative_to(root)) if file.is_relative_to(root) else str(file), reason)
                        for file, reason in series.skipped]
        except DataError:
            patient = _patient_of(path)  # several series, or unreadable: reported when the item is read
    else:
        patient = _patient_of(path)
    return {"image": str(path), "patient": patient, "left_out": left_out, **fields}


def _folder(settings: SourceSettings) -> list[dict]:
    root = settings.path
    if not root.is_dir():
        raise DataError(f"{root}: data.path must be a folder for data.source: folder")
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not children:
        raise DataError(f"{root}: empty folder; expected ROOT/<class>/<item> or ROOT/<split>/<class>/<item>")
    split_layout = all(child.name.lower() in _SPLIT_ALIASES for child in children)
    records = []
    for split_dir in (children if split_layout else [root]):
        split = _SPLIT_ALIASES[split_dir.name.lower()] if split_layout else None
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for item in sorted(filter(_is_item, class_dir.iterdir())):
                records.append(_record(item, root, label=class_dir.name, split=split,
                                       name=str(item.relative_to(root))))
    return records


def _csv(settings: SourceSettings) -> list[dict]:
    path = settings.path
    if not path.is_file():
        raise DataError(f"{path}: CSV file not found (data.path)")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; expected image, label, optional "
                            "patient_id and split")
        rows = list(reader)
    records = []
    for line, row in enumerate(rows, start=2):
        image = Path(row["image"])
        image = image if image.is_absolute() else path.parent / image
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in _SPLIT_ALIASES:
            raise DataError(f"{path}: line {line}: split {split!r}; expected train, val or test")
        record = _record(image, path.parent, label=row["label"].strip(),
                         split=_SPLIT_ALIASES.get(split) if split else None, name=row["image"])
        record["patient"] = hash_identifier(row.get("patient_id") or "") or record["patient"]
        records.append(record)
    return records


def _datalist(settings: SourceSettings) -> list[dict]:
    path = settings.path
    if not path.is_file():
        raise DataError(f"{path}: datalist JSON not found (data.path)")
    try:
        keys = [key for key in ("training", "validation", "test") if key in json.loads(path.read_text())]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a JSON datalist ({error})") from None
    if not keys:
        raise DataError(f"{path}: a MONAI datalist needs a 'training', 'validation' or 'test' list")
    records = []
    for key in keys:
        try:
            entries = load_decathlon_datalist(str(path), is_segmentation=False, data_list_key=key)
        except (KeyError, ValueError, TypeError) as error:
            raise DataError(f"{path}: {key}: {error}") from None
        for entry in entries:
            if "image" not in entry or "label" not in entry:
                raise DataError(f"{path}: {key}: every entry needs 'image' and 'label', got {sorted(entry)}")
            image = Path(entry["image"])
            records.append(_record(image, path.parent, label=str(entry["label"]), split=_SPLIT_ALIASES[key],
                                   name=str(image.relative_to(path.parent)) if image.is_relative_to(path.parent)
                                   else str(image)))
    return records


def _class_names(records: list[dict], declared: list[str] | None, source: Path) -> list[str]:
    found = {record["label"] for record in records}
    if declared is not None:
        unknown = sorted(found - set(declared))
        if unknown:
            example = next(r["name"] for r in records if r["label"] == unknown[0])
            raise DataError(f"{source}: label(s) {unknown} not in data.class_names {declared} (e.g. {example})")
        return list(declared)
    return sorted(found, key=lambda name: (not name.isdigit(), int(name) if name.isdigit() else 0, name))


def _from_records(records: list[dict], settings: SourceSettings) -> SourceData:
    source = settings.path
    if not records:
        raise DataError(f"{source}: no items found")
    class_names = _class_names(records, settings.class_names, source)
    if len(class_names) < 2:
        raise DataError(f"{source}: found a single class {class_names}; a classifier needs at least two")
    index = {name: position for position, name in enumerate(class_names)}
    for record in records:
        record["label"] = index[record["label"]]
    given = [record["split"] for record in records]
    made_here = any(split is None for split in given)
    if made_here:
        if any(split is not None for split in given):
            raise DataError(f"{source}: some items have a split and others do not; give every item a split or none")
        assigned = grouped_stratified_split([r["label"] for r in records], [r["patient"] for r in records],
                                            settings.split_fractions, settings.split_seed)
        for record, split in zip(records, assigned, strict=True):
            record["split"] = split
    splits = {split: [] for split in SPLITS}
    left_out = []
    for record in records:
        left_out += [{"item": file, "split": record["split"], "reason": f"left out of the series: {reason}"}
                     for file, reason in record.pop("left_out")]
        splits[record.pop("split")].append(record)
    empty = [split for split, items in splits.items() if not items]
    if empty:
        raise DataError(f"{source}: no items in split(s) {empty}")
    task = "binary" if len(class_names) == 2 and settings.task in ("auto", "binary") else "multiclass"
    if settings.task == Task.MULTILABEL:
        raise DataError(f"{source}: multi-label tasks need a MedMNIST-style source; folder/csv/datalist are "
                        "single-label")
    for items in splits.values():
        for item in items:
            item["label"] = encode_labels(np.asarray([[item["label"]]]), task)[0]
    return SourceData(splits=splits, class_names=class_names, task=task, from_files=True, split_made_here=made_here,
                      left_out=left_out)


#: data.source -> reader of the records (file sources) or of the whole source (arrays)
SOURCES: dict[str, Callable] = {"folder": _folder, "csv": _csv, "datalist": _datalist}


def data_path_problem(source: str, path: Path) -> str | None:
    """What is wrong with ``data.path`` for ``data.source`` (a folder source needs a folder, the others a file),
    or None; for ``validate``, before anything is read."""
    if source == "folder":
        if not path.exists():
            return "folder not found (data.source: folder)"
        return None if path.is_dir() else "a file, but data.source: folder needs a folder ROOT/<class>/<item>"
    if not path.exists():
        return "file not found"
    return None if path.is_file() else f"a folder, but data.source: {source} needs a file"


def load_source(settings: SourceSettings) -> SourceData:
    """Items per split for ``settings.source`` (the configuration's ``data`` section), checked
    (:mod:`pipeline.data.checks`)."""
    data = _medmnist(settings) if settings.source == "medmnist" else _from_records(
        SOURCES[settings.source](settings), settings)
    data.notes += check_classes({split: [item["label"] for item in items] for split, items in data.splits.items()},
                                data.class_names, data.task, str(settings.path))
    if not data.from_files:
        return data
    counts = ", ".join(f"{split} {len(items)}" for split, items in data.splits.items())
    logger.info("%s: %d classes %s; %s%s", settings.path, len(data.class_names), data.class_names, counts,
                " (split here, grouped by patient)" if data.split_made_here else "")
    return data


def split_table(data: SourceData) -> list[dict]:
    """One row per item: item, label (class name), split, patient (hashed, or empty)."""
    rows = []
    for split, items in data.splits.items():
        for item in items:
            label = item["label"]
            label_index = int(label.reshape(-1)[0]) if hasattr(label, "reshape") else int(label)
            rows.append({"item": item["name"], "label": data.class_names[label_index] if data.task != Task.MULTILABEL
                         else str(label.tolist()), "split": split, "patient": item["patient"] or ""})
    return rows
