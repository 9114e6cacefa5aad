"""Patient identifiers cannot be recovered from a run's outputs, and header fields stay out of messages."""

import csv
import hashlib
import stat

import numpy as np
import pydicom
import pytest

from pipeline.config import parse_config
from pipeline.data.demo_dicom import write_demo_dicom
from pipeline.data.dicom import DicomOptions, hash_identifier, read_dicom
from pipeline.data.sources import load_source, split_table
from pipeline.data.splits import SECRET_FILE, keyed_patients, run_secret
from pipeline.errors import DataError


def test_the_patient_column_resists_guessing_identifiers(tmp_path):
    patients = [f"PAT-{number:04d}" for number in range(100, 140)]  # 40 patients, IDs in a guessable format
    rows = [{"image": f"img_{patient}_{index}.png", "label": ("a", "b")[position % 2], "patient_id": patient}
            for position, patient in enumerate(patients) for index in range(3)]
    listing = tmp_path / "items.csv"
    with open(listing, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "patient_id"])
        writer.writeheader()
        writer.writerows(rows)
    source = load_source(parse_config({"data": {"source": "csv", "path": str(listing)}}, "test", tmp_path).data)
    secret = run_secret(tmp_path)
    table = keyed_patients(split_table(source), secret)
    assert run_secret(tmp_path) == secret and stat.S_IMODE((tmp_path / SECRET_FILE).stat().st_mode) == 0o600
    written = {row["patient"] for row in table}
    assert len(written) == 40  # one key per patient: the table still shows which items share a patient
    guesses = [f"PAT-{number:04d}" for number in range(1000)]
    digests = {function(guess) for guess in guesses
               for function in (hash_identifier, lambda g: hashlib.sha256(g.encode()).hexdigest(),
                                lambda g: hashlib.sha256(g.encode()).hexdigest()[:16], lambda g: g)}
    recovered = {digest[:16] for digest in digests if digest} & written
    assert not recovered, f"{len(recovered)} of 40 patients re-identified by hashing 1000 guessed IDs"
    assert keyed_patients(split_table(source), b"another run's key") != table  # the key is the run's own


def test_several_series_message_quotes_no_header_field_unless_asked(tmp_path):
    demo = tmp_path / "demo"
    from pipeline.demo_data import packaged_file

    write_demo_dicom(packaged_file("pneumoniamnist.npz"), demo, per_class=1)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for index, path in enumerate(sorted(demo.rglob("*.dcm"))[:2]):
        dataset = pydicom.dcmread(path)
        dataset.SeriesDescription = f"CHEST PA FOR JANE DOE {index}"
        dataset.SeriesInstanceUID = f"1.2.3.{index}"
        dataset.save_as(mixed / f"{index}.dcm")
    with pytest.raises(DataError) as raised:
        read_dicom(mixed)
    assert "2 series" in str(raised.value) and "JANE DOE" not in str(raised.value)
    with pytest.raises(DataError, match="CHEST PA FOR JANE DOE 0"):
        read_dicom(mixed, DicomOptions(show_headers=True))
    assert np.asarray(read_dicom(mixed, DicomOptions(series_uid="1.2.3.1"))[0]).size
