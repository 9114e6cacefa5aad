"""Build the parts a run trains from a validated configuration: network, loss (with its feature tap), optimizer and
learning-rate schedule. One function per part; each turns a library's error into a one-line ConfigError."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pipeline.config import Config
from pipeline.data import DatasetInfo
from pipeline.engine.device import wrap_for_distributed
from pipeline.engine.distributed import DistributedContext
from pipeline.errors import ConfigError, first_line
from pipeline.losses import FeatureTap, VariancePenalizedLoss
from pipeline.networks import NetworkSpec, build_network

__all__ = ["network_spec", "make_network", "make_loss", "make_optimizer", "make_scheduler", "TrainingParts",
           "build_training_parts"]


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
            f"({first_line(error)}); set preprocessing.spatial_size to a larger size"
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
        variance_scope=config.loss.variance_scope,
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


@dataclass
class TrainingParts:
    """What a run trains: the network (``train_network`` is what the trainer runs: the network itself, or its
    DistributedDataParallel wrapper), the loss and its tap, the optimizer and the schedule."""

    network: nn.Module
    train_network: nn.Module
    loss: VariancePenalizedLoss
    tap: FeatureTap | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None


def build_training_parts(config: Config, info: DatasetInfo, sample_shape: tuple[int, ...], device: torch.device,
                         context: DistributedContext) -> TrainingParts:
    """Network (on ``device``, SyncBatchNorm'ed when configured in a distributed run), loss, optimizer, schedule."""
    network = make_network(config, info, sample_shape)
    if context.enabled and config.training.sync_batchnorm:
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)  # before the tap hooks its modules
    network = network.to(device)
    loss, tap = make_loss(config, info.task, network)
    optimizer = make_optimizer(config, network)
    return TrainingParts(network=network, train_network=wrap_for_distributed(config, network, device, context),
                         loss=loss, tap=tap, optimizer=optimizer, scheduler=make_scheduler(config, optimizer))
