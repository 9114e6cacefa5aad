"""The network registry: each entry declares what its network supports, and the schema asks it."""

import pytest
import torch

from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.networks import NETWORKS, NetworkSpec, build_network


def _accepts(network: torch.nn.Module, size: int) -> bool:
    try:
        with torch.no_grad():
            network(torch.zeros(2, 1, size, size))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("name", [name for name, entry in NETWORKS.items() if entry.min_input_size > 1])
def test_min_input_size_is_the_smallest_side_the_network_accepts(name):
    size, network = NETWORKS[name].min_input_size, build_network(NetworkSpec(name, 2, 1, 2)).eval()
    assert _accepts(network, size) and not _accepts(network, size - 1)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_declared_dropout_is_a_dropout_module_in_the_built_network(name):
    network = build_network(NetworkSpec(name, 2, 1, 2, dropout=0.3))
    rates = {module.p for module in network.modules() if isinstance(module, torch.nn.modules.dropout._DropoutNd)}
    assert (0.3 in rates) == NETWORKS[name].dropout


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_schema_refuses_settings_the_network_does_not_support(name, demo_data, tmp_path):
    entry = NETWORKS[name]
    for setting, supported in (("dropout", entry.dropout), ("small_input", entry.small_input)):
        value = 0.2 if setting == "dropout" else True
        document = {"data": {"path": str(demo_data)}, "model": {"name": name, setting: value}}
        if supported:
            assert getattr(parse_config(document, "test", tmp_path).model, setting) == value
        else:
            with pytest.raises(ConfigError, match=f"{setting} is supported for .*, not {name}"):
                parse_config(document, "test", tmp_path)
