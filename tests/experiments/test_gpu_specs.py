"""Every GPU benchmark spec must run as committed: each arm's config validates (tuned arms with a setting from the
middle of their search space), and one epoch of the arms that change the network or the taps trains on the CPU on
a tiny cut of the data (16 px, 1/8 of the channels), so a lent GPU spends its minutes on results, not on fixing specs."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.engine import train
from pipeline.experiments import arm_overrides, load_spec
from pipeline.experiments.tuning import SEARCH_SPACES

SPECS = sorted((Path(__file__).parents[2] / "benchmarks" / "specs").glob("*_gpu.yaml"))
#: one epoch trains the union of the arms that change the network or the taps (the ones a spec can break at
#: training time): ce_dropout's overrides, then vp_original_all_conv's (the penalty on every conv layer)
UNION = ("ce_dropout", "vp_original_all_conv")


def _middle_settings(arms):
    settings = {}
    for arm in arms:
        if arm in SEARCH_SPACES:
            settings[arm] = {d.name: d.choices[0] if d.choices else
                             (float(np.sqrt(d.low * d.high)) if d.log else (d.low + d.high) / 2)
                             for d in SEARCH_SPACES[arm]}
    return settings


def _tiny(dataset: Path, folder: Path) -> Path:
    """The first 16 / 8 / 8 items of each split (both classes present in the MedMNIST files' first items)."""
    with np.load(dataset) as archive:
        arrays = {key: archive[key][: 16 if key.startswith("train") else 8] for key in archive.files}
    path = folder / f"tiny_{dataset.name}"
    np.savez(path, **arrays)
    return path


def test_there_are_gpu_specs():
    assert len(SPECS) == 3


@pytest.mark.slow
@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.stem)
def test_gpu_spec_dry_runs_on_the_cpu(spec_path, tmp_path):
    spec = load_spec(spec_path)
    spec = spec.model_copy(update={"arm_settings": {**_middle_settings(spec.arms), **spec.arm_settings}})
    configs = {arm: load_config(spec.base_config, arm_overrides(spec, arm)) for arm in spec.arms}  # every arm validates
    tiny = _tiny(configs["ce"].data.path, tmp_path)
    spatial = [16] * (3 if "3d" in spec.name else 2)
    union = [override for arm in UNION for override in arm_overrides(spec, arm)]
    config = load_config(spec.base_config, [*union, f"data.path={tiny}", "training.max_epochs=1",
                                            "training.device=cpu", "training.amp=false", "data.batch_size=8",
                                            "model.options={widen_factor: 0.125}",  # 1/8 of the channels
                                            f"preprocessing.spatial_size={spatial}", "evaluation.splits=[]",
                                            "training.progress_bar=false"])
    assert config.model.dropout > 0 and config.loss.taps == "all_conv" and config.loss.variance_weight > 0
    result = train(config, tmp_path / "run")
    assert result.epochs_run == 1 and 0 <= result.best_val_auc <= 1
