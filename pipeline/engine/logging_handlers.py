"""What a training run shows while it runs: one line per epoch, progress, TensorBoard, the line describing the run.

- :class:`EpochLog`: one INFO line per epoch with the train and validation metrics of the epoch's
  :class:`~pipeline.engine.history.EpochHistory` record, a mark at a new best checkpoint, and the elapsed and
  remaining time of the whole run (MONAI's StatsHandler is not attached: its per-epoch "Key metric" lines and its
  own log format were what a user saw before).
- :func:`attach_progress_bar`: in a terminal, ignite's ``ProgressBar`` for training and validation (log lines are
  written above the bars, see :mod:`pipeline.logs`); otherwise (output to a file) an INFO line every quarter of
  an epoch.
- :func:`attach_tensorboard` and :func:`write_hparams`: MONAI's ``TensorBoardStatsHandler`` with the total loss,
  both loss terms and the learning rate per iteration (at a sampling rate), every metric per epoch grouped under
  ``train/`` and ``val/``, and the run's hyperparameters with ``SummaryWriter.add_hparams``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import TensorBoardStatsHandler
from monai.utils import CommonKeys as Keys
from torch.utils.tensorboard import SummaryWriter

from pipeline.config import Config
from pipeline.engine.builders import TrainingParts
from pipeline.engine.distributed import DistributedContext
from pipeline.engine.history import EpochHistory
from pipeline.kinds import Split

__all__ = ["EpochLog", "FileProgress", "PhaseTimer", "open_writer", "epoch_log_handlers", "attach_progress_bar",
           "attach_tensorboard", "write_hparams", "log_run", "clock"]

logger = logging.getLogger("pipeline.engine.train")

#: a line every this fraction of an epoch when there is no progress bar
PROGRESS_FRACTION = 0.25


def open_writer(tensorboard_dir: Path, context: DistributedContext) -> SummaryWriter | None:
    """The TensorBoard writer of the run; None on the processes that write nothing (all but rank 0)."""
    return SummaryWriter(log_dir=str(tensorboard_dir)) if context.is_main else None

def clock(seconds: float) -> str:
    """``75.2`` -> ``01:15``; an hour or more -> ``1:02:03``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class EpochLog:
    """Log one line per epoch from the history's latest record, marked ``best`` where it is the best checkpoint so far
    (by the run's ``training.selection_metric``)::

        epoch  3/15  train loss 0.214 (cls 0.202, var 1.216) acc 0.917 | val loss 0.253 acc 0.905 AUC 0.9805 best
        [00:12<00:49]

    ``[elapsed<remaining]`` is the whole run's: time since training (re)started, and the mean epoch time so far
    times the epochs left (early stopping may end the run sooner). Attach it after the history.
    """

    def __init__(self, history: EpochHistory, max_epochs: int) -> None:
        self.history = history
        self.max_epochs = max_epochs
        self._started = 0.0
        self._first_epoch = 0

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.STARTED, self._start)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def _start(self, trainer: Engine) -> None:
        self._started = time.perf_counter()
        self._first_epoch = trainer.state.epoch

    def line(self, record: dict, best: bool, elapsed: float, epochs_done: int) -> str:
        remaining = elapsed / max(epochs_done, 1) * (self.max_epochs - record["epoch"])
        width = len(str(self.max_epochs))
        return (f"epoch {record['epoch']:>{width}}/{self.max_epochs}  train loss {record['train_loss']:.3f} "
                f"(cls {record['train_classification']:.3f}, var {record['train_variance']:.3f}) "
                f"acc {record['train_accuracy']:.3f} | val loss {record['val_loss']:.3f} "
                f"acc {record['val_accuracy']:.3f} AUC {record['val_auc']:.4f}{' best' if best else ''} "
                f"[{clock(elapsed)}<{clock(remaining)}]")

    def _log(self, trainer: Engine) -> None:
        records = self.history.records
        best = self.history.selection.best(records) is records[-1]  # a new best checkpoint (NaN never is)
        elapsed = time.perf_counter() - self._started
        logger.info(self.line(records[-1], best, elapsed, trainer.state.epoch - self._first_epoch))


class FileProgress:
    """Without a progress bar: an INFO line every :data:`PROGRESS_FRACTION` of an epoch (never at its end, where
    the epoch line follows)."""

    def __init__(self, max_epochs: int, fraction: float = PROGRESS_FRACTION) -> None:
        self.max_epochs = max_epochs
        self.fraction = fraction

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._maybe_log)

    def _maybe_log(self, trainer: Engine) -> None:
        length = trainer.state.epoch_length
        marks = {round(length * self.fraction * k) for k in range(1, round(1 / self.fraction))}
        done = (trainer.state.iteration - 1) % length + 1
        if done not in marks or done == length:
            return
        loss = trainer.state.output[Keys.LOSS].item()
        logger.info("epoch %d/%d: %d/%d batches (%.0f%%), loss %.4f", trainer.state.epoch, self.max_epochs, done,
                    length, 100 * done / length, loss)


class PhaseTimer:
    """Wall seconds an engine spent running, summed over its runs (the validator's share of training)."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = 0.0
        self._started = 0.0
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.COMPLETED, self._stop)

    def _start(self, _: Engine) -> None:
        self._started = time.perf_counter()

    def _stop(self, _: Engine) -> None:
        self.seconds += time.perf_counter() - self._started


def epoch_log_handlers(history: EpochHistory, config: Config, context: DistributedContext) -> list:
    """The trainer's epoch line (rank 0 only); the trainer attaches it after the history."""
    return [EpochLog(history, config.training.max_epochs)] if context.is_main else []


def attach_progress_bar(config: Config, trainer: Engine, evaluator: Engine, context: DistributedContext) -> None:
    """On rank 0: progress bars for training and validation when ``training.progress_bar`` asks (``auto``: when
    stderr is a terminal), else :class:`FileProgress` lines.

    Attach it after every other epoch handler: a bar closes when its epoch completes, so the epoch line and the
    validation bar appear while the training bar still shows the finished epoch.
    """
    if not context.is_main:
        return
    setting = config.training.progress_bar
    if not (sys.stderr.isatty() if setting == "auto" else bool(setting)):
        FileProgress(config.training.max_epochs).attach(trainer)
        return
    ProgressBar(persist=False).attach(trainer, output_transform=lambda output: {"loss": output[Keys.LOSS].item()})
    ProgressBar(persist=False, desc="validation").attach(evaluator)


def _grouped_epoch_writer(group: str, step: Callable[[], int]) -> Callable[[Engine, SummaryWriter], None]:
    """Write an engine's metrics at the end of an epoch as ``group/name`` (``train_auc`` -> ``train/auc``)."""

    def write(engine: Engine, writer: SummaryWriter) -> None:
        for name, value in engine.state.metrics.items():
            if isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0:
                writer.add_scalar(f"{group}/{name.removeprefix(group + '_')}", float(value), step())
        if group == Split.TRAIN and getattr(engine, "optimizer", None) is not None:
            writer.add_scalar("train/lr", engine.optimizer.param_groups[0]["lr"], step())
        writer.flush()

    return write


def attach_tensorboard(writer: SummaryWriter, trainer: Engine, evaluator: Engine, last_terms: Callable[[], dict],
                       every: int) -> None:
    """TensorBoard scalars: per iteration (every ``every`` iterations: reading a value is a host-device sync)
    ``train/batch_loss``, ``train/batch_classification``, ``train/batch_variance`` and ``train/batch_lr``; per
    epoch ``train/<metric>`` (loss, classification, variance, accuracy, lr) and ``val/<metric>`` (auc, accuracy,
    loss). ``last_terms()`` returns the loss's latest ``{"classification", "variance"}`` terms."""

    def batch_scalars(output: dict) -> dict[str, float]:
        terms = last_terms()
        return {"train/batch_loss": output[Keys.LOSS].item(),
                "train/batch_classification": float(terms["classification"]),
                "train/batch_variance": float(terms["variance"]),
                "train/batch_lr": trainer.optimizer.param_groups[0]["lr"]}

    TensorBoardStatsHandler(summary_writer=writer, output_transform=batch_scalars,
                            iteration_log=lambda _, iteration: iteration % every == 0,
                            epoch_event_writer=_grouped_epoch_writer("train", lambda: trainer.state.epoch),
                            ).attach(trainer)
    TensorBoardStatsHandler(summary_writer=writer, iteration_log=False,
                            epoch_event_writer=_grouped_epoch_writer("val", lambda: trainer.state.epoch),
                            ).attach(evaluator)


def hyperparameters(config: Config) -> dict[str, float | int | str | bool]:
    """The settings TensorBoard's HParams tab compares runs by (scalars and strings only)."""
    return {"model": config.model.name, "variance_weight": config.loss.variance_weight,
            "feature_sampling_ratio": config.loss.feature_sampling_ratio, "lambda_": config.loss.lambda_,
            "taps": str(config.loss.taps), "label_smoothing": config.loss.label_smoothing,
            "optimizer": config.optimizer.name, "lr": config.optimizer.lr,
            "weight_decay": config.optimizer.weight_decay, "batch_size": config.data.batch_size,
            "max_epochs": config.training.max_epochs, "scheduler": config.training.scheduler.name,
            "dropout": config.model.dropout,
            "augmentation": len(config.augmentation.transforms), "seed": config.training.seed}


def write_hparams(writer: SummaryWriter, config: Config, best_value: float, best_epoch: int,
                  epochs_run: int) -> None:
    """Record the run's hyperparameters and outcome in TensorBoard's HParams tab (in the run's own folder): the best
    value of its ``training.selection_metric`` (``hparam/best_val_auc`` or ``hparam/best_val_loss``)."""
    writer.add_hparams(hyperparameters(config),
                       {f"hparam/best_{config.training.selection_metric}": best_value, "hparam/best_epoch": best_epoch,
                        "hparam/epochs_run": epochs_run},
                       run_name=".")


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
