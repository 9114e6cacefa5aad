"""Grad-CAM saliency (MONAI's ``monai.visualize.GradCAM``) on the last convolution, saved as one PNG per item."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, MetaTensor
from monai.visualize import GradCAM
from torch import nn

from pipeline.data.display import display_planes, normalised
from pipeline.evaluation.plots import new_figure, save_figure
from pipeline.inference.inputs import IMAGE_SUFFIXES
from pipeline.inference.model import LoadedModel
from pipeline.inference.predict import Predictions, prediction_dataset
from pipeline.kinds import Task
from pipeline.losses.feature_tap import resolve_tap_points

__all__ = ["saliency_layer", "grad_cam", "save_saliency_png", "write_saliency"]

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
    network, target = (_BothClassLogits(model.network), f"network.{layer}") if model.task == Task.BINARY else (
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


def save_saliency_png(path: Path, image: np.ndarray, heat: np.ndarray, title: str,
                      affine: np.ndarray | None = None) -> None:
    """Write the image and the heat map over it: 2D side by side; 3D as the axial, coronal and sagittal central
    planes, both drawn by the one display rule (:func:`pipeline.data.display.display_planes`).

    Args:
        image: the network's input ``(C, *spatial)``.
        heat: the saliency map ``(*spatial)`` in [0, 1], on the image's voxel grid.
        affine: the input's voxel-to-RAS affine (3D images are then shown in the radiological convention).
    """
    pictures, maps = display_planes(image, affine), display_planes(heat, affine)
    three_d = len(pictures) > 1
    figure = new_figure(3.2 * max(len(pictures), 2), 3.6 * (2 if three_d else 1))
    axes = figure.subplots(2 if three_d else 1, len(pictures) * (1 if three_d else 2), squeeze=False)
    for index, name in enumerate(pictures):
        picture, map_ = normalised(pictures[name]), maps[name]
        suffix = f" ({name})" if three_d else ""
        image_axis, overlay_axis = (axes[0, index], axes[1, index]) if three_d else (axes[0, 0], axes[0, 1])
        cmap = "gray" if picture.ndim == 2 else None
        image_axis.imshow(picture, cmap=cmap, interpolation="nearest")
        image_axis.set_title(f"image{suffix}", fontsize=9)
        overlay_axis.imshow(picture, cmap=cmap, interpolation="nearest")
        overlay = overlay_axis.imshow(map_, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
        overlay_axis.set_title(f"Grad-CAM{suffix}", fontsize=9)
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
    loader = DataLoader(prediction_dataset(model, predictions.items, keep_meta=True), batch_size=batch_size,
                        shuffle=False)
    predicted = predictions.predicted()
    top = predictions.probabilities.argmax(axis=1)
    written, start = [], 0
    for batch in loader:
        affines = batch["image"].affine if isinstance(batch["image"], MetaTensor) else None
        images = torch.as_tensor(batch["image"].as_tensor() if affines is not None else batch["image"]).float()
        classes = torch.as_tensor(top[start:start + len(images)])
        maps = grad_cam(model, images, classes)
        for offset, (image, heat) in enumerate(zip(images.numpy(), maps, strict=True)):
            affine = None if affines is None else np.asarray(affines[offset] if affines.ndim == 3 else affines)
            index = start + offset
            item = predictions.items[index]
            probability = predictions.probabilities[index, top[index]]
            shown = item.name if show_names else f"item {index}"
            title = f"{shown}\npredicted: {predicted[index]} (p = {probability:.3f}); Grad-CAM on '{layer}'"
            path = out_dir / _file_name(index, item.name)
            save_saliency_png(path, image, heat, title, affine)
            written.append(path)
        start += len(images)
    logger.info("wrote %d saliency maps to %s", len(written), out_dir)
    return written
