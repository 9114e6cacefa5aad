"""Train from a validated configuration with MONAI's SupervisedTrainer and SupervisedEvaluator."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import monai
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EarlyStopping
from ignite.metrics import Accuracy, Average, Loss
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ROCAUC, LrScheduleHandler, ValidationHandler, stopping_fn_from_metric
from monai.utils import CommonKeys as Keys
from monai.utils import set_determinism
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from pipeline.config import Config, save_config
from pipeline.engine.checkpoint import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    EPOCH_PATTERN,
    ITERATION_PATTERN,
    AtomicDiskSaver,
    adopt_saved_files,
    resume_checkpoint,
)
from pipeline.engine.components import (
    autocast_dtype,
    make_loss,
    make_network,
    make_optimizer,
    make_scheduler,
    prepare_data,
    select_device,
)
from pipeline.engine.distributed import DistributedContext, current_context
from pipeline.engine.history import EpochHistory, json_safe, write_table
from pipeline.engine.logging_handlers import EpochLog, PhaseTimer, attach_progress, attach_tensorboard, write_hparams
from pipeline.engine.outputs import accuracy_output, auc_output, loss_output
from pipeline.engine.resume import DataOrder, MetricStates, RandomStates, StateAttributes, randomizable_transforms
from pipeline.engine.rundir import SUMMARY_FILE, create_run_dir, run_lock
from pipeline.errors import ConfigError, DataError

__all__ = ["TrainResult", "train", "create_run_dir", "hardware_description", "CHECKPOINT_DIR", "BEST_CHECKPOINT"]

logger = logging.getLogger(__name__)

KEY_METRIC = "val_auc"


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val_auc: float
    seconds: float
    #: wall seconds of the parts of ``train``: ``data`` (reading, preprocessing, caching), ``validation`` (inside
    #: ``seconds``)
    timings: dict[str, float] = field(default_factory=dict)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _want_progress_bar(setting: bool | str) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def _seed_everything(config: Config, device: torch.device, rank: int = 0) -> None:
    """Seed Python, NumPy and torch (with ``training.seed + rank``: the processes of a distributed run draw
    different dropout masks; DistributedDataParallel gives them rank 0's initial weights); with
    ``training.deterministic`` also force deterministic kernels.

    On CUDA, deterministic cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use, and operations without
    a deterministic kernel (the backward of adaptive average pooling, in every medvp network) warn instead of
    failing: docs/reliability.md lists them.
    """
    seed = config.training.seed + rank
    if config.training.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_determinism(seed=seed)  # seeds, cudnn.deterministic; leaves torch's algorithm switch alone
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    else:
        set_determinism(seed=seed, use_deterministic_algorithms=False)
        torch.backends.cudnn.benchmark = True


def train(config: Config, run_dir: Path | None = None, resume: bool = False,
          on_validation: Callable[[int, dict], bool | None] | None = None) -> TrainResult:
    """Train and validate every epoch; write checkpoints, metrics and curves to the run directory.

    The best checkpoint (highest validation AUC) is ``checkpoints/best.pt``: the network's state dict.
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
        return _train(config, run_dir, resume, on_validation, context)


def _wrap_for_distributed(config: Config, network: nn.Module, device: torch.device,
                          context: DistributedContext) -> nn.Module:
    """The network the trainer runs: DistributedDataParallel (after SyncBatchNorm, if configured) when
    distributed, the network itself otherwise. Both share the parameters."""
    if not context.enabled:
        if config.training.sync_batchnorm:
            logger.info("training.sync_batchnorm has no effect in a single process")
        return network
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def _train(config: Config, run_dir: Path, resume: bool, on_validation: Callable[[int, dict], bool | None] | None,
           context: DistributedContext) -> TrainResult:
    main = context.is_main
    checkpoint_dir = run_dir / CHECKPOINT_DIR
    resumed = resume_checkpoint(checkpoint_dir) if resume else None
    if resume and resumed is None:
        raise DataError(f"{run_dir}: no loadable checkpoint to resume from in {checkpoint_dir}; "
                        "set output.name for a new run")
    if main:
        save_config(config, run_dir / "config.yaml")
    device = select_device(config)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if context.enabled and config.training.sync_batchnorm and device.type != "cuda":
        raise ConfigError("training.sync_batchnorm = true needs CUDA devices (NCCL): PyTorch's SyncBatchNorm "
                          "does not run on CPU; set it to false")
    _seed_everything(config, device, context.rank)
    amp_dtype = autocast_dtype(config, device)

    data_started = time.perf_counter()
    data = prepare_data(config, splits=("train", "val"), cache_dir=run_dir / "cache", device=device,
                        distributed=context.enabled)
    data_seconds = time.perf_counter() - data_started
    info = data.info
    if main:
        write_table(run_dir / "splits.csv", data.split_table, ("item", "label", "split", "patient"))
    if data.skipped and main:
        write_table(run_dir / "skipped_items.csv", data.skipped, ("item", "split", "reason"))
        logger.warning("skipped %d unreadable item(s): see %s", len(data.skipped), run_dir / "skipped_items.csv")
    for note in data.notes:
        logger.warning(note)
    sample_shape = tuple(data.loaders["train"].dataset[0]["image"].shape)
    network = make_network(config, info, sample_shape)
    if context.enabled and config.training.sync_batchnorm:
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)  # before the tap hooks its modules
    network = network.to(device)
    loss, tap = make_loss(config, info.task, network)
    optimizer = make_optimizer(config, network)
    scheduler = make_scheduler(config, optimizer)
    logger.info("run %s: %s on %s, loss: variance_weight=%g feature_sampling_ratio=%g lambda_=%g taps=%s%s",
                run_dir, config.model.name, hardware_description(device), config.loss.variance_weight,
                config.loss.feature_sampling_ratio, config.loss.lambda_,
                tap.layer_names if tap else "none", f", autocast {amp_dtype}" if amp_dtype else "")
    train_network = _wrap_for_distributed(config, network, device, context)
    if context.enabled:
        logger.info("distributed: %d processes, %d items per process and batch (global batch %d), "
                    "variance_scope=%s", context.world_size, config.data.batch_size,
                    config.data.batch_size * context.world_size, config.loss.variance_scope)

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard")) if main else None
    amp_kwargs = {"dtype": amp_dtype} if amp_dtype else None

    evaluator = SupervisedEvaluator(
        device=device,
        val_data_loader=data.loaders["val"],
        network=network,
        key_val_metric={KEY_METRIC: ROCAUC(output_transform=auc_output(info.task, info.num_classes))},
        additional_metrics={
            "val_accuracy": Accuracy(output_transform=accuracy_output(info.task),
                                     is_multilabel=info.task == "multilabel"),
            "val_loss": Loss(loss.classification_loss, output_transform=loss_output),
        },
        amp=amp_dtype is not None,
        amp_kwargs=amp_kwargs,
        decollate=False,
    )
    validation_timer = PhaseTimer(evaluator)
    best_saver = Checkpoint({"network": network}, AtomicDiskSaver(checkpoint_dir, filename=BEST_CHECKPOINT),
                            score_function=lambda engine: float(engine.state.metrics[KEY_METRIC]),
                            score_name=KEY_METRIC, n_saved=1)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, best_saver)  # AtomicDiskSaver writes on rank 0 only

    history = EpochHistory(run_dir, evaluator, title=f"{config.output.name}: {config.model.name}", write=main)
    train_handlers = [ValidationHandler(validator=evaluator, interval=1, epoch_level=True), history]
    if scheduler is not None:
        train_handlers.append(LrScheduleHandler(lr_scheduler=scheduler, print_lr=False, epoch_level=True))
    if main:
        train_handlers.append(EpochLog(history, config.training.max_epochs))
    train_metrics = {
        "train_accuracy": Accuracy(output_transform=accuracy_output(info.task),
                                   is_multilabel=info.task == "multilabel"),
        "train_loss": Average(output_transform=lambda output: output[Keys.LOSS].detach()),
        "train_classification": Average(output_transform=lambda output: loss.last_terms["classification"]),
        "train_variance": Average(output_transform=lambda output: loss.last_terms["variance"]),
    }
    data_order = DataOrder(data.loaders["train"])
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.training.max_epochs,
        train_data_loader=data_order,
        network=train_network,
        optimizer=optimizer,
        loss_function=loss,
        key_train_metric={"train_accuracy": train_metrics["train_accuracy"]},
        additional_metrics={name: metric for name, metric in train_metrics.items() if name != "train_accuracy"},
        amp=amp_dtype is not None,
        amp_kwargs=amp_kwargs,
        decollate=False,
        train_handlers=train_handlers,
    )
    if writer is not None:  # reading the loss is a host-device sync: about 50 points per epoch, not one per step
        attach_tensorboard(writer, trainer, evaluator, lambda: loss.last_terms,
                           every=max(1, len(data.loaders["train"]) // 50))
    if context.enabled:  # a new shuffle every epoch; registered before a resumed run replays its epoch's order
        sampler = data.loaders["train"].sampler
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: sampler.set_epoch(engine.state.epoch))
    early_stopping = None
    if on_validation is not None:
        def after_validation(engine: Engine) -> None:
            if on_validation(trainer.state.epoch, dict(engine.state.metrics)):
                trainer.terminate()  # ends after this epoch's handlers, checkpoint included

        evaluator.add_event_handler(Events.COMPLETED, after_validation)
    if config.training.early_stopping_patience > 0:
        early_stopping = EarlyStopping(patience=config.training.early_stopping_patience,
                                       score_function=stopping_fn_from_metric(KEY_METRIC), trainer=trainer)
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, early_stopping)

    random_states = RandomStates({"loss": loss.generator, "train_loader": data.loaders["train"].generator},
                                 randomizable_transforms(getattr(data.loaders["train"].dataset, "transform", None)))
    save_dict = {"network": network, "optimizer": optimizer, "trainer": trainer,
                 "evaluator": StateAttributes(evaluator, ("best_metric", "best_metric_epoch")),
                 "best_checkpoint": best_saver, "history": history, "train_metrics": MetricStates(train_metrics),
                 "random_states": random_states, "data_order": data_order}
    if scheduler is not None:
        save_dict["lr_scheduler"] = scheduler
    if early_stopping is not None:
        save_dict["early_stopping"] = early_stopping
    # Registered after every other epoch handler, so the checkpoint sees the finished epoch (validation included).
    epoch_saver = Checkpoint(save_dict, AtomicDiskSaver(checkpoint_dir), filename_pattern=EPOCH_PATTERN,
                             global_step_transform=lambda engine, _: engine.state.epoch, n_saved=1)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, epoch_saver)
    iteration_saver = None
    every, epoch_length = config.training.checkpoint_every_iterations, len(data_order)
    if every > 0:
        iteration_saver = Checkpoint(save_dict, AtomicDiskSaver(checkpoint_dir), filename_pattern=ITERATION_PATTERN,
                                     global_step_transform=lambda engine, _: engine.state.iteration, n_saved=1)
        # Not at an epoch's last iteration: the epoch checkpoint follows once validation ran.
        trainer.add_event_handler(Events.ITERATION_COMPLETED(
            event_filter=lambda _, iteration: iteration % every == 0 and iteration % epoch_length != 0),
            iteration_saver)
    if main:
        attach_progress(trainer, evaluator, _want_progress_bar(config.training.progress_bar),
                        config.training.max_epochs)

    resumed_from = None
    if resumed is not None:
        resumed_from = _restore(resumed, save_dict, trainer, data_order, random_states,
                                {EPOCH_PATTERN: epoch_saver, ITERATION_PATTERN: iteration_saver}, checkpoint_dir)

    started = time.perf_counter()
    try:
        if not _finished(trainer, early_stopping):
            trainer.run()
        if writer is not None:
            write_hparams(writer, config, float(evaluator.state.best_metric), int(evaluator.state.best_metric_epoch),
                          trainer.state.epoch)
    finally:
        if writer is not None:
            writer.close()
        if tap is not None:
            tap.remove()
    seconds = time.perf_counter() - started
    result = TrainResult(run_dir=run_dir, epochs_run=trainer.state.epoch,
                         best_epoch=int(evaluator.state.best_metric_epoch),
                         best_val_auc=float(evaluator.state.best_metric), seconds=seconds,
                         timings={"data": data_seconds, "validation": validation_timer.seconds})
    summary = {
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "best_val_auc": result.best_val_auc,
        "train_seconds": round(seconds, 2), "data_seconds": round(data_seconds, 2),
        "validation_seconds": round(validation_timer.seconds, 2), "resumed_from": resumed_from,
        "hardware": hardware_description(device),
        "deterministic": config.training.deterministic,
        "autocast": str(amp_dtype) if amp_dtype else None, "task": info.task, "class_names": info.class_names,
        "in_channels": info.in_channels, "spatial_dims": info.spatial_dims, "input_shape": list(sample_shape),
        "taps": tap.layer_names if tap else [], "versions": {"monai": monai.__version__, "torch": torch.__version__},
        "split_made_here": data.split_made_here, "items": data.sizes, "skipped_items": len(data.skipped),
        "unsafe_augmentation": data.notes,
    }
    if context.enabled:
        summary["distributed"] = {"processes": context.world_size, "backend": torch.distributed.get_backend(),
                                  "batch_size_per_process": config.data.batch_size,
                                  "global_batch_size": config.data.batch_size * context.world_size,
                                  "variance_scope": config.loss.variance_scope,
                                  "sync_batchnorm": config.training.sync_batchnorm}
    if main:
        (run_dir / SUMMARY_FILE).write_text(json.dumps(json_safe(summary), indent=1), encoding="utf-8")
    logger.debug("trained %d epochs in %.1f s; best validation AUC %.4f at epoch %d", result.epochs_run, seconds,
                 result.best_val_auc, result.best_epoch)
    return result


def _finished(trainer: SupervisedTrainer, early_stopping: EarlyStopping | None) -> bool:
    """A resumed run whose last checkpoint is its final one (ignite would start over instead of returning)."""
    done = trainer.state.epoch >= trainer.state.max_epochs
    return done or (early_stopping is not None and early_stopping.counter >= early_stopping.patience)


def _restore(resumed: tuple[Path, dict], save_dict: dict, trainer: SupervisedTrainer, data_order: DataOrder,
             random_states: RandomStates, savers: dict[str, Checkpoint | None], checkpoint_dir: Path) -> dict:
    """Load a checkpoint into the run's objects and arrange for the interrupted epoch to continue exactly.

    The epoch restarts at its next batch: the data order is replayed, then the random number generators and
    the running epoch metrics are set back (the trainer resets metrics when an epoch starts).
    """
    path, state = resumed
    missing = sorted(set(save_dict) - set(state))
    if missing:
        raise DataError(f"{path}: not a resumable checkpoint of this run (missing {', '.join(missing)})")
    Checkpoint.load_objects(to_load=save_dict, checkpoint=state)
    for pattern, saver in savers.items():
        if saver is not None:
            adopt_saved_files(saver, checkpoint_dir, pattern)
    epoch_length = trainer.state.epoch_length
    batches_done = trainer.state.iteration % epoch_length

    def _continue_epoch(_) -> None:
        if batches_done:
            data_order.resume_mid_epoch(batches_done)
            save_dict["train_metrics"].load_state_dict(state["train_metrics"])
        random_states.load_state_dict(state["random_states"])

    trainer.add_event_handler(Events.EPOCH_STARTED(once=trainer.state.epoch + 1), _continue_epoch)
    logger.info("resuming from %s: epoch %d, iteration %d (%d of %d batches of epoch %d done)", path.name,
                trainer.state.epoch, trainer.state.iteration, batches_done, epoch_length, trainer.state.epoch + 1)
    return {"checkpoint": path.name, "epoch": trainer.state.epoch, "iteration": trainer.state.iteration}
