"""Train from a validated configuration with MONAI's SupervisedTrainer and SupervisedEvaluator.

:func:`train` reads as the steps of a run; each step is a function in the module named for it:
``data_setup`` (loaders), ``device`` (device, precision, seeding), ``builders`` (network, loss, optimizer,
schedule), ``engines`` (evaluator and trainer), ``logging_handlers``, ``checkpointing`` (savers, resume),
``summary`` and ``rundir`` (the run directory's files).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Config
from pipeline.engine.builders import TrainingParts, build_training_parts
from pipeline.engine.checkpoint import BEST_CHECKPOINT, CHECKPOINT_DIR, remove_orphaned_temporaries
from pipeline.engine.checkpointing import attach_checkpoint_savers, finished, restore, resume_point, run_state
from pipeline.engine.data_setup import setup_data
from pipeline.engine.device import autocast_dtype, hardware_description, run_device, seed_everything
from pipeline.engine.distributed import DistributedContext, current_context
from pipeline.engine.engines import Engines, attach_best_checkpoint, attach_stopping, build_evaluator, build_trainer
from pipeline.engine.history import EpochHistory
from pipeline.engine.logging_handlers import (
    PhaseTimer,
    attach_progress_bar,
    attach_tensorboard,
    epoch_log_handlers,
    log_run,
    open_writer,
    write_hparams,
)
from pipeline.engine.rundir import RunDir, create_run_dir, run_lock
from pipeline.engine.summary import run_summary
from pipeline.kinds import SelectionMetric, Split

__all__ = ["TrainResult", "train", "create_run_dir", "hardware_description", "CHECKPOINT_DIR", "BEST_CHECKPOINT"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    #: validation AUC and loss at the best checkpoint (None when no epoch was validated)
    best_val_auc: float | None
    seconds: float
    #: wall seconds of parts of ``train``: ``data`` (reading, preprocessing, caching) and ``validation`` (inside
    #: ``seconds``), for the time split the command line prints
    timings: dict[str, float] = field(default_factory=dict)
    best_val_loss: float | None = None
    #: the metric that chose the best checkpoint (``training.selection_metric``)
    selection_metric: SelectionMetric = SelectionMetric.VAL_AUC
    #: where it trained (:func:`hardware_description`: the GPU model, or the CPU and its threads)
    hardware: str = ""

    @property
    def best_value(self) -> float | None:
        """The selection metric's value at the best checkpoint: what a hyperparameter search scores."""
        return self.best_val_auc if self.selection_metric is SelectionMetric.VAL_AUC else self.best_val_loss


def train(config: Config, run_dir: Path | None = None, resume: bool = False,
          on_validation: Callable[[int, dict], bool | None] | None = None) -> TrainResult:
    """Train and validate every epoch; write checkpoints, metrics and curves to the run directory.

    The best checkpoint (by ``training.selection_metric``: highest validation AUC by default, or lowest validation
    loss) is ``checkpoints/best.pt``: the network's state dict.
    ``checkpoints/checkpoint_epoch=N.pt`` (and, with ``training.checkpoint_every_iterations``,
    ``checkpoint_iteration=I.pt``) hold everything a resumed run needs: network, optimizer, scheduler, trainer
    position, early-stopping and best-metric state, the metrics history, the running epoch metrics, the random
    number generators and the data order. Every checkpoint is written atomically (``AtomicDiskSaver``).

    Args:
        config: the validated configuration.
        run_dir: the run directory; a new one from ``output`` when None.
        resume: continue from the latest checkpoint in ``run_dir`` (the caller checks the configuration matches,
            see ``pipeline.engine.rundir.check_resumable``); the result equals an uninterrupted run's.
        on_validation: called as ``on_validation(epoch, validation metrics)`` after each validation; training
            stops after that epoch when it returns True (hyperparameter search prunes there).

    In a distributed run (an initialised process group, e.g. under ``torchrun``: see
    ``pipeline.engine.distributed``) every process calls ``train`` with the same arguments; the network is wrapped
    in DistributedDataParallel, each process trains on its share of every epoch with ``data.batch_size`` items per
    batch (a global batch of ``data.batch_size`` times the number of processes), metrics are reduced over all
    processes, and only rank 0 writes the run directory. Every process returns the same result.

    Raises:
        DataError: ``resume`` is set but ``run_dir`` holds no loadable checkpoint.
        StorageError: a checkpoint cannot be written (the previous one is kept).
    """
    context = current_context()
    if context.is_main:
        run_dir = run_dir or create_run_dir(config)
        run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = context.broadcast(run_dir)
    with run_lock(run_dir) if context.is_main else contextlib.nullcontext():
        return _train(config, RunDir(run_dir), resume, on_validation, context)


def _train(config: Config, run: RunDir, resume: bool, on_validation: Callable[[int, dict], bool | None] | None,
           context: DistributedContext) -> TrainResult:
    if context.is_main:  # under the run lock: no other process of this run is writing
        remove_orphaned_temporaries(run.checkpoint_dir)
    resumed = resume_point(run, resume)
    if context.is_main:
        run.save_config(config)
    device = run_device(config, context)
    seed_everything(config, device, context.rank)
    amp_dtype = autocast_dtype(config, device)
    data_started = time.perf_counter()
    data = setup_data(config, run, device, context)
    data_seconds = time.perf_counter() - data_started
    sample_shape = tuple(data.loaders[Split.TRAIN].dataset[0]["image"].shape)
    parts = build_training_parts(config, data.info, sample_shape, device, context)
    log_run(config, run.path, parts, hardware_description(device), amp_dtype, context)
    writer = open_writer(run.tensorboard_dir, context)
    engines = _build_engines(config, run, data, parts, device, amp_dtype, writer, context, on_validation)
    state = run_state(parts, engines, data)
    savers = attach_checkpoint_savers(config, engines, state, run.checkpoint_dir)
    attach_progress_bar(config, engines.trainer, engines.evaluator, context)
    validation = PhaseTimer(engines.evaluator)
    resumed_from = restore(resumed, state, engines, savers, run.checkpoint_dir) if resumed else None
    seconds = _run(config, engines, parts, writer)
    summary = run_summary(config, engines, parts, data, sample_shape, seconds=seconds,
                          hardware=hardware_description(device), amp_dtype=amp_dtype, resumed_from=resumed_from,
                          context=context)
    if context.is_main:
        run.write_summary(summary)
    logger.debug("trained %d epochs in %.1f s; best checkpoint (by %s) at epoch %d: validation AUC %s, loss %s",
                 summary.epochs_run, seconds, summary.selection_metric, summary.best_epoch, summary.best_val_auc,
                 summary.best_val_loss)
    return TrainResult(run_dir=run.path, epochs_run=summary.epochs_run, best_epoch=summary.best_epoch,
                       best_val_auc=summary.best_val_auc, seconds=seconds,
                       timings={"data": data_seconds, "validation": validation.seconds},
                       best_val_loss=summary.best_val_loss, selection_metric=config.training.selection_metric,
                       hardware=summary.hardware)


def _build_engines(config: Config, run: RunDir, data, parts: TrainingParts, device, amp_dtype, writer,
                   context: DistributedContext, on_validation) -> Engines:
    """Evaluator (keeping the best checkpoint), trainer (validating every epoch), their logging and stopping."""
    selection = config.training.selection_metric
    evaluator = build_evaluator(data, parts, device, amp_dtype, None, selection)
    best_saver = attach_best_checkpoint(evaluator, parts, run.checkpoint_dir, selection)
    history = EpochHistory(run, evaluator, title=f"{config.output.name}: {config.model.name}",
                           write=context.is_main, selection=selection)
    log_handlers = epoch_log_handlers(history, config, context)
    engines = build_trainer(config, data, parts, evaluator, history, log_handlers, device, amp_dtype, best_saver,
                            distributed=context.enabled)
    if writer is not None:  # reading the loss is a host-device sync: about 50 points per epoch, not one per step
        attach_tensorboard(writer, engines.trainer, evaluator, lambda: parts.loss.last_terms,
                           every=max(1, len(data.loaders[Split.TRAIN]) // 50))
    attach_stopping(config, engines, on_validation)
    return engines


def _run(config: Config, engines: Engines, parts: TrainingParts, writer) -> float:
    """Train (unless a resumed run had already finished); the seconds it took. Records the hyperparameters, closes
    the writer, removes the tap."""
    started = time.perf_counter()
    try:
        if not finished(engines):
            engines.trainer.run()
        if writer is not None:
            evaluator = engines.evaluator
            write_hparams(writer, config, float(evaluator.state.best_metric), int(evaluator.state.best_metric_epoch),
                          engines.trainer.state.epoch)
    finally:
        if writer is not None:
            writer.close()
        if parts.tap is not None:
            parts.tap.remove()
    return time.perf_counter() - started
