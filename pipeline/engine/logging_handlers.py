"""What a run shows while it trains: epoch lines (MONAI's StatsHandler), TensorBoard events, the progress bar, and
the line that describes the run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ignite.engine import Engine
from ignite.handlers import ProgressBar
from monai.handlers import StatsHandler, TensorBoardStatsHandler
from monai.utils import CommonKeys as Keys
from torch.utils.tensorboard import SummaryWriter

from pipeline.config import Config
from pipeline.engine.builders import TrainingParts
from pipeline.engine.distributed import DistributedContext

__all__ = ["stats_handler", "open_writer", "validation_handlers", "train_log_handlers", "attach_validation_tensorboard",
           "attach_progress_bar", "log_run"]

logger = logging.getLogger(__name__)


def stats_handler(name: str, **kwargs) -> StatsHandler:
    """MONAI's StatsHandler, whose own logger follows this package's level (``--quiet`` silences it)."""
    handler = StatsHandler(name=name, **kwargs)
    handler.logger.setLevel(logger.getEffectiveLevel())
    return handler


def open_writer(tensorboard_dir: Path, context: DistributedContext) -> SummaryWriter | None:
    """The TensorBoard writer of the run; None on the processes that write nothing (all but rank 0)."""
    return SummaryWriter(log_dir=str(tensorboard_dir)) if context.is_main else None


def validation_handlers(context: DistributedContext) -> list | None:
    """The evaluator's epoch line (rank 0 only)."""
    if not context.is_main:
        return None
    return [stats_handler("medvp.validation", output_transform=lambda output: None, iteration_log=False)]


def train_log_handlers(writer: SummaryWriter | None, batches_per_epoch: int) -> list:
    """The trainer's epoch line and TensorBoard loss curve (rank 0 only: ``writer`` is None elsewhere)."""
    if writer is None:
        return []
    log_every = max(1, batches_per_epoch // 50)
    return [
        stats_handler("medvp.train", tag_name="train_loss", output_transform=lambda output: None,
                      iteration_log=False),
        # Reading the loss is a host-device sync: at most about 50 points per epoch, not one per step.
        TensorBoardStatsHandler(summary_writer=writer, epoch_log=True,
                                iteration_log=lambda _, iteration: iteration % log_every == 0,
                                output_transform=lambda output: output[Keys.LOSS].item()),
    ]


def attach_validation_tensorboard(writer: SummaryWriter | None, evaluator: Engine, trainer: Engine) -> None:
    """Validation metrics in TensorBoard at the trainer's epoch."""
    if writer is not None:
        TensorBoardStatsHandler(summary_writer=writer, output_transform=lambda output: None, iteration_log=False,
                                global_epoch_transform=lambda epoch: trainer.state.epoch).attach(evaluator)


def attach_progress_bar(config: Config, trainer: Engine, context: DistributedContext) -> None:
    """ignite's progress bar on rank 0, when ``training.progress_bar`` asks (``auto``: when stderr is a terminal)."""
    setting = config.training.progress_bar
    wanted = sys.stderr.isatty() if setting == "auto" else bool(setting)
    if context.is_main and wanted:
        ProgressBar(persist=False).attach(trainer, output_transform=lambda output: {"loss": output[Keys.LOSS].item()})


def log_run(config: Config, run_dir: Path, parts: TrainingParts, hardware: str, amp_dtype: object,
            context: DistributedContext) -> None:
    """One line on what trains where with which penalty; one more for a distributed run."""
    logger.info("run %s: %s on %s, loss: variance_weight=%g feature_sampling_ratio=%g lambda_=%g taps=%s%s",
                run_dir, config.model.name, hardware, config.loss.variance_weight,
                config.loss.feature_sampling_ratio, config.loss.lambda_,
                parts.tap.layer_names if parts.tap else "none", f", autocast {amp_dtype}" if amp_dtype else "")
    if context.enabled:
        logger.info("distributed: %d processes, %d items per process and batch (global batch %d), "
                    "variance_scope=%s", context.world_size, config.data.batch_size,
                    config.data.batch_size * context.world_size, config.loss.variance_scope)
