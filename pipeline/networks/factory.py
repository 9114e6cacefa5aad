"""One registry of the networks medvp trains: MONAI's classifiers and SimpleCNN, 2D or 3D, from scratch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from monai.networks import nets
from torch import nn

from pipeline.networks.simple_cnn import SimpleCNN

__all__ = ["NetworkSpec", "build_network", "NETWORKS"]


@dataclass(frozen=True)
class NetworkSpec:
    """What the factory needs to build a network; ``options`` are network-specific keyword arguments."""

    name: str
    spatial_dims: int
    in_channels: int
    num_outputs: int
    small_input: bool = False
    dropout: float = 0.0
    options: dict = field(default_factory=dict)


def _resnet(depth: int) -> Callable[[NetworkSpec], nn.Module]:
    def build(spec: NetworkSpec) -> nn.Module:
        stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if spec.small_input else {
            "conv1_t_size": 7, "conv1_t_stride": 2}
        factory = getattr(nets, f"resnet{depth}")
        return factory(pretrained=False, spatial_dims=spec.spatial_dims, n_input_channels=spec.in_channels,
                       num_classes=spec.num_outputs, **stem, **spec.options)

    return build


def _densenet121(spec: NetworkSpec) -> nn.Module:
    return nets.DenseNet121(spatial_dims=spec.spatial_dims, in_channels=spec.in_channels,
                            out_channels=spec.num_outputs, dropout_prob=spec.dropout, pretrained=False,
                            **spec.options)


def _efficientnet_b0(spec: NetworkSpec) -> nn.Module:
    return nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=spec.spatial_dims,
                               in_channels=spec.in_channels, num_classes=spec.num_outputs, **spec.options)


def _simple_cnn(spec: NetworkSpec) -> nn.Module:
    return SimpleCNN(spatial_dims=spec.spatial_dims, in_channels=spec.in_channels, num_classes=spec.num_outputs,
                     dropout=spec.dropout, **spec.options)


#: name -> builder. A new network is one entry here.
NETWORKS: dict[str, Callable[[NetworkSpec], nn.Module]] = {
    "densenet121": _densenet121,
    "resnet18": _resnet(18),
    "resnet34": _resnet(34),
    "resnet50": _resnet(50),
    "efficientnet-b0": _efficientnet_b0,
    "simplecnn": _simple_cnn,
}


def build_network(spec: NetworkSpec) -> nn.Module:
    """Build the network named by ``spec`` with freshly initialised weights (nothing is downloaded).

    Raises:
        ValueError: on an unknown name, spatial_dims other than 2/3, or non-positive channel/output counts.
    """
    if spec.name not in NETWORKS:
        raise ValueError(f"unknown network {spec.name!r}; choose one of {sorted(NETWORKS)}")
    if spec.spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spec.spatial_dims}")
    if spec.in_channels < 1 or spec.num_outputs < 1:
        raise ValueError(f"in_channels and num_outputs must be >= 1, got {spec.in_channels}, {spec.num_outputs}")
    return NETWORKS[spec.name](spec)
