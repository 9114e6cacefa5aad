"""Build the parts of a run from a validated configuration: data, network, loss, optimizer, schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from monai.data import DataLoader
from torch import nn

from pipeline.config import Config
from pipeline.data import SPLITS, DatasetInfo, describe_dataset, make_dataset, make_loader, read_medmnist
from pipeline.errors import ConfigError
from pipeline.losses import FeatureTap, VariancePenalizedLoss
from pipeline.networks import NetworkSpec, build_network
from pipeline.transforms import preprocessing_transforms

__all__ = ["PreparedData", "prepare_data", "network_spec", "make_network", "make_loss", "make_optimizer",
           "make_scheduler", "select_device", "autocast_dtype"]

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    info: DatasetInfo
    loaders: dict[str, DataLoader]
    sizes: dict[str, int]


def prepare_data(config: Config, splits: tuple[str, ...] = SPLITS) -> PreparedData:
    """Read the dataset, preprocess it (cached in memory when configured) and wrap each split in a loader."""
    arrays = read_medmnist(config.data.path, config.data.spatial_dims)
    info = describe_dataset(arrays, config.data.task, config.data.class_names, str(config.data.path))
    transform = preprocessing_transforms(config.preprocessing, info.spatial_dims)
    loaders = {}
    for split in splits:
        dataset = make_dataset(arrays[split], info.task, transform, cache=config.data.cache == "memory")
        batch_size = config.data.batch_size if split == "train" else config.data.eval_batch_size
        loaders[split] = make_loader(dataset, batch_size, shuffle=split == "train",
                                     num_workers=config.data.num_workers, seed=config.training.seed)
    logger.info("data %s: %s task, classes %s, %dD, %d channel(s), %s", config.data.path.name, info.task,
                info.class_names, info.spatial_dims, info.in_channels,
                ", ".join(f"{split} {len(arrays[split])}" for split in splits))
    return PreparedData(info=info, loaders=loaders, sizes={split: len(arrays[split]) for split in splits})


def network_spec(config: Config, info: DatasetInfo) -> NetworkSpec:
    """What the factory needs to build the configured network for the data."""
    return NetworkSpec(name=config.model.name, spatial_dims=info.spatial_dims, in_channels=info.in_channels,
                       num_outputs=info.num_outputs, small_input=config.model.small_input,
                       dropout=config.model.dropout, options=dict(config.model.options))


def make_network(config: Config, info: DatasetInfo, sample_shape: tuple[int, ...]) -> nn.Module:
    """Build the configured network for the data and check it accepts inputs of ``sample_shape`` (C, *spatial)."""
    spec = network_spec(config, info)
    try:
        network = build_network(spec)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: cannot build {config.model.name} with options {config.model.options}: {error}") \
            from None
    network.eval()
    try:
        with torch.no_grad():
            network(torch.zeros((2, *sample_shape)))
    except RuntimeError as error:
        raise ConfigError(
            f"model.name = {config.model.name!r} cannot take inputs of shape {list(sample_shape)} "
            f"({str(error).splitlines()[0]}); set preprocessing.spatial_size to a larger size"
        ) from None
    return network


def make_loss(config: Config, task: str, network: nn.Module) -> tuple[VariancePenalizedLoss, FeatureTap | None]:
    """The loss and, when the penalty is on, the feature tap that feeds it."""
    tap = None
    if config.loss.variance_weight > 0:
        try:
            tap = FeatureTap(network, config.loss.taps)
        except ValueError as error:
            raise ConfigError(f"loss.taps = {config.loss.taps!r}: {error}") from None
    seed = config.loss.seed if config.loss.seed is not None else config.training.seed
    loss = VariancePenalizedLoss(
        variance_weight=config.loss.variance_weight, feature_sampling_ratio=config.loss.feature_sampling_ratio,
        lambda_=config.loss.lambda_, task=task, feature_source=tap, seed=seed,
        from_logits=config.loss.from_logits, label_smoothing=config.loss.label_smoothing,
    )
    return loss, tap


def make_optimizer(config: Config, network: nn.Module) -> torch.optim.Optimizer:
    settings = config.optimizer
    if settings.name == "sgd":
        return torch.optim.SGD(network.parameters(), lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    optimizer_class = torch.optim.AdamW if settings.name == "adamw" else torch.optim.Adam
    return optimizer_class(network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def make_scheduler(config: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    """An epoch-level schedule: MultiStepLR at fractions of ``max_epochs``, or cosine annealing to zero."""
    schedule, epochs = config.training.scheduler, config.training.max_epochs
    if schedule.name == "multistep":
        milestones = sorted({max(1, round(fraction * epochs)) for fraction in schedule.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=schedule.gamma)
    if schedule.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return None


def select_device(config: Config) -> torch.device:
    if config.training.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device = 'cuda' but no CUDA device is available")
    if config.training.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.training.device)


def autocast_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """bf16 where the device supports it and amp is not off; None means full precision.

    MONAI's engines autocast on CUDA only, so CPU runs stay in float32.
    """
    if config.training.amp is False or device.type != "cuda":
        if config.training.amp is True and device.type != "cuda":
            logger.warning("training.amp = true has no effect on %s: MONAI's engines autocast on CUDA only", device)
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if config.training.amp is True else None
