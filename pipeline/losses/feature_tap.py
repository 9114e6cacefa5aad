"""Forward hooks that capture intermediate features of a network for the variance penalty.

The network keeps returning a plain logits tensor; the tap records, on the side, the
features of named layers during the latest forward pass, so any training loop (MONAI's
``SupervisedTrainer`` included) works unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["FeatureTap", "TapPoint", "resolve_tap_points", "TAP_CHOICES"]

logger = logging.getLogger(__name__)

#: Named tap choices understood by :func:`resolve_tap_points` besides explicit layer names.
TAP_CHOICES = ("last_block", "last_conv", "all_conv")

_GLOBAL_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_CONVS = (nn.modules.conv._ConvNd,)


@dataclass(frozen=True)
class TapPoint:
    """One place to read features: a module's output, or (``capture="input"``) its first input."""

    module_name: str
    capture: str = "output"

    @property
    def label(self) -> str:
        return self.module_name if self.capture == "output" else f"{self.module_name}:input"


def _module_names(network: nn.Module) -> list[str]:
    return [name for name, _ in network.named_modules() if name]


def resolve_tap_points(network: nn.Module, layers: str | Sequence[str]) -> list[TapPoint]:
    """Translate a tap choice into concrete tap points of ``network``.

    Args:
        network: the model whose features are read.
        layers: ``"last_block"`` (the input of the last global pooling module: the feature
            extractor's output just before pooling, after its activation), ``"last_conv"`` (the
            output of the last convolution module, before its normalization), ``"all_conv"`` (the
            output of every convolution module), or a list of names from ``network.named_modules()``.

    Raises:
        ValueError: when a name does not exist (the message lists the available names) or the
            network has no module of the kind the choice needs.
    """
    modules = dict(network.named_modules())
    if isinstance(layers, str):
        if layers == "last_block":
            pools = [name for name, module in modules.items() if name and isinstance(module, _GLOBAL_POOLS)]
            if not pools:
                raise ValueError(
                    f"layers='last_block' needs a global (adaptive) pooling module in {type(network).__name__}; "
                    f"none found. Name the layers instead, from: {', '.join(_module_names(network))}"
                )
            return [TapPoint(pools[-1], capture="input")]
        if layers in ("last_conv", "all_conv"):
            convs = [name for name, module in modules.items() if name and isinstance(module, _CONVS)]
            if not convs:
                raise ValueError(f"layers={layers!r}: {type(network).__name__} has no convolution module")
            return [TapPoint(convs[-1])] if layers == "last_conv" else [TapPoint(name) for name in convs]
        if layers not in modules or not layers:
            raise ValueError(
                f"layers={layers!r} is neither one of {TAP_CHOICES} nor a layer of {type(network).__name__}; "
                f"available layers: {', '.join(_module_names(network))}"
            )
        return [TapPoint(layers)]
    names = list(layers)
    if not names:
        raise ValueError("layers must name at least one layer")
    missing = [name for name in names if name not in modules or not name]
    if missing:
        raise ValueError(
            f"layers {missing} not found in {type(network).__name__}; "
            f"available layers: {', '.join(_module_names(network))}"
        )
    return [TapPoint(name) for name in names]


class FeatureTap:
    """Capture the features of chosen layers during each training forward pass.

    Only the latest forward pass is held: a pre-hook on the network clears the previous features,
    so memory does not grow. Passes run without gradient (evaluation, ``torch.no_grad()``) capture
    nothing and release what the last training pass held, so no activation outlives an evaluation.

    Args:
        network: the model to tap. It is not modified besides the hooks.
        layers: a tap choice (``"last_block"``, ``"last_conv"``, ``"all_conv"``) or a list of names
            from ``network.named_modules()``; see :func:`resolve_tap_points`.
        capture_without_grad: also capture during passes without gradient (the features are then
            kept until the next forward pass or :meth:`clear`). Defaults to False.

    Example:
        >>> from monai.networks.nets import resnet18
        >>> net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
        >>> tap = FeatureTap(net, layers="last_block")
        >>> logits = net(torch.rand(4, 1, 64, 64))
        >>> [f.shape for f in tap.features]
        [torch.Size([4, 512, 4, 4])]
        >>> tap.remove()
    """

    def __init__(
        self,
        network: nn.Module,
        layers: str | Sequence[str] = "last_block",
        capture_without_grad: bool = False,
    ) -> None:
        self.network = network
        self.points = resolve_tap_points(network, layers)
        self.capture_without_grad = capture_without_grad
        self._captured: dict[TapPoint, torch.Tensor] = {}
        self._handles: list[RemovableHandle] = [network.register_forward_pre_hook(self._on_network_start)]
        modules = dict(network.named_modules())
        for point in self.points:
            self._handles.append(self._register(modules[point.module_name], point))
        logger.debug("feature tap on %s", ", ".join(p.label for p in self.points))

    @property
    def layer_names(self) -> list[str]:
        """Labels of the tapped points, in order (``name`` or ``name:input``)."""
        return [point.label for point in self.points]

    @property
    def features(self) -> list[torch.Tensor]:
        """Features of the latest captured forward pass, one ``(B, ...)`` tensor per tap point."""
        return [self._captured[point] for point in self.points if point in self._captured]

    def clear(self) -> None:
        """Drop the captured features."""
        self._captured.clear()

    def remove(self) -> None:
        """Remove every hook and drop the captured features; the network is as before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _should_capture(self) -> bool:
        return torch.is_grad_enabled() or self.capture_without_grad

    def _on_network_start(self, module: nn.Module, args: tuple) -> None:
        self._captured.clear()

    def _register(self, module: nn.Module, point: TapPoint) -> RemovableHandle:
        if point.capture == "input":

            def pre_hook(mod: nn.Module, args: tuple) -> None:
                if self._should_capture() and args and isinstance(args[0], torch.Tensor):
                    self._captured[point] = args[0]

            return module.register_forward_pre_hook(pre_hook)

        def hook(mod: nn.Module, args: tuple, output: object) -> None:
            if self._should_capture() and isinstance(output, torch.Tensor):
                self._captured[point] = output

        return module.register_forward_hook(hook)
