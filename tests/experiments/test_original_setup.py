"""The original write-up's setup as a benchmark row: its network, input size and grid."""

import math
from pathlib import Path

import torch

from pipeline.config import load_config
from pipeline.experiments import arm_overrides, load_spec
from pipeline.experiments.tuning import SEARCH_SPACES
from pipeline.losses import FeatureTap
from pipeline.networks import NetworkSpec, build_network

SPEC = Path(__file__).parents[2] / "benchmarks" / "specs" / "pneumoniamnist_original_setup.yaml"


def test_original_setup_is_the_write_ups_network_input_and_grid():
    spec = load_spec(SPEC)
    spec = spec.model_copy(update={"arm_settings": {"original_setup_vp": {
        "variance_weight": 0.1, "feature_sampling_ratio": 0.5, "lambda_": 2.0}}})
    ce = load_config(spec.base_config, arm_overrides(spec, "original_setup_ce"))
    vp = load_config(spec.base_config, arm_overrides(spec, "original_setup_vp"))
    assert spec.reference == "original_setup_ce"
    for config in (ce, vp):
        assert config.preprocessing.spatial_size == [224, 224] and config.preprocessing.interpolation == "nearest"
        assert config.optimizer.name == "adam" and config.training.early_stopping_patience > 0
    assert ce.loss.variance_weight == 0 and (vp.loss.variance_weight, vp.loss.lambda_) == (0.1, 2.0)
    network = build_network(NetworkSpec(ce.model.name, 2, 1, 1, options=ce.model.options))
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(10, (1, 1))] * 4
    assert network.head[-1].in_features == 10 * 56 * 56  # dense layer on the flattened last block, not pooled
    assert network(torch.zeros(2, 1, 224, 224)).shape == (2, 1)
    # the penalty reads what the dense head flattens: the conv stack's output after the last max-pool
    with FeatureTap(network, layers=vp.loss.taps) as tap:
        network.train()
        network(torch.zeros(2, 1, 224, 224))
        assert [tuple(f.shape) for f in tap.features] == [(2, 10, 56, 56)]
    assert math.prod(len(d.choices) for d in SEARCH_SPACES["original_setup_vp"]) == 12
