"""The training augmentation allow-list, with clinical bounds, and the transforms it refuses.

Every augmentation a config asks for is checked here when the config is validated. Allowed transforms have
bounds that keep anatomy plausible; flips need the config to declare the anatomy laterality-invariant;
transforms that distort anatomy or intensities with diagnostic meaning are refused with the clinical reason,
unless ``allow_unsafe_augmentation: true`` (then a warning, recorded in the run's metadata).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from monai.transforms import (
    HistogramNormalized,
    Rand2DElasticd,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandCoarseDropoutd,
    RandFlipd,
    RandGaussianNoised,
    RandHistogramShiftd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandZoomd,
)

__all__ = ["AugmentationRule", "ALLOWED", "REFUSED", "check_augmentation", "build_augmentation"]


@dataclass(frozen=True)
class AugmentationRule:
    """An allowed augmentation: its parameters with (default, clinical bound) and its MONAI builder."""

    parameters: dict[str, tuple[object, Callable[[object], bool], str]]
    build: Callable[[dict, tuple[int, ...]], object]


def _within(limit: float) -> Callable[[object], bool]:
    return lambda value: isinstance(value, (int, float)) and 0 <= value <= limit


def _zoom_ok(value: object) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and 0.9 <= value[0] <= value[1] <= 1.1


def _rotate(params: dict, shape: tuple[int, ...]) -> object:
    angle = math.radians(params["degrees"])
    return RandAffined(keys="image", prob=params["prob"], rotate_range=(angle,) * (1 if len(shape) == 2 else 3),
                       padding_mode="border")


def _translate(params: dict, shape: tuple[int, ...]) -> object:
    # MONAI translates in voxels: the fraction is taken of the (preprocessed) image size.
    return RandAffined(keys="image", prob=params["prob"], padding_mode="border",
                       translate_range=[params["fraction"] * size for size in shape])


ALLOWED: dict[str, AugmentationRule] = {
    "rotate": AugmentationRule({"degrees": (10, _within(10), "at most 10 degrees")}, _rotate),
    "translate": AugmentationRule({"fraction": (0.1, _within(0.1), "at most 10% of the image")}, _translate),
    "zoom": AugmentationRule(
        {"range": ((0.9, 1.1), _zoom_ok, "within 0.9-1.1")},
        lambda p, shape: RandZoomd(keys="image", prob=p["prob"], min_zoom=p["range"][0], max_zoom=p["range"][1],
                                  padding_mode="edge", keep_size=True)),
    "intensity_scale": AugmentationRule(
        {"factor": (0.1, _within(0.1), "at most +-10%")},
        lambda p, shape: RandScaleIntensityd(keys="image", prob=p["prob"], factors=p["factor"])),
    "intensity_shift": AugmentationRule(
        {"offset": (0.1, _within(0.1), "at most +-0.1 of the normalized range")},
        lambda p, shape: RandShiftIntensityd(keys="image", prob=p["prob"], offsets=p["offset"])),
    "gaussian_noise": AugmentationRule(
        {"std": (0.02, _within(0.05), "a standard deviation of at most 0.05 of the normalized range")},
        lambda p, shape: RandGaussianNoised(keys="image", prob=p["prob"], std=p["std"])),
    "flip": AugmentationRule(
        {"axis": (0, lambda v: isinstance(v, int) and 0 <= v <= 2, "a spatial axis 0-2")},
        lambda p, shape: RandFlipd(keys="image", prob=p["prob"], spatial_axis=p["axis"])),
}

#: name -> (clinical reason, builder used only with allow_unsafe_augmentation)
REFUSED: dict[str, tuple[str, Callable[[dict, tuple[int, ...]], object]]] = {
    "elastic": ("elastic deformation changes the shape of anatomy and lesions",
                lambda p, shape: (Rand2DElasticd(keys="image", prob=p.get("prob", 0.5), spacing=(8, 8),
                                                magnitude_range=(1, 2)) if len(shape) == 2 else
                                 Rand3DElasticd(keys="image", prob=p.get("prob", 0.5), sigma_range=(5, 7),
                                                magnitude_range=(50, 100)))),
    "histogram_equalization": ("histogram equalization destroys the quantitative meaning of intensities "
                               "such as Hounsfield units",
                               lambda p, shape: HistogramNormalized(keys="image")),
    "histogram_shift": ("non-linear intensity remapping alters tissue contrast that carries diagnostic meaning",
                        lambda p, shape: RandHistogramShiftd(keys="image", prob=p.get("prob", 0.5))),
    "contrast": ("gamma contrast changes alter tissue contrast that carries diagnostic meaning",
                 lambda p, shape: RandAdjustContrastd(keys="image", prob=p.get("prob", 0.5))),
    "cutout": ("cut-out can erase the finding the label describes",
               lambda p, shape: RandCoarseDropoutd(keys="image", holes=4, spatial_size=4, prob=p.get("prob", 0.5))),
    "color_jitter": ("colour and hue jitter are meaningless on grey modalities and distort stain or "
                     "dermoscopic colour that carries diagnostic meaning",
                     lambda p, shape: RandScaleIntensityd(keys="image", prob=p.get("prob", 0.5), factors=0.3,
                                                         channel_wise=True)),
}

_FLIP_REASON = ("flips mirror laterality (on a chest radiograph the heart is on the left); set "
                "augmentation.laterality_invariant: true only for anatomy without laterality (dermoscopy, histology)")


def check_augmentation(spec: dict, laterality_invariant: bool, allow_unsafe: bool) -> list[str]:
    """Validate one augmentation entry; return warnings (unsafe entries allowed by override).

    Raises:
        ValueError: naming the transform and the clinical reason or bound.
    """
    name = spec.get("name")
    prob = spec.get("prob", 0.5)
    if not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise ValueError(f"augmentation {name!r}: prob must be in [0, 1], got {prob!r}")
    if name in REFUSED:
        reason = REFUSED[name][0]
        if not allow_unsafe:
            raise ValueError(f"augmentation {name!r} is refused: {reason} "
                             "(allow_unsafe_augmentation: true overrides)")
        return [f"unsafe augmentation {name!r} allowed by override: {reason}"]
    if name not in ALLOWED:
        raise ValueError(f"unknown augmentation {name!r}; allowed: {sorted(ALLOWED)}")
    notes = []
    if name == "flip" and not laterality_invariant:
        if not allow_unsafe:
            raise ValueError(f"augmentation 'flip' is refused: {_FLIP_REASON}")
        notes.append(f"unsafe augmentation 'flip' allowed by override: {_FLIP_REASON}")
    rule = ALLOWED[name]
    unknown = set(spec) - set(rule.parameters) - {"name", "prob"}
    if unknown:
        raise ValueError(f"augmentation {name!r}: unknown parameters {sorted(unknown)}; "
                         f"expected {sorted(rule.parameters)} and prob")
    for parameter, (default, check, bound) in rule.parameters.items():
        value = spec.get(parameter, default)
        if not check(value):
            if not allow_unsafe:
                raise ValueError(f"augmentation {name!r}: {parameter} = {value!r} is outside the clinical bound "
                                 f"({bound})")
            notes.append(f"unsafe augmentation {name!r} {parameter} = {value!r} beyond {bound}, allowed by override")
    return notes


def build_augmentation(spec: dict, spatial_shape: tuple[int, ...]) -> object:
    """The MONAI random transform for a checked augmentation entry, for images of ``spatial_shape``."""
    name = spec["name"]
    if name in REFUSED:
        return REFUSED[name][1](spec, spatial_shape)
    rule = ALLOWED[name]
    params = {parameter: spec.get(parameter, default) for parameter, (default, _, _) in rule.parameters.items()}
    params["prob"] = spec.get("prob", 0.5)
    return rule.build(params, spatial_shape)
