"""Check an ``.npz`` archive's array headers before numpy allocates memory for them.

``numpy.load`` allocates an array of the shape an ``.npy`` header declares before it reads the data, so a forged
header (huge shape) or a forged zip entry size could make a small file claim gigabytes. The checks below read only
the headers and the zip directory.
"""

from __future__ import annotations

import math
import tokenize
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

__all__ = ["check_npz_headers", "NPZ_READ_ERRORS"]

# What numpy and zipfile raise for damaged archives, array headers (parsed as Python literals) and array data.
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, TypeError, KeyError, NotImplementedError, OverflowError,
                   SyntaxError, RecursionError, MemoryError, tokenize.TokenError, zipfile.BadZipFile,
                   zipfile.LargeZipFile, zlib.error)
# A deflated member may expand at most ~1032x; a larger member expanding this much is not image data.
_MAX_EXPANSION = 256
_CHECKED_ABOVE_BYTES = 64 * 2**20


def _read_header(member, path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except NPZ_READ_ERRORS as error:
        raise DataError(f"{path}: array {name} has a damaged header ({error})") from None
    return shape, dtype


def check_npz_headers(path: Path, names: Iterable[str]) -> None:
    """Check that each named array's declared size matches the bytes the archive holds for it.

    Args:
        path: the ``.npz`` file.
        names: array names (``train_images``, ...); names the archive lacks are left to the caller.

    Raises:
        DataError: naming the file and the array, for a damaged archive, a header that declares more (or less)
            data than is stored, an object (pickled) array, or an implausible compression ratio.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            for name in names:
                try:
                    info = archive.getinfo(f"{name}.npy")
                except KeyError:
                    continue
                if info.file_size > _CHECKED_ABOVE_BYTES and (
                        info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
                        or info.file_size > _MAX_EXPANSION * max(info.compress_size, 1)):
                    raise DataError(f"{path}: array {name} declares {info.file_size} bytes from "
                                    f"{info.compress_size} stored; not a plausible MedMNIST array")
                with archive.open(info) as member:
                    shape, dtype = _read_header(member, path, name)
                    stored = info.file_size - member.tell()
                if dtype.hasobject:
                    raise DataError(f"{path}: array {name} holds Python objects; only numeric arrays are read")
                declared = math.prod(shape) * dtype.itemsize
                if declared != stored:
                    raise DataError(f"{path}: array {name} declares shape {shape} of {dtype} ({declared} bytes) "
                                    f"but holds {stored} bytes")
    except DataError:
        raise
    except NPZ_READ_ERRORS as error:
        raise DataError(f"{path}: not a readable .npz archive ({error})") from None
