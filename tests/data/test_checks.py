"""The dataset check at load time (pipeline/data/checks.py): garbage is refused with one line naming the file or the
npz key and index, never trained on, never a traceback."""

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main
from pipeline.config import parse_config
from pipeline.data.sources import load_source
from pipeline.engine.data_setup import prepare_data
from pipeline.errors import DataError

SPLITS = ("train", "val", "test")


def _npz(path, images, labels):
    np.savez(path, **{f"{split}_images": images[split] for split in SPLITS},
             **{f"{split}_labels": labels[split] for split in SPLITS})
    return path


def _config(tmp_path, path, **data):
    return parse_config({"data": {"path": str(path), **data}}, "test", tmp_path)


@st.composite
def datasets(draw):
    """Three splits of random size, shape and dtype; sometimes NaN/inf pixels, fractional, negative or
    multi-label labels."""
    dtype = draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64]))
    side = draw(st.integers(2, 6))
    channels = draw(st.sampled_from([None, 1, 3]))
    columns = draw(st.sampled_from([1, 1, 3]))
    images, labels = {}, {}
    for split in SPLITS:
        count = draw(st.integers(0, 6))
        shape = (count, side, side) + ((channels,) if channels else ())
        images[split] = np.zeros(shape, dtype)
        if count and dtype in (np.float32, np.float64) and draw(st.booleans()):
            index = draw(st.integers(0, count - 1))
            images[split][index].flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        values = draw(st.lists(st.sampled_from([0, 1, 2, 0.5, -1, np.nan]) if columns == 1 else
                               st.sampled_from([0, 1, 0, 1, 2, 0.5]), min_size=count * columns,
                               max_size=count * columns))
        labels[split] = np.asarray(values, np.float64 if draw(st.booleans()) else np.float32).reshape(count, columns)
        if all(float(v).is_integer() for v in values) and draw(st.booleans()):
            labels[split] = labels[split].astype(np.int64)
    return images, labels


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=datasets())
def test_random_arrays_load_clean_or_fail_with_one_data_error_line(tmp_path, data):
    images, labels = data
    path = _npz(tmp_path / "random.npz", images, labels)
    try:
        source = load_source(_config(tmp_path, path).data)
    except DataError as error:
        assert len(str(error).splitlines()) == 1 and str(path) in str(error)
        return
    # Loaded: every pixel finite, every split non-empty, labels class indices (or 0/1) with each class in training.
    for split in SPLITS:
        assert len(images[split]) > 0
        assert np.isfinite(images[split].astype(np.float64)).all()
        raw = labels[split].astype(np.float64)
        assert np.isfinite(raw).all() and (raw == np.round(raw)).all() and (raw >= 0).all()
    if source.task != "multilabel":
        trained = {int(np.asarray(item["label"]).reshape(-1)[0]) for item in source.splits["train"]}
        assert trained == set(range(len(source.class_names)))


def _two_class_arrays(count=4, side=4):
    images = {split: np.zeros((count, side, side), np.float32) for split in SPLITS}
    labels = {split: (np.arange(count) % 2).reshape(-1, 1) for split in SPLITS}
    return images, labels


@pytest.mark.parametrize(("change", "expected"), [
    (lambda images, labels: images["val"].__setitem__((2, 1, 1), np.nan), "val_images[2]: NaN pixel values"),
    (lambda images, labels: images["train"].__setitem__((3, 0, 0), np.inf), "train_images[3]: infinite pixel"),
    (lambda images, labels: labels.__setitem__("train", np.asarray([[0.0], [0.5], [1.0], [0.0]])),
     "train_labels[1]: label [0.5]; expected a class index"),
    (lambda images, labels: labels.__setitem__("train", np.zeros((4, 1), np.int64)),
     "class(es) ['1'] have no item in the training split"),
    (lambda images, labels: (images.__setitem__("test", images["test"][:0]), labels.__setitem__("test",
                                                                                               labels["test"][:0])),
     "the test split is empty"),
])
def test_each_kind_of_garbage_is_one_line_naming_the_key(tmp_path, change, expected):
    images, labels = _two_class_arrays()
    change(images, labels)
    with pytest.raises(DataError, match=expected.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_source(_config(tmp_path, _npz(tmp_path / "bad.npz", images, labels)).data)


def test_a_class_missing_from_validation_is_a_warning(tmp_path, caplog):
    images, labels = _two_class_arrays()
    labels["val"] = np.zeros((4, 1), np.int64)
    with caplog.at_level(logging.WARNING):
        load_source(_config(tmp_path, _npz(tmp_path / "one_class_val.npz", images, labels)).data)
    assert "class(es) ['1'] have no item in the val split; their AUC is undefined there" in caplog.text


def _data_error(error):
    while error is not None and not isinstance(error, DataError):
        error = error.__cause__
    assert error is not None
    return error


def _png(path, size, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def _folder(root, odd):
    for split in SPLITS:
        for name in ("a", "b"):
            for index in range(2):
                _png(root / split / name / f"{index}.png", (8, 8))
    _png(root / "val" / "b" / "odd.png", *odd)
    return root


@pytest.mark.parametrize(("odd", "expected"), [
    (((12, 10),), "val/b/odd.png: size [12, 10] after preprocessing but the first training item "
     "(train/a/0.png) has [8, 8]; set preprocessing.spatial_size: [8, 8]"),
    (((8, 8), "RGB"), "val/b/odd.png: 3 channel(s) but the first training item (train/a/0.png) has 1"),
])
def test_mixed_sizes_and_channels_name_the_file_and_the_setting(tmp_path, odd, expected):
    root = _folder(tmp_path / "data", odd)
    with pytest.raises(Exception) as raised:  # checked as the item is preprocessed (and cached); MONAI wraps the error
        prepared = prepare_data(_config(tmp_path, root, source="folder"), splits=("train", "val"))
        list(prepared.loaders["val"])
    assert str(_data_error(raised.value)).startswith(expected)


def test_an_image_beyond_the_pixel_cap_or_pils_bomb_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _folder(tmp_path / "data", ((40, 40),))
    config = _config(tmp_path, root, source="folder", max_pixels=1000)
    with pytest.raises(Exception) as raised:  # CacheDataset wraps what a transform raises
        prepare_data(config, splits=("train", "val"))
    assert "odd.png: a 40x40 image (1600 pixels) exceeds data.max_pixels of 1000" in str(_data_error(raised.value))
    for limit, expected in ((1000, "a 40x40 image (1600 pixels) exceeds PIL's decompression-bomb limit of 1000"),
                            (500, "the image exceeds PIL's decompression-bomb limit of 500")):  # PIL: past 2x, no open
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(Exception) as raised:
            prepare_data(_config(tmp_path, root, source="folder"), splits=("train", "val"))
        assert f"odd.png: {expected} pixels; refused before decoding" in str(_data_error(raised.value))


def test_training_on_nan_pixels_exits_2_with_one_line(tmp_path, capsys, restore_logging):
    images, labels = _two_class_arrays()
    images["train"][1, 2, 3] = np.nan
    data = _npz(tmp_path / "nan.npz", images, labels)
    config = tmp_path / "nan.yaml"
    config.write_text(f"data: {{path: {data}}}\noutput: {{root: {tmp_path / 'runs'}}}\n")
    assert main(["--quiet", "train", str(config)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"medvp: error: {data}: train_images[1]: NaN pixel values; expected finite numbers"]
    assert not list((tmp_path / "runs").rglob("*.pt"))
