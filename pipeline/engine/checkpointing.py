"""Checkpointing and resuming a run: what every epoch (and iteration) checkpoint holds, the savers that write it,
and restoring a checkpoint so that a resumed run continues exactly where the interrupted one stopped."""

from __future__ import annotations

import logging
from pathlib import Path

from ignite.engine import Events
from ignite.handlers import Checkpoint

from pipeline.config import Config
from pipeline.engine.builders import TrainingParts
from pipeline.engine.checkpoint import (
    EPOCH_PATTERN,
    ITERATION_PATTERN,
    AtomicDiskSaver,
    adopt_saved_files,
    resume_checkpoint,
)
from pipeline.engine.data_setup import PreparedData
from pipeline.engine.engines import Engines
from pipeline.engine.resume import MetricStates, RandomStates, StateAttributes
from pipeline.engine.rundir import RunDir
from pipeline.errors import DataError
from pipeline.kinds import Split

__all__ = ["resume_point", "run_state", "attach_checkpoint_savers", "restore", "finished"]

logger = logging.getLogger(__name__)


def resume_point(run: RunDir, resume: bool) -> tuple[Path, dict] | None:
    """The checkpoint to resume from (path and state), None for a new run.

    Raises:
        DataError: ``resume`` is set but the run holds no loadable checkpoint.
    """
    if not resume:
        return None
    resumed = resume_checkpoint(run.checkpoint_dir)
    if resumed is None:
        raise DataError(f"{run.path}: no loadable checkpoint to resume from in {run.checkpoint_dir}; "
                        "set output.name for a new run")
    return resumed


def run_state(parts: TrainingParts, engines: Engines, data: PreparedData) -> dict:
    """Everything a resumed run needs, by name, as ignite's ``Checkpoint`` saves and loads it."""
    train_loader = data.loaders[Split.TRAIN]
    random_states = RandomStates({"loss": parts.loss.generator, "train_loader": train_loader.generator},
                                 getattr(train_loader.dataset, "transform", None))
    state = {"network": parts.network, "optimizer": parts.optimizer, "trainer": engines.trainer,
             "evaluator": StateAttributes(engines.evaluator, ("best_metric", "best_metric_epoch")),
             "best_checkpoint": engines.best_saver, "history": engines.history,
             "train_metrics": MetricStates(engines.train_metrics), "random_states": random_states,
             "data_order": engines.data_order}
    if parts.scheduler is not None:
        state["lr_scheduler"] = parts.scheduler
    if engines.early_stopping is not None:
        state["early_stopping"] = engines.early_stopping
    return state


def attach_checkpoint_savers(config: Config, engines: Engines, state: dict,
                             checkpoint_dir: Path) -> dict[str, Checkpoint | None]:
    """Save ``state`` after every epoch and, with ``training.checkpoint_every_iterations``, every that many
    iterations; each keeps its latest file only. Returns the savers by file-name pattern.

    Call after every other epoch handler is attached, so the checkpoint sees the finished epoch (validation
    included).
    """
    trainer = engines.trainer
    epoch_saver = Checkpoint(state, AtomicDiskSaver(checkpoint_dir), filename_pattern=EPOCH_PATTERN,
                             global_step_transform=lambda engine, _: engine.state.epoch, n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_saver)
    iteration_saver = None
    every, epoch_length = config.training.checkpoint_every_iterations, len(engines.data_order)
    if every > 0:
        iteration_saver = Checkpoint(state, AtomicDiskSaver(checkpoint_dir), filename_pattern=ITERATION_PATTERN,
                                     global_step_transform=lambda engine, _: engine.state.iteration, n_saved=1)
        # Not at an epoch's last iteration: the epoch checkpoint follows once validation ran.
        trainer.add_event_handler(Events.ITERATION_COMPLETED(
            event_filter=lambda _, iteration: iteration % every == 0 and iteration % epoch_length != 0),
            iteration_saver)
    return {EPOCH_PATTERN: epoch_saver, ITERATION_PATTERN: iteration_saver}


def restore(resumed: tuple[Path, dict], state: dict, engines: Engines, savers: dict[str, Checkpoint | None],
            checkpoint_dir: Path) -> dict:
    """Load a checkpoint into the run's objects and arrange for the interrupted epoch to continue exactly.

    The epoch restarts at its next batch: the data order is replayed, then the random number generators and
    the running epoch metrics are set back (the trainer resets metrics when an epoch starts).
    """
    path, saved = resumed
    missing = sorted(set(state) - set(saved))
    if missing:
        raise DataError(f"{path}: not a resumable checkpoint of this run (missing {', '.join(missing)})")
    Checkpoint.load_objects(to_load=state, checkpoint=saved)
    for pattern, saver in savers.items():
        if saver is not None:
            adopt_saved_files(saver, checkpoint_dir, pattern)
    trainer = engines.trainer
    epoch_length = trainer.state.epoch_length
    batches_done = trainer.state.iteration % epoch_length

    def _continue_epoch(_) -> None:
        if batches_done:
            engines.data_order.resume_mid_epoch(batches_done)
            state["train_metrics"].load_state_dict(saved["train_metrics"])
        state["random_states"].load_state_dict(saved["random_states"])

    trainer.add_event_handler(Events.EPOCH_STARTED(once=trainer.state.epoch + 1), _continue_epoch)
    logger.info("resuming from %s: epoch %d, iteration %d (%d of %d batches of epoch %d done)", path.name,
                trainer.state.epoch, trainer.state.iteration, batches_done, epoch_length, trainer.state.epoch + 1)
    return {"checkpoint": path.name, "epoch": trainer.state.epoch, "iteration": trainer.state.iteration}


def finished(engines: Engines) -> bool:
    """A resumed run whose last checkpoint is its final one (ignite would start over instead of returning)."""
    trainer, early_stopping = engines.trainer, engines.early_stopping
    done = trainer.state.epoch >= trainer.state.max_epochs
    return done or (early_stopping is not None and early_stopping.counter >= early_stopping.patience)
