"""Networks: MONAI classifiers and SimpleCNN, built by name from one registry."""

from pipeline.networks.factory import (
    NETWORKS,
    NetworkDefinition,
    NetworkEntry,
    NetworkSpec,
    build_network,
    network_definition,
)
from pipeline.networks.simple_cnn import SimpleCNN

__all__ = ["NETWORKS", "NetworkDefinition", "NetworkEntry", "NetworkSpec", "build_network", "network_definition",
           "SimpleCNN"]
