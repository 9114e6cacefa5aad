"""One registry of the networks medvp trains: MONAI's classifiers and SimpleCNN, 2D or 3D, from scratch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monai.networks import nets
from torch import nn

from pipeline.networks.simple_cnn import SimpleCNN

__all__ = ["NetworkSpec", "NetworkDefinition", "NetworkEntry", "build_network", "network_definition", "NETWORKS"]


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


NetworkDefinition = tuple[Callable[..., nn.Module], dict[str, Any]]


def resnet_with_head_dropout(depth: int, dropout: float, **kwargs) -> nn.Module:
    """MONAI's ResNet of ``depth`` with dropout before its linear head (MONAI's class has no dropout argument)."""
    network = getattr(nets, f"resnet{depth}")(**kwargs)
    network.fc = nn.Sequential(nn.Dropout(dropout), network.fc)
    return network


def _resnet(depth: int) -> Callable[[NetworkSpec], NetworkDefinition]:
    def define(spec: NetworkSpec) -> NetworkDefinition:
        stem = {"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if spec.small_input else {
            "conv1_t_size": 7, "conv1_t_stride": 2}
        kwargs = dict(pretrained=False, spatial_dims=spec.spatial_dims, n_input_channels=spec.in_channels,
                      num_classes=spec.num_outputs, **stem, **spec.options)
        if spec.dropout > 0:
            return resnet_with_head_dropout, dict(depth=depth, dropout=spec.dropout, **kwargs)
        return getattr(nets, f"resnet{depth}"), kwargs

    return define


def _densenet121(spec: NetworkSpec) -> NetworkDefinition:
    return nets.DenseNet121, dict(spatial_dims=spec.spatial_dims, in_channels=spec.in_channels,
                                  out_channels=spec.num_outputs, dropout_prob=spec.dropout, pretrained=False,
                                  **spec.options)


def _efficientnet_b0(spec: NetworkSpec) -> NetworkDefinition:
    return nets.EfficientNetBN, dict(model_name="efficientnet-b0", pretrained=False, spatial_dims=spec.spatial_dims,
                                     in_channels=spec.in_channels, num_classes=spec.num_outputs, **spec.options)


def _simple_cnn(spec: NetworkSpec) -> NetworkDefinition:
    return SimpleCNN, dict(spatial_dims=spec.spatial_dims, in_channels=spec.in_channels,
                           num_classes=spec.num_outputs, dropout=spec.dropout, **spec.options)


@dataclass(frozen=True)
class NetworkEntry:
    """A network medvp can build, and what it supports (the configuration schema asks here).

    Attributes:
        define: spec -> (class or factory function, keyword arguments).
        dropout: ``NetworkSpec.dropout`` is applied (SimpleCNN and the ResNets: before the head; DenseNet121:
            MONAI's ``dropout_prob``, in every dense layer).
        small_input: ``NetworkSpec.small_input`` selects a stem for small images (3x3 conv, stride 1, no max-pool).
        min_input_size: the smallest spatial side, in pixels, the network accepts (its downsampling needs it).
    """

    define: Callable[[NetworkSpec], NetworkDefinition]
    dropout: bool = False
    small_input: bool = False
    min_input_size: int = 1


#: name -> entry. A new network is one entry here, declaring what it supports.
NETWORKS: dict[str, NetworkEntry] = {
    "densenet121": NetworkEntry(_densenet121, dropout=True, min_input_size=29),
    "resnet18": NetworkEntry(_resnet(18), dropout=True, small_input=True),
    "resnet34": NetworkEntry(_resnet(34), dropout=True, small_input=True),
    "resnet50": NetworkEntry(_resnet(50), dropout=True, small_input=True),
    "efficientnet-b0": NetworkEntry(_efficientnet_b0, min_input_size=32),
    "simplecnn": NetworkEntry(_simple_cnn, dropout=True, min_input_size=4),
}


def network_definition(spec: NetworkSpec) -> NetworkDefinition:
    """The class (or factory function) and keyword arguments that build the network named by ``spec``.

    This is what a MONAI bundle's ``network_def`` (``_target_`` plus arguments) is written from.

    Raises:
        ValueError: on an unknown name, spatial_dims other than 2/3, or non-positive channel/output counts.

    Example:
        >>> factory, kwargs = network_definition(NetworkSpec("resnet18", 2, 1, 3))
        >>> factory.__name__, kwargs["num_classes"]
        ('resnet18', 3)
    """
    if spec.name not in NETWORKS:
        raise ValueError(f"unknown network {spec.name!r}; choose one of {sorted(NETWORKS)}")
    if spec.spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spec.spatial_dims}")
    if spec.in_channels < 1 or spec.num_outputs < 1:
        raise ValueError(f"in_channels and num_outputs must be >= 1, got {spec.in_channels}, {spec.num_outputs}")
    return NETWORKS[spec.name].define(spec)


def build_network(spec: NetworkSpec) -> nn.Module:
    """Build the network named by ``spec`` with freshly initialised weights (nothing is downloaded).

    Raises:
        ValueError: on an unknown name, spatial_dims other than 2/3, or non-positive channel/output counts.
    """
    factory, kwargs = network_definition(spec)
    return factory(**kwargs)
