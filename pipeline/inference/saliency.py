"""Grad-CAM saliency (MONAI's ``monai.visualize.GradCAM``) on the last convolution, saved as one PNG per item."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader
from monai.visualize import GradCAM
from torch import nn

from pipeline.evaluation.plots import new_figure, save_figure
from pipeline.inference.inputs import IMAGE_SUFFIXES
from pipeline.inference.model import LoadedModel
from pipeline.inference.predict import Predictions, prediction_dataset
from pipeline.losses.feature_tap import resolve_tap_points

__all__ = ["saliency_layer", "grad_cam", "central_slices", "save_saliency_png", "write_saliency"]

logger = logging.getLogger(__name__)


class _BothClassLogits(nn.Module):
    """A one-logit binary network seen as two logits ``[-z, z]``, so Grad-CAM can explain either class."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.network(x)
        return torch.cat([-logit, logit], dim=1)


def saliency_layer(network: nn.Module) -> str:
    """The name of the network's last convolution module (the ``last_conv`` tap point)."""
    return resolve_tap_points(network, "last_conv")[0].module_name


def _scale_each(maps: torch.Tensor) -> torch.Tensor:
    """Each map linearly to [0, 1] (min to 0, max to 1); a constant map becomes 0.

    MONAI's default CAM normaliser maps (min, max) to (1, 0), flipping the magnitudes; a heat map must not.
    """
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return (maps - low.view(shape)) / span.view(shape)


def grad_cam(model: LoadedModel, images: torch.Tensor, class_indices: torch.Tensor) -> np.ndarray:
    """Grad-CAM maps of ``images`` ``(B, C, *spatial)``, each for its own class, scaled to [0, 1].

    Args:
        class_indices: ``(B,)`` the class each map explains (for a binary task: 0 negative, 1 positive).

    Returns:
        ``(B, *spatial)`` maps, upsampled to the input size.

    MONAI's CAM scores ``logits[:, class_idx]``: a batch is explained one class at a time, so that each
    item's gradient comes from its own class only.
    """
    layer = saliency_layer(model.network)
    network, target = (_BothClassLogits(model.network), f"network.{layer}") if model.task == "binary" else (
        model.network, layer)
    cam = GradCAM(nn_module=network, target_layers=target, postprocessing=_scale_each)
    device = next(model.network.parameters()).device
    maps = torch.zeros((len(images), *images.shape[2:]))
    with torch.enable_grad():
        for label in torch.unique(class_indices).tolist():
            chosen = (class_indices == label).nonzero().reshape(-1)
            result = cam(images[chosen].to(device).requires_grad_(True), class_idx=int(label))
            maps[chosen] = result[:, 0].detach().cpu().float()
    return maps.numpy()


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three central orthogonal slices of a ``(D, H, W)`` volume (along each axis in turn)."""
    return [np.take(volume, volume.shape[axis] // 2, axis=axis) for axis in range(3)]


def _display(image: np.ndarray) -> np.ndarray:
    """A channel-first image as matplotlib shows it: grey ``(H, W)`` or RGB ``(H, W, 3)`` in [0, 1]."""
    shown = np.moveaxis(image[:3], 0, -1) if image.shape[0] == 3 else image[0]
    low, high = float(shown.min()), float(shown.max())
    return (shown - low) / (high - low) if high > low else np.zeros_like(shown)


def save_saliency_png(path: Path, image: np.ndarray, heat: np.ndarray, title: str) -> None:
    """Write the image and the heat map over it: 2D side by side; 3D as three central orthogonal slices.

    Args:
        image: the network's input ``(C, *spatial)``.
        heat: the saliency map ``(*spatial)`` in [0, 1].
    """
    shown = _display(image)
    if heat.ndim == 2:
        pairs, names = [(shown, heat)], [""]
    else:
        pairs = list(zip(central_slices(shown if shown.ndim == 3 else shown[..., 0]), central_slices(heat),
                         strict=True))
        names = [" (axis 0)", " (axis 1)", " (axis 2)"]
    figure = new_figure(3.2 * max(len(pairs), 2), 3.6 * (2 if heat.ndim == 3 else 1))
    axes = figure.subplots(2 if heat.ndim == 3 else 1, len(pairs) * (1 if heat.ndim == 3 else 2), squeeze=False)
    for index, ((picture, map_), name) in enumerate(zip(pairs, names, strict=True)):
        image_axis, overlay_axis = (axes[0, index], axes[1, index]) if heat.ndim == 3 else (axes[0, 0], axes[0, 1])
        cmap = "gray" if picture.ndim == 2 else None
        image_axis.imshow(picture, cmap=cmap, interpolation="nearest")
        image_axis.set_title(f"image{name}", fontsize=9)
        overlay_axis.imshow(picture, cmap=cmap, interpolation="nearest")
        overlay = overlay_axis.imshow(map_, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
        overlay_axis.set_title(f"Grad-CAM{name}", fontsize=9)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.colorbar(overlay, ax=axes.ravel().tolist(), fraction=0.046, pad=0.02)
    figure.suptitle(title, fontsize=9)
    save_figure(figure, path, dpi=110)


def _file_name(index: int, name: str) -> str:
    """``00007_chest_01.png`` for item 7 named ``.../chest_01.dcm`` (or ``file.npz:test:7``)."""
    base = Path(name.replace(":", "_")).name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    return f"{index:05d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', base)[-80:]}.png"


def write_saliency(model: LoadedModel, predictions: Predictions, out_dir: Path, batch_size: int = 64,
                   show_names: bool = False) -> list[Path]:
    """One PNG per predicted item in ``out_dir``: the image, the Grad-CAM overlay, the class and its probability.

    Titles name the item by its index (``item 7``), as ``preview`` does: a path can hold a patient's name or ID.
    ``show_names`` puts the item's file name in the title instead (the PNG's own file name follows the item either
    way, so the output can be matched to the inputs).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    layer = saliency_layer(model.network)
    loader = DataLoader(prediction_dataset(model, predictions.items), batch_size=batch_size, shuffle=False)
    predicted = predictions.predicted()
    top = predictions.probabilities.argmax(axis=1)
    written, start = [], 0
    for batch in loader:
        images = torch.as_tensor(batch["image"]).float()
        classes = torch.as_tensor(top[start:start + len(images)])
        maps = grad_cam(model, images, classes)
        for offset, (image, heat) in enumerate(zip(images.numpy(), maps, strict=True)):
            index = start + offset
            item = predictions.items[index]
            probability = predictions.probabilities[index, top[index]]
            shown = item.name if show_names else f"item {index}"
            title = f"{shown}\npredicted: {predicted[index]} (p = {probability:.3f}); Grad-CAM on '{layer}'"
            path = out_dir / _file_name(index, item.name)
            save_saliency_png(path, image, heat, title)
            written.append(path)
        start += len(images)
    logger.info("wrote %d saliency maps to %s", len(written), out_dir)
    return written
