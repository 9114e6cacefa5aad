"""The data of a run: read the source, preprocess (cached as configured), augment the training split, and wrap
every split in a loader (a distributed run's share of it, or batches kept on the GPU)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from monai.data import DataLoader
from monai.data import DistributedSampler as MonaiDistributedSampler
from monai.transforms import Compose
from torch.utils.data import DistributedSampler, Sampler

from pipeline.config import Config
from pipeline.data import SPLITS, DatasetInfo, DeviceBatchLoader, make_dataset, make_loader
from pipeline.data.checks import CheckImaged, CheckShaped
from pipeline.data.device_cache import check_fits_on_device
from pipeline.data.dicom import DicomOptions
from pipeline.data.loading import item_transforms
from pipeline.data.readers import ReadImaged, read_image
from pipeline.data.sources import SourceData, load_source, split_table
from pipeline.data.splits import keyed_patients, run_secret
from pipeline.engine.distributed import DistributedContext
from pipeline.engine.history import write_table
from pipeline.engine.rundir import RunDir
from pipeline.errors import ConfigError, DataError
from pipeline.kinds import Split
from pipeline.transforms.policy import build_augmentation

__all__ = ["PreparedData", "setup_data", "prepare_data", "deterministic_transforms", "dicom_options"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    info: DatasetInfo
    loaders: dict[str, DataLoader | DeviceBatchLoader]
    sizes: dict[str, int]
    split_table: list[dict] = field(default_factory=list)
    split_made_here: bool = False
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def setup_data(config: Config, run: RunDir, device: torch.device, context: DistributedContext) -> PreparedData:
    """The training and validation loaders of a run; rank 0 records every item's split (``splits.csv``) and the
    items left out as unreadable (``skipped_items.csv``)."""
    data = prepare_data(config, splits=(Split.TRAIN, Split.VAL), cache_dir=run.cache_dir, device=device,
                        distributed=context.enabled)
    if context.is_main:
        write_table(run.splits_table, keyed_patients(data.split_table, run_secret(run.path)),
                    ("item", "label", "split", "patient"))
    if data.skipped and context.is_main:
        write_table(run.skipped_table, data.skipped, ("item", "split", "reason"))
        logger.warning("skipped %d unreadable item(s): see %s", len(data.skipped), run.skipped_table)
    for note in data.notes:
        logger.warning(note)
    return data


def dicom_options(config: Config) -> DicomOptions:
    settings = config.data.dicom
    return DicomOptions(series_uid=settings.series_uid, uneven_spacing=settings.uneven_spacing,
                        missing_slices=settings.missing_slices, gantry_tilt=settings.gantry_tilt,
                       show_headers=settings.show_headers)


def _drop_bad_items(source: SourceData, reader: ReadImaged) -> list[dict]:
    """Read every item once; drop those that fail, returning ``{"item", "split", "reason"}`` for each."""
    skipped = []
    for split, items in source.splits.items():
        kept = []
        for item in items:
            try:
                reader({"image": item["image"]})
                kept.append(item)
            except DataError as error:
                skipped.append({"item": item["name"], "split": split, "reason": str(error)})
        source.splits[split] = kept
    return skipped


def deterministic_transforms(config: Config, source: SourceData, spatial_dims: int,
                             shape_check: CheckShaped | None = None, legacy_axes: bool = False) -> Compose:
    """Reading and preprocessing, the one item path (:func:`pipeline.data.loading.item_transforms`), with each file
    checked before and after reading (:class:`~pipeline.data.checks.CheckImaged`), then ``shape_check``: what
    training, evaluation and export share. ``legacy_axes``: a run trained on numpy-ordered MedMNIST arrays.

    The steps are one flat Compose: MONAI's ``CacheDataset`` caches up to the first ``Randomizable`` step (a nested
    ``Compose`` is one), so reading, checking and preprocessing happen once, when the cache fills."""
    steps: list = []
    if source.from_files:
        check = CheckImaged(keys="image", max_pixels=config.data.max_pixels)
        steps += [check, ReadImaged(keys="image", dicom=dicom_options(config), spatial_dims=spatial_dims), check]
    steps += item_transforms(config.preprocessing, spatial_dims, dicom_options(config), legacy_axes).transforms
    if shape_check is not None:
        steps.append(shape_check)
    return Compose(steps)


def _dataset_info(config: Config, source: SourceData, legacy_axes: bool = False) -> DatasetInfo:
    """What the network is built for: the source's task and classes, and the channels and spatial shape of the
    first training item after the one item path (so a resize or spacing is counted, whatever the source)."""
    first = source.splits[Split.TRAIN][0]
    info = source.info
    if info is None:  # files: the dimensionality comes from the first file as read
        spatial_dims = read_image(Path(first["image"]), dicom_options(config)).image.ndim - 1
        if config.data.spatial_dims not in ("auto", spatial_dims):
            raise DataError(f"{first['image']}: a {spatial_dims}D image but data.spatial_dims = "
                            f"{config.data.spatial_dims}")
        info = DatasetInfo(task=source.task, class_names=source.class_names, in_channels=0,
                           spatial_dims=spatial_dims, spatial_shape=())
    transform = deterministic_transforms(config, source, info.spatial_dims, legacy_axes=legacy_axes)
    image = transform({"image": first["image"], "label": first["label"]})["image"]
    return dataclasses.replace(info, in_channels=int(image.shape[0]), spatial_shape=tuple(image.shape[1:]))


def _distributed_sampler(dataset, split: str, seed: int) -> Sampler:
    """This process's share of a split: the training split shuffled by epoch (``set_epoch``) and padded so that
    every process runs the same number of equal batches; the others split without padding (MONAI's sampler with
    ``even_divisible=False``), so metrics gathered over the processes count every item once."""
    if split == Split.TRAIN:
        return DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=False)
    return MonaiDistributedSampler(dataset, even_divisible=False, shuffle=False)


def prepare_data(config: Config, splits: tuple[str, ...] = SPLITS, cache_dir: Path | None = None,
                 device: torch.device | None = None, distributed: bool = False,
                 legacy_axes: bool = False) -> PreparedData:
    """Read the source, preprocess (cached as configured), add training augmentation, and wrap splits in loaders.

    ``device`` is where the run trains or evaluates. ``data.cache = 'gpu'`` needs it to be CUDA: each split is then
    a :class:`~pipeline.data.DeviceBatchLoader` holding the preprocessed tensors on the device. On CUDA, the other
    caches use MONAI's ``ThreadDataLoader`` (batches prepared a batch ahead on a thread) for splits with no random
    transforms and ``data.num_workers = 0``; random augmentation keeps the plain loader, so checkpoints record the
    transforms' random states at the batch trained on.

    With ``distributed`` (an initialised process group), each loader reads this process's share of its split, with
    ``data.batch_size`` items per process and batch; the training loader seeds its random transforms with
    ``training.seed + rank``, so processes do not augment their items alike. ``legacy_axes``: evaluating a run
    that trained on numpy-ordered MedMNIST arrays (:func:`pipeline.data.loading.legacy_numpy_axes`).

    Raises:
        ConfigError: ``data.cache = 'gpu'`` without a CUDA device, or a split too large for the device's free memory.
        DataError: for unreadable items when ``data.on_bad_item`` is ``error`` (the default), and for sources
            that do not fit the configuration.
    """
    _check_cache(config, device, distributed)
    source, skipped = _read_source(config)
    info = _dataset_info(config, source, legacy_axes)
    base = deterministic_transforms(config, source, info.spatial_dims,
                                    CheckShaped(info.in_channels, info.spatial_shape,
                                                f"the first training item ({source.splits['train'][0]['name']})"),
                                    legacy_axes)
    augmentation = [build_augmentation(spec, info.spatial_shape) for spec in config.augmentation.transforms]
    loaders = {}
    for split in splits:
        items = [{key: item[key] for key in ("image", "label", "name")} for item in source.splits[split]]
        loaders[split] = _split_loader(config, split, items, base, augmentation if split == Split.TRAIN else [],
                                       cache_dir, device, distributed)
    logger.info("data %s: %s task, classes %s, %dD, %d channel(s), %s", config.data.path.name, info.task,
                info.class_names, info.spatial_dims, info.in_channels,
                ", ".join(f"{split} {len(source.splits[split])}" for split in splits))
    return PreparedData(info=info, loaders=loaders, sizes={split: len(source.splits[split]) for split in splits},
                        split_table=split_table(source), split_made_here=source.split_made_here, skipped=skipped,
                        notes=config.augmentation.override_warnings())


def _on_cuda(device: torch.device | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def _check_cache(config: Config, device: torch.device | None, distributed: bool) -> None:
    if config.data.cache == "gpu" and not _on_cuda(device):
        raise ConfigError(f"data.cache = 'gpu' needs a CUDA device, and this run uses {device or 'no device'}: "
                          "set data.cache = 'memory'")
    if config.data.cache == "gpu" and distributed:
        raise ConfigError("data.cache = 'gpu' does not split a split between processes yet; set data.cache = "
                          "'memory' for a distributed run")


def _read_source(config: Config) -> tuple[SourceData, list[dict]]:
    """The source's items by split and, with ``data.on_bad_item = skip``, the unreadable items left out."""
    source = load_source(config.data)
    skipped: list[dict] = []
    if source.from_files and config.data.on_bad_item == "skip":
        probe = ReadImaged(keys="image", dicom=dicom_options(config),
                           spatial_dims=None if config.data.spatial_dims == "auto" else config.data.spatial_dims)
        skipped = _drop_bad_items(source, probe)
    skipped += source.left_out  # files inside series folders that are not part of the item
    if skipped:
        logger.warning("skipped %d unreadable item(s) or file(s); reasons in the run directory's skipped_items.csv",
                       len(skipped))
    return source, skipped


def _split_loader(config: Config, split: str, items: list[dict], base: Compose, random_steps: list,
                  cache_dir: Path | None, device: torch.device | None,
                  distributed: bool) -> DataLoader | DeviceBatchLoader:
    """The loader of one split: on the device (``data.cache = gpu``), or a dataset cached as configured."""
    batch_size = config.data.batch_size if split == Split.TRAIN else config.data.eval_batch_size
    if config.data.cache == "gpu":
        return _device_loader(items, base, random_steps, batch_size, split, config.training.seed,
                              torch.device(device))
    transform = Compose([base, *random_steps]) if random_steps else base
    dataset = make_dataset(items, transform, config.data.cache, cache_dir / split if cache_dir is not None else None)
    sampler, seed = None, config.training.seed
    if distributed:
        if len(dataset) < torch.distributed.get_world_size():
            raise DataError(f"{config.data.path}: the {split} split has {len(dataset)} item(s), fewer than the "
                            f"{torch.distributed.get_world_size()} processes; start fewer processes")
        sampler = _distributed_sampler(dataset, split, config.training.seed)
        seed += torch.distributed.get_rank() if split == Split.TRAIN else 0
    return make_loader(dataset, batch_size, shuffle=split == Split.TRAIN, num_workers=config.data.num_workers,
                       seed=seed, sampler=sampler,
                       threaded=_on_cuda(device) and not random_steps and config.data.num_workers == 0)


def _device_loader(items: list[dict], base: Compose, augmentation: list, batch_size: int, split: str, seed: int,
                   device: torch.device) -> DeviceBatchLoader:
    loader = DeviceBatchLoader(items, base, augmentation, batch_size, shuffle=split == Split.TRAIN, seed=seed,
                               device=device)
    free_bytes, _ = torch.cuda.mem_get_info(device)
    try:
        check_fits_on_device(loader.nbytes, free_bytes, split)
    except ValueError as error:
        raise ConfigError(f"data.cache = 'gpu': {error}; set data.cache = 'memory'") from None
    logger.info("data.cache = 'gpu': %s split on %s, %.1f MiB", split, device, loader.nbytes / 2**20)
    return loader
