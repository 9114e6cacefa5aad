"""``medvp predict``: inputs as training saw them, the predictions table, bad inputs, Grad-CAM saliency."""

import csv
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from pipeline.cli import main as medvp
from pipeline.errors import DataError
from pipeline.inference import collect_inputs, grad_cam, load_model, predict, usable_items

pytestmark = pytest.mark.slow


def write_dicom(path, image: np.ndarray) -> None:
    """A minimal 8-bit secondary-capture DICOM that carries made-up patient identifiers."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PID-4711", "DX"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = image.tobytes()
    ds.save_as(path, enforce_file_format=True)


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_give_the_probabilities_of_the_npz_items_they_were_written_from(small_run, png_folder, demo_data,
                                                                               tmp_path):
    with np.load(demo_data) as archive:
        image = archive["test_images"][0]
    write_dicom(tmp_path / "x.dcm", image)
    model = load_model(small_run)
    items = collect_inputs([str(png_folder), str(tmp_path / "x.dcm"), f"{demo_data}:test"])
    probs = predict(model, usable_items(model, items)).probabilities
    from_png, from_dicom, from_npz = probs[:12], probs[12], probs[13:25]
    assert [item.name for item in items[13:15]] == ["pneumoniamnist.npz:test:0", "pneumoniamnist.npz:test:1"]
    assert np.abs(from_png - from_npz).max() <= 1e-6
    assert np.abs(from_dicom - from_npz[0]).max() <= 1e-6
    assert np.allclose(probs.sum(axis=1), 1)
    # the test can fail: a transposed image (PIL's default reading order) gives other probabilities
    transposed = [type(items[0])(name="t", image=np.ascontiguousarray(item.image.transpose(0, 2, 1)))
                  for item in items[13:25]]
    assert np.abs(predict(model, transposed).probabilities - from_npz).max() > 1e-4


def test_predict_with_saliency_writes_the_table_and_one_png_per_item(small_run, png_folder, tmp_path, demo_data,
                                                                     monkeypatch, capsys, restore_logging):
    import pipeline.inference.saliency as saliency

    titles, draw = [], saliency.save_saliency_png

    def recording(path, image, heat, title, affine=None):
        titles.append(title)
        draw(path, image, heat, title, affine)

    monkeypatch.setattr(saliency, "save_saliency_png", recording)
    out, maps = tmp_path / "predictions.csv", tmp_path / "maps"
    dicom = tmp_path / "dicom" / "x.dcm"
    dicom.parent.mkdir()
    with np.load(demo_data) as archive:
        write_dicom(dicom, archive["test_images"][5])
    assert medvp(["predict", str(small_run), str(png_folder), str(dicom), "--out", str(out), "--saliency",
                  str(maps)]) == 0
    assert titles[0].startswith("item 0\npredicted: ") and len(titles) == 13
    assert not any("test_0" in title or "x.dcm" in title for title in titles)  # no file names without --show-names
    assert "nvImageCodec" not in capsys.readouterr().err  # MONAI's optional GPU DICOM decoder: not medvp's concern
    rows = read_rows(out)
    assert list(rows[0]) == ["item", "predicted", "probability_normal", "probability_pneumonia"]
    assert len(rows) == 13 and rows[0]["item"] == str(png_folder / "test_000.png")
    for row in rows:
        probs = [float(row["probability_normal"]), float(row["probability_pneumonia"])]
        assert row["predicted"] == ("pneumonia" if probs[1] > probs[0] else "normal")
    assert "Doe" not in out.read_text() and "PID-4711" not in out.read_text()
    pngs = sorted(maps.glob("*.png"))
    assert [path.name for path in pngs[:2]] == ["00000_test_000.png", "00001_test_001.png"]
    assert len(pngs) == 13 and pngs[-1].name == "00012_x.png"
    with Image.open(pngs[0]) as picture:
        assert picture.width > 300 and picture.height > 200


def test_grad_cam_maps_of_the_trained_model_are_input_sized_and_scaled(small_run, demo_data):
    model = load_model(small_run)
    with np.load(demo_data) as archive:
        images = torch.as_tensor(archive["test_images"][:4], dtype=torch.float32)[:, None] / 127.5 - 1
    with torch.no_grad():
        predicted = (model.network(images)[:, 0] > 0).long()
    maps = grad_cam(model, images, predicted)
    assert maps.shape == (4, 28, 28) and maps.min() >= 0 and maps.max() <= 1
    peaks = maps.reshape(4, -1).max(axis=1)
    assert np.all((np.abs(peaks - 1) < 1e-5) | (peaks == 0))  # scaled to [0, 1], or no positive evidence at all
    assert peaks.max() == pytest.approx(1)


def test_bad_inputs_are_errors_or_skipped_with_a_reason(small_run, png_folder, tmp_path, capsys, caplog):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "readme.txt").write_text("x")
    (mixed / "broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.zeros((28, 28, 3), dtype=np.uint8)).save(mixed / "colour.png")
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(mixed / "large.png")
    Image.open(png_folder / "test_000.png").save(mixed / "good.png")
    with caplog.at_level(logging.WARNING):
        model = load_model(small_run)
        kept = usable_items(model, collect_inputs([str(mixed)]))
    assert [item.name for item in kept] == [str(mixed / "good.png")]
    reasons = caplog.text
    assert "readme.txt: not an image file" in reasons and "broken.png: cannot read the image" in reasons
    assert "colour.png: image of shape [3, 28, 28]" in reasons and "large.png: image of size [64, 64]" in reasons

    # the CLI reconfigures logging, so it runs after the logged reasons are checked (and what handlers an earlier
    # in-process CLI call left on the root logger wrote to this test's stderr is dropped)
    capsys.readouterr()
    assert medvp(["predict", str(small_run), str(tmp_path / "missing.png")]) == 2
    assert capsys.readouterr().err.strip() == f"medvp: error: {tmp_path / 'missing.png'}: no such file or folder"
    (tmp_path / "notes.txt").write_text("not an image")
    assert medvp(["predict", str(small_run), str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt: not an image medvp reads" in capsys.readouterr().err
    assert medvp(["predict", str(small_run), "medvp:pneumoniamnist.npz:holdout"]) == 2
    assert "unknown split 'holdout'" in capsys.readouterr().err
    with pytest.raises(DataError, match="not a medvp run directory nor a MONAI bundle|neither a medvp run"):
        load_model(tmp_path)


def test_grad_cam_highlights_what_drives_each_items_own_class():
    """logit_0 = mean(image), logit_1 = -mean(image): Grad-CAM for class 0 is relu(image), for class 1 relu(-image)."""
    from pipeline.inference.model import LoadedModel

    conv = torch.nn.Conv2d(1, 1, kernel_size=1)
    head = torch.nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0), conv.bias.zero_(), head.weight.copy_(torch.tensor([[1.0], [-1.0]])), head.bias.zero_()
    network = torch.nn.Sequential(conv, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head).eval()
    model = LoadedModel(network=network, task="multiclass", class_names=["bright", "dark"], preprocessing=None,
                        input_shape=(1, 8, 8), resizes=False, reads_files=False, source="test")
    image = -torch.ones(1, 8, 8)
    image[:, :4, :4] = 1.0  # a bright top-left quadrant
    maps = grad_cam(model, torch.stack([image, image]), torch.tensor([0, 1]))
    bright = np.zeros((8, 8))
    bright[:4, :4] = 1
    assert np.allclose(maps[0], bright, atol=1e-5)  # class 0 looks at the bright quadrant (max -> 1, not flipped)
    assert np.allclose(maps[1], 1 - bright, atol=1e-5)  # class 1, in the same batch, at the rest
