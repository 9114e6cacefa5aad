import pytest

from pipeline.config import parse_config
from pipeline.errors import ConfigError


def config(tmp_path, **augmentation):
    return parse_config({"data": {"path": "x.npz"}, "augmentation": augmentation}, "cfg.yaml", tmp_path)


def test_allow_listed_augmentations_within_bounds_validate(tmp_path):
    result = config(tmp_path, transforms=[
        {"name": "rotate", "degrees": 10}, {"name": "translate", "fraction": 0.1},
        {"name": "zoom", "range": [0.9, 1.1]}, {"name": "intensity_scale", "factor": 0.1},
        {"name": "intensity_shift", "offset": 0.05}, {"name": "gaussian_noise", "std": 0.01, "prob": 0.2}])
    assert len(result.augmentation.transforms) == 6
    assert result.augmentation.override_warnings() == []


@pytest.mark.parametrize("entry,message", [
    ({"name": "rotate", "degrees": 30},
     "'rotate': degrees = 30 is outside the clinical bound \\(at most 10 degrees\\)"),
    ({"name": "zoom", "range": [0.5, 1.5]}, "'zoom': range = \\[0.5, 1.5\\] is outside the clinical bound"),
    ({"name": "elastic"}, "'elastic' is refused: elastic deformation changes the shape of anatomy"),
    ({"name": "histogram_equalization"}, "refused: histogram equalization destroys .*Hounsfield"),
    ({"name": "cutout"}, "refused: cut-out can erase the finding"),
    ({"name": "color_jitter"}, "refused: colour and hue jitter are meaningless on grey modalities"),
    ({"name": "flip"}, "'flip' is refused: flips mirror laterality .*heart is on the left"),
    ({"name": "mixup"}, "unknown augmentation 'mixup'"),
    ({"name": "rotate", "angle": 5}, "unknown parameters \\['angle'\\]"),
])
def test_unsafe_or_out_of_bound_augmentations_are_refused_with_the_reason(tmp_path, entry, message):
    with pytest.raises(ConfigError, match=f"cfg.yaml: augmentation.*{message}"):
        config(tmp_path, transforms=[entry])


def test_flip_is_allowed_for_laterality_invariant_anatomy(tmp_path):
    result = config(tmp_path, laterality_invariant=True, transforms=[{"name": "flip", "axis": 1}])
    assert result.augmentation.override_warnings() == []


def test_override_allows_unsafe_transforms_with_recorded_warnings(tmp_path):
    result = config(tmp_path, allow_unsafe_augmentation=True,
                    transforms=[{"name": "elastic"}, {"name": "rotate", "degrees": 45}, {"name": "flip"}])
    notes = result.augmentation.override_warnings()
    assert len(notes) == 3
    assert "unsafe augmentation 'elastic' allowed by override" in notes[0]
