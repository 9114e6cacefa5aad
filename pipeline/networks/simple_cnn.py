"""SimpleCNN: the method's original small convolutional stack, for 2D and 3D inputs."""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.networks.layers.factories import Conv, Pool
from torch import nn

__all__ = ["SimpleCNN"]


class SimpleCNN(nn.Module):
    """Four convolution layers with ReLU, a max-pool after the second and the fourth, and a linear head.

    The method's original network (Keras) flattened the last conv block into a dense layer; here the
    head pools globally first, so one network serves any input size. The variance penalty's
    ``"last_block"`` tap reads the last conv stage's activation before that pooling, which is the
    tensor the original flattened and penalized.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: outputs (1 for a binary task with one logit).
        channels: filters of the four conv layers.
        kernel_size: conv kernel size (the original used 1; 3 is the default here).
        dropout: dropout probability before the linear head.
        head: ``"pool"`` (global average pooling, then the linear layer: any input size) or ``"flatten"`` (the
            original's dense layer on the flattened last conv block: needs ``input_size``).
        input_size: spatial size of the input, for ``head="flatten"`` (each side divisible by 4).

    Example:
        >>> import torch
        >>> net = SimpleCNN(spatial_dims=2, in_channels=1, num_classes=1)
        >>> net(torch.rand(2, 1, 28, 28)).shape
        torch.Size([2, 1])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (32, 32, 64, 64),
        kernel_size: int = 3,
        dropout: float = 0.0,
        head: str = "pool",
        input_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"SimpleCNN takes exactly four conv channel counts, got {list(channels)}")
        if head not in ("pool", "flatten"):
            raise ValueError(f"head must be 'pool' or 'flatten', got {head!r}")
        if head == "flatten" and (input_size is None or len(input_size) != spatial_dims
                                  or any(side % 4 for side in input_size)):
            raise ValueError(f"head 'flatten' needs input_size: {spatial_dims} sides divisible by 4, got {input_size}")
        conv_type = Conv[Conv.CONV, spatial_dims]
        pool_type = Pool[Pool.MAX, spatial_dims]
        layers: list[nn.Module] = []
        previous = in_channels
        for index, width in enumerate(channels):
            layers += [conv_type(previous, width, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if index % 2 == 1:
                layers.append(pool_type(2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1) if head == "pool" else nn.Identity()
        flat = previous if head == "pool" else previous * math.prod(side // 4 for side in input_size)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, num_classes))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))
