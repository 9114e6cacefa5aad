"""A split held on the training device: preprocessed once, stacked, and batched by indexing.

For small datasets (the MedMNIST 2D sets at 28-224 px fit in a few hundred MiB), the per-item work of a
``Dataset``/``DataLoader`` (one dictionary and one collate per item, a host-to-device copy per batch) costs as much
as a training step of a small network on a GPU. :class:`DeviceBatchLoader` runs the deterministic transforms once,
keeps the split as one image tensor and one label tensor on the device, and forms each batch with one
``index_select``; random augmentation, when configured, still runs after the cached part, item by item, on the
device tensors.

The batch order is drawn exactly as :func:`pipeline.data.make_loader` draws it (the same torch sampler with the same
seeded generator, batch size and ``drop_last``), and the transforms' random states are seeded as MONAI's
``DataLoader`` seeds them, so a seed gives the same batches as ``data.cache: memory`` and
:class:`pipeline.engine.resume.DataOrder` can rewind an epoch through :attr:`DeviceBatchLoader.generator`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from monai.data import Dataset, list_data_collate
from monai.data.utils import set_rnd
from monai.transforms import Compose, apply_transform
from torch.utils.data import DataLoader as IndexLoader

__all__ = ["DeviceBatchLoader", "check_fits_on_device"]

logger = logging.getLogger(__name__)

#: the share of the device's free memory the cached splits may take
DEVICE_CACHE_SHARE = 0.5


def check_fits_on_device(cached_bytes: int, free_bytes: int, split: str) -> None:
    """Raise ``ValueError`` (the caller words it as a config error) when ``cached_bytes`` exceed
    :data:`DEVICE_CACHE_SHARE` of ``free_bytes``."""
    if cached_bytes > DEVICE_CACHE_SHARE * free_bytes:
        raise ValueError(f"the {split} split takes {cached_bytes / 2**20:.0f} MiB on the device, more than "
                         f"{DEVICE_CACHE_SHARE:.0%} of its {free_bytes / 2**20:.0f} MiB free")


class DeviceBatchLoader:
    """Batches ``{"image", "label", "name"}`` of a split whose preprocessed tensors live on ``device``.

    Args:
        items: the split's ``{"image", "label", "name"}`` items.
        base: the deterministic transforms (reading, preprocessing), run once per item here.
        augmentation: random transforms run per item and batch after the cached part (empty: none).
        batch_size: items per batch.
        shuffle: draw a new order each epoch from :attr:`generator` (training); else the split's order.
        seed: seed of :attr:`generator` and, as MONAI's ``DataLoader`` does, of the transforms' random states.
        device: where the tensors are held (CUDA in training; any device in tests).

    Attributes:
        generator: the seeded ``torch.Generator`` the order is drawn from.
        dataset: a MONAI ``Dataset`` over the items with the full transform (for ``dataset[0]`` and
            ``dataset.transform``, as the engine reads them from a ``DataLoader``).
    """

    def __init__(self, items: list[dict], base: Compose, augmentation: Sequence[Callable], batch_size: int,
                 shuffle: bool, seed: int, device: torch.device) -> None:
        self.device = torch.device(device)
        # The same transform objects, composed as prepare_data composes them for the other caches (so set_rnd below
        # seeds them alike); the augmentation alone is a second Compose over the same objects.
        self.dataset = Dataset(items, transform=Compose([base, *augmentation]) if augmentation else base)
        self.augmentation = Compose(list(augmentation)) if augmentation else None
        self.generator = torch.Generator().manual_seed(seed)
        # As monai.data.DataLoader does with num_workers=0: seed the transforms' random states from one draw of the
        # generator, then put the generator back to its seed (so the same augmentation draws as data.cache=memory).
        initial_seed = self.generator.initial_seed()
        set_rnd(self.dataset, int(torch.empty((), dtype=torch.int64).random_(generator=self.generator).item()))
        self.generator.manual_seed(initial_seed)
        whole = list_data_collate([apply_transform(base, item) for item in items])
        image = whole["image"]
        self.images = (image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)).to(self.device)
        self.labels = torch.as_tensor(whole["label"]).to(self.device)
        self.names: list[str] = list(whole["name"])
        drop_last = shuffle and len(items) % batch_size == 1  # as make_loader: no batch of one for batch norm
        self._indices = IndexLoader(range(len(items)), batch_size=batch_size, shuffle=shuffle,
                                    generator=self.generator, drop_last=drop_last, collate_fn=torch.tensor)
        logger.debug("device cache: %d items, %.1f MiB on %s", len(items), self.nbytes / 2**20, self.device)

    @property
    def nbytes(self) -> int:
        """Bytes the cached images and labels take on the device."""
        return self.images.numel() * self.images.element_size() + self.labels.numel() * self.labels.element_size()

    @property
    def batch_size(self) -> int | None:
        return self._indices.batch_size

    def __len__(self) -> int:
        return len(self._indices)

    def __iter__(self) -> Iterator[dict]:
        for index in self._indices:
            if self.augmentation is None:
                on_device = index.to(self.device, non_blocking=True)
                yield {"image": self.images.index_select(0, on_device), "label": self.labels.index_select(0, on_device),
                       "name": [self.names[position] for position in index.tolist()]}
            else:
                yield list_data_collate([
                    apply_transform(self.augmentation, {"image": self.images[position], "label": self.labels[position],
                                                        "name": self.names[position]})
                    for position in index.tolist()])
