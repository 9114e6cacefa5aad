"""Networks: MONAI classifiers and SimpleCNN, built by name from one registry."""

from pipeline.networks.factory import NETWORKS, NetworkSpec, build_network
from pipeline.networks.simple_cnn import SimpleCNN

__all__ = ["NETWORKS", "NetworkSpec", "build_network", "SimpleCNN"]
