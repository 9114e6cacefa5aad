"""Mutated data files fed to the loaders: each gives the project's DataError naming the file or the correct arrays,
in bounded time and without large allocations.

The harness is loader-agnostic: a ``FuzzTarget`` gives a valid file's bytes, the reader, and how to compare two
results; DICOM and NIfTI readers are added to ``TARGETS`` the same way as the MedMNIST ``.npz`` reader.
"""

import gzip
import io
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.data import SPLITS, read_medmnist
from pipeline.data.readers import read_image
from pipeline.demo_data import packaged_file
from pipeline.errors import DataError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = 300
MAX_BYTES_ALLOCATED = 32 * 2**20


def _medmnist_sample(compressed: bool) -> bytes:
    """A small slice of the embedded PneumoniaMNIST file (real images), as np.savez(_compressed) writes it."""
    with np.load(packaged_file("pneumoniamnist.npz")) as archive:
        arrays = {f"{split}_{kind}": archive[f"{split}_{kind}"][:6] for split in SPLITS
                  for kind in ("images", "labels")}
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def _same_splits(left, right) -> bool:
    return left.keys() == right.keys() and all(
        np.array_equal(left[split].images, right[split].images) and left[split].images.dtype == right[
            split].images.dtype and np.array_equal(left[split].labels, right[split].labels) for split in left)


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    suffix: str
    sample: Callable[[], bytes]
    read: Callable[[Path], object]
    same: Callable[[object, object], bool]


SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom" / "single"


def _nifti_sample(compressed: bool) -> bytes:
    """A small real-valued volume as a NIfTI-1 file (.nii or .nii.gz bytes)."""
    volume = np.linspace(-100, 400, 6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5)
    image = nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.0, 1.0]))
    data = image.to_bytes()
    return gzip.compress(data, mtime=0) if compressed else data


def _well_formed_image(result, original) -> bool:
    """Images carry no checksum, so a mutated file may decode to another image: it must still be a well-formed
    one (finite float32, channel-first, 2 or 3 spatial axes, no larger than the file could hold)."""
    image = result.image
    return (image.dtype == torch.float32 and image.ndim in (3, 4) and bool(torch.isfinite(image).all())
            and image.numel() <= 4 * original.image.numel() + 2**16)


TARGETS = [
    FuzzTarget("medmnist-npz-deflated", ".npz", lambda: _medmnist_sample(True), read_medmnist, _same_splits),
    FuzzTarget("medmnist-npz-stored", ".npz", lambda: _medmnist_sample(False), read_medmnist, _same_splits),
    FuzzTarget("nifti", ".nii", lambda: _nifti_sample(False), read_image, _well_formed_image),
    FuzzTarget("nifti-gz", ".nii.gz", lambda: _nifti_sample(True), read_image, _well_formed_image),
]
if SHARED_DICOM.is_dir():  # real files beside the repository (CI has them)
    TARGETS += [
        FuzzTarget("dicom-ct", ".dcm", lambda: (SHARED_DICOM / "CT_small.dcm").read_bytes(), read_image,
                   _well_formed_image),
        FuzzTarget("dicom-mr-multiframe", ".dcm", lambda: (SHARED_DICOM / "emri_small.dcm").read_bytes(), read_image,
                   _well_formed_image),
    ]


@st.composite
def mutations(draw, data: bytes) -> bytes:
    """Truncations, flipped bytes, overwritten spans (often in the headers at the start) and replaced files."""
    size = len(data)
    position = st.one_of(st.integers(0, min(size - 1, 160)), st.integers(0, size - 1))
    kind = draw(st.sampled_from(["truncate", "flip", "overwrite", "replace"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, size - 1))]
    mutated = bytearray(data)
    if kind == "flip":
        for index, mask in draw(st.lists(st.tuples(position, st.integers(1, 255)), min_size=1, max_size=8)):
            mutated[index] ^= mask
        return bytes(mutated)
    if kind == "overwrite":
        start, chunk = draw(position), draw(st.binary(min_size=1, max_size=24))
        mutated[start:start + len(chunk)] = chunk
        return bytes(mutated)
    return draw(st.binary(max_size=512))


def _read_bounded(target: FuzzTarget, path: Path):
    """Read ``path``; return the result or the DataError, and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = target.read(path)
        except DataError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.name)
def test_mutated_files_give_a_data_error_naming_the_file_or_the_correct_arrays(target, tmp_path_factory):
    sample = target.sample()
    folder = tmp_path_factory.mktemp(target.name)
    original = target.read(_write(folder / f"original{target.suffix}", sample))
    tried = []

    @settings(max_examples=EXAMPLES, deadline=2000, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutated=mutations(sample))
    def check(mutated):
        path = _write(folder / f"mutated{target.suffix}", mutated)
        result, peak = _read_bounded(target, path)
        tried.append(mutated)
        assert peak < MAX_BYTES_ALLOCATED
        if isinstance(result, DataError):
            assert str(path) in str(result) and "\n" not in str(result)
        else:
            assert target.same(result, original)

    check()
    assert len(tried) >= EXAMPLES * 0.9
    print(f"{target.name}: {len(tried)} mutated files")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npz_with_forged_header(sample: bytes, name: str, header: dict, compression: int) -> bytes:
    """Rewrite ``name``'s .npy header inside the archive, keeping its data bytes."""
    source = zipfile.ZipFile(io.BytesIO(sample))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for info in source.infolist():
            content = source.read(info)
            if info.filename == f"{name}.npy":
                member = io.BytesIO(content)
                np.lib.format.read_magic(member)
                np.lib.format.read_array_header_1_0(member)
                forged = io.BytesIO()
                np.lib.format.write_array_header_1_0(forged, header)
                content = forged.getvalue() + member.read()
            archive.writestr(info.filename, content)
    return out.getvalue()


@settings(max_examples=EXAMPLES, deadline=2000, database=None, derandomize=True)
@given(name=st.sampled_from([f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]),
       shape=st.lists(st.one_of(st.integers(0, 64), st.integers(0, 2**62)), max_size=6).map(tuple),
       descr=st.sampled_from(["|u1", "<f8", "<i4", "|O", "<U8", "|V4"]),
       compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_forged_npy_headers_never_allocate_what_they_declare(tmp_path_factory, name, shape, descr, compression):
    path = tmp_path_factory.mktemp("forged") / "forged.npz"
    sample = _medmnist_sample(compressed=False)
    path.write_bytes(_npz_with_forged_header(sample, name, {"descr": descr, "fortran_order": False, "shape": shape},
                                             compression))
    result, peak = _read_bounded(TARGETS[0], path)
    assert peak < MAX_BYTES_ALLOCATED
    if isinstance(result, DataError):
        assert str(path) in str(result)
    else:  # a header forged to the true shape and type reads the true arrays
        original = read_medmnist(_write(path.with_name("original.npz"), sample))
        assert _same_splits(result, original)


def test_a_forged_huge_shape_is_reported_with_the_array_and_sizes(tmp_path):
    path = tmp_path / "huge.npz"
    path.write_bytes(_npz_with_forged_header(_medmnist_sample(compressed=True), "train_images",
                                             {"descr": "|u1", "fortran_order": False, "shape": (10**6, 224, 224)},
                                             zipfile.ZIP_DEFLATED))
    with pytest.raises(DataError, match=r"huge\.npz: array train_images declares shape \(1000000, 224, 224\) of "
                                        r"uint8 \(50176000000 bytes\) but holds 4704 bytes"):
        read_medmnist(path)
