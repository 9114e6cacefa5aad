"""The DICOM route end to end: make-demo-dicom, preview, train and evaluate from a DICOM folder."""

import csv
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image


def medvp(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def dicom_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom") / "demo"
    result = medvp("make-demo-dicom", out, "--per-class", 30)
    assert result.returncode == 0, result.stderr
    return out


def test_demo_dicom_files_are_proper_cr_images_with_patients(dicom_folder):
    files = sorted(dicom_folder.rglob("*.dcm"))
    assert len(files) == 60
    dataset = pydicom.dcmread(files[0])
    assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1" and dataset.Modality == "CR"
    assert dataset.file_meta.MediaStorageSOPClassUID == dataset.SOPClassUID
    assert [float(v) for v in dataset.PixelSpacing] == [6.0, 6.0]
    patients = {pydicom.dcmread(path, stop_before_pixels=True).PatientID for path in files}
    assert len(patients) == 20  # three images per synthetic patient


@pytest.mark.slow
def test_train_from_a_dicom_folder_keeps_patients_whole_and_identifiers_out(dicom_folder, repo_root, tmp_path):
    result = medvp("train", repo_root / "configs" / "dicom_folder_demo.yaml", "--set", f"data.path={dicom_folder}",
                   "--set", "training.max_epochs=1", "--set", f"output.root={tmp_path}",
                   "--set", "evaluation.bootstrap_samples=50")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "dicom_folder_demo"
    with open(run_dir / "splits.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and {row["split"] for row in rows} == {"train", "val", "test"}
    splits_of_patient = {}
    for row in rows:
        splits_of_patient.setdefault(row["patient"], set()).add(row["split"])
    assert len(splits_of_patient) == 20 and all(len(s) == 1 for s in splits_of_patient.values())
    identifiers = {str(pydicom.dcmread(path, stop_before_pixels=True).PatientID)
                   for path in dicom_folder.rglob("*.dcm")}
    names = {str(pydicom.dcmread(path, stop_before_pixels=True).PatientName) for path in dicom_folder.rglob("*.dcm")}
    output = result.stdout + result.stderr
    written = "".join(path.read_bytes().decode("latin-1") for path in run_dir.rglob("*") if path.is_file())
    for secret in identifiers | names | {"DEMO^PATIENT", "MEDVP-DEMO"}:
        assert secret not in output and secret not in written
    # medvp predict on the test DICOM files reads and preprocesses them exactly as training and evaluation did
    test_files = [dicom_folder / row["item"] for row in rows if row["split"] == "test"]
    predicted = tmp_path / "predicted.csv"
    result = medvp("predict", run_dir, *test_files, "--out", predicted)
    assert result.returncode == 0, result.stderr
    with open(predicted) as handle:
        by_item = {row["item"]: float(row["probability_pneumonia"]) for row in csv.DictReader(handle)}
    with open(run_dir / "predictions_test.csv") as handle:
        evaluated = [float(row["probability_pneumonia"]) for row in csv.DictReader(handle)]
    assert len(evaluated) == len(test_files)
    for path, probability in zip(test_files, evaluated, strict=True):
        assert abs(by_item[str(path)] - probability) < 1e-5


def test_preview_writes_a_png_grid(dicom_folder, repo_root, tmp_path, medvp_in_process):
    out = tmp_path / "preview.png"
    result = medvp_in_process("preview", repo_root / "configs" / "dicom_folder_demo.yaml",
                              "--set", f"data.path={dicom_folder}", "--out", out, "--count", 3)
    assert result.returncode == 0, result.stderr
    # --count 3 rows; columns: as read, preprocessed, augmented (the config augments); a cell is 2.6 x 2.4 in, 90 dpi
    with Image.open(out) as grid:
        assert grid.size == (round(3 * 2.6 * 90), round(3 * 2.4 * 90))
        pixels = np.asarray(grid.convert("L"), dtype=np.float32)
    assert pixels.std() > 20  # images drawn, not an empty canvas


def test_unsafe_augmentation_in_a_config_is_refused_at_validation(repo_root, medvp_in_process):
    result = medvp_in_process("validate", repo_root / "configs" / "dicom_folder_demo.yaml",
                              "--set", "augmentation.transforms=[{name: elastic}]")
    assert result.returncode == 2
    assert "augmentation.transforms" in result.stderr and "'elastic' is refused" in result.stderr
