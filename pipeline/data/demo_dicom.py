"""Write a DICOM folder dataset from the embedded MedMNIST demo images, to exercise the DICOM route end to end.

Each image becomes a Computed Radiography (CR) DICOM file with proper SOP class, patient, study and series
UIDs and a pixel spacing; images are grouped into synthetic patients (several images each, one label per
patient), laid out as ``OUT/<class>/<file>.dcm`` so that medvp splits them here, grouped by patient.
The patient names and IDs are synthetic: the point is that they never show up in logs, reports or bundles.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.data.medmnist import read_medmnist

__all__ = ["write_demo_dicom", "CR_IMAGE_STORAGE"]

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
_PIXEL_SPACING_MM = 6.0  # a ~170 mm pediatric chest radiograph downsampled to 28 px


def _dataset(image: np.ndarray, patient: int, study_uid: str, instance: int, path: Path) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = CR_IMAGE_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.PatientName = f"DEMO^PATIENT{patient:04d}"
    dataset.PatientID = f"MEDVP-DEMO-{patient:04d}"
    dataset.PatientBirthDate = "20180101"
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = generate_uid()
    dataset.StudyDate = dataset.SeriesDate = datetime.date(2024, 1, 1).strftime("%Y%m%d")
    dataset.Modality = "CR"
    dataset.BodyPartExamined = "CHEST"
    dataset.SeriesNumber = 1
    dataset.InstanceNumber = instance
    dataset.PixelSpacing = [_PIXEL_SPACING_MM, _PIXEL_SPACING_MM]
    dataset.ImagerPixelSpacing = [_PIXEL_SPACING_MM, _PIXEL_SPACING_MM]
    dataset.Rows, dataset.Columns = image.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return dataset


def write_demo_dicom(npz_path: Path, out_dir: Path, class_names: tuple[str, str] = ("normal", "pneumonia"),
                     per_class: int = 150, images_per_patient: int = 3, seed: int = 0) -> dict[str, int]:
    """Write ``per_class`` training images of each class as DICOM files under ``out_dir/<class>/``.

    Returns:
        class name -> number of files written.
    """
    train = read_medmnist(npz_path)["train"]
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    patient = 0
    for label, name in enumerate(class_names):
        indices = np.flatnonzero(train.labels[:, 0] == label)
        chosen = rng.choice(indices, size=min(per_class, len(indices)), replace=False)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for position, index in enumerate(chosen):
            if position % images_per_patient == 0:
                patient += 1
                study_uid = generate_uid()
            path = folder / f"img{index:05d}.dcm"
            _dataset(train.images[index, 0].T, patient, study_uid, position % images_per_patient + 1, path).save_as(
                path, enforce_file_format=True)
        counts[name] = len(chosen)
    return counts
