"""The one display rule for images and maps in MONAI's axis order (preview, saliency).

- A 2D image ``(C, x, y)`` (x the column index) is shown as its PNG or DICOM viewer shows it: rows are y,
  columns are x.
- A 3D volume with an affine is shown in the radiological convention: it is reoriented to LPS (x towards the
  patient's left, y towards posterior, z towards superior), so that an axial slice has anterior up and the
  patient's right on the viewer's left, a coronal slice superior up and the patient's right on the viewer's
  left, and a sagittal slice superior up and anterior on the viewer's left.
- A 3D volume without orientation (an identity affine, as MedMNIST arrays have) is shown in array order with the
  same slicing, so that each z slice looks like the 2D image it was stored as.
"""

from __future__ import annotations

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

__all__ = ["RADIOLOGICAL_AXES", "oriented_volume", "display_planes", "display_image", "normalised"]

#: the orientation volumes are brought to before slicing
RADIOLOGICAL_AXES = ("L", "P", "S")


def _affine_of(image: object, affine: np.ndarray | None) -> np.ndarray | None:
    if affine is not None:
        return np.asarray(affine, dtype=float)
    found = getattr(image, "affine", None)
    return None if found is None else np.asarray(found, dtype=float)


def oriented_volume(volume: np.ndarray, affine: np.ndarray | None) -> np.ndarray:
    """``(C, x, y, z)`` reoriented to :data:`RADIOLOGICAL_AXES`; unchanged without an orienting affine."""
    if affine is None or np.allclose(affine[:3, :3], np.eye(3)) and np.allclose(affine[:3, 3], 0):
        return volume
    transform = ornt_transform(io_orientation(affine[:4, :4]), axcodes2ornt(RADIOLOGICAL_AXES))
    return np.stack([apply_orientation(channel, transform) for channel in volume])


def _plane(picture: np.ndarray, superior_up: bool) -> np.ndarray:
    """``(C, a, b)`` to a viewable ``(b, a)`` grey or ``(b, a, 3)`` RGB plane; rows flipped for superior up."""
    shown = np.moveaxis(picture, 0, -1) if picture.shape[0] == 3 else picture[0]
    shown = np.swapaxes(shown, 0, 1)
    return shown[::-1] if superior_up else shown


def display_planes(image: object, affine: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The views of a channel-first image: ``{"image": plane}`` for 2D, ``{"axial", "coronal", "sagittal"}``
    central planes for 3D; each ``(rows, columns)`` grey or ``(rows, columns, 3)`` RGB, as ``imshow`` takes them.

    Args:
        image: ``(C, x, y[, z])`` array, tensor or MetaTensor (whose affine is used when ``affine`` is None), or a
            map without a channel axis ``(x, y[, z])``.
        affine: the voxel-to-RAS affine, when ``image`` does not carry it.
    """
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    affine = _affine_of(image, affine)
    if array.ndim in (2, 3) and (array.ndim == 2 or array.shape[0] not in (1, 3)):
        array = array[None]  # a map without a channel axis
    if array.shape[0] not in (1, 3):
        array = array[:1]
    if array.ndim == 3:
        return {"image": _plane(array, superior_up=False)}
    volume = oriented_volume(array, affine)
    x, y, z = (size // 2 for size in volume.shape[1:])
    return {"axial": _plane(volume[:, :, :, z], superior_up=False),
            "coronal": _plane(volume[:, :, y, :], superior_up=True),
            "sagittal": _plane(volume[:, x, :, :], superior_up=True)}


def display_image(image: object, affine: np.ndarray | None = None) -> np.ndarray:
    """The one plane a grid shows: the 2D image, or a 3D volume's axial central plane."""
    planes = display_planes(image, affine)
    return planes["image"] if "image" in planes else planes["axial"]


def normalised(plane: np.ndarray) -> np.ndarray:
    """Linearly to [0, 1] (a constant plane becomes 0), for RGB planes matplotlib takes as floats."""
    low, high = float(plane.min()), float(plane.max())
    return (plane - low) / (high - low) if high > low else np.zeros_like(plane)
