"""Train from a validated configuration with MONAI's SupervisedTrainer and SupervisedEvaluator."""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import monai
import torch
from ignite.engine import Events
from ignite.handlers import ProgressBar
from ignite.metrics import Accuracy, Average, Loss
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    ROCAUC,
    CheckpointSaver,
    EarlyStopHandler,
    LrScheduleHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    stopping_fn_from_metric,
)
from monai.utils import CommonKeys as Keys
from monai.utils import set_determinism
from torch.utils.tensorboard import SummaryWriter

from pipeline.config import Config, save_config
from pipeline.engine.components import (
    autocast_dtype,
    make_loss,
    make_network,
    make_optimizer,
    make_scheduler,
    prepare_data,
    select_device,
)
from pipeline.engine.history import EpochHistory, json_safe, write_table
from pipeline.engine.outputs import accuracy_output, auc_output, loss_output

__all__ = ["TrainResult", "train", "create_run_dir", "hardware_description", "CHECKPOINT_DIR", "BEST_CHECKPOINT"]

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best.pt"
KEY_METRIC = "val_auc"


@dataclass
class TrainResult:
    run_dir: Path
    epochs_run: int
    best_epoch: int
    best_val_auc: float
    seconds: float


def create_run_dir(config: Config) -> Path:
    """``output.root/output.name``, or the first free ``name-2``, ``name-3``, ... when it is taken."""
    root = config.output.root
    name = config.output.name or "run"
    candidate, index = root / name, 1
    while candidate.exists() and any(candidate.iterdir()):
        index += 1
        candidate = root / f"{name}-{index}"
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _want_progress_bar(setting: bool | str) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)


def train(config: Config, run_dir: Path | None = None,
          on_validation: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train and validate every epoch; write checkpoints, metrics and curves to the run directory.

    ``on_validation(epoch, metrics)`` is called after each validation (hyperparameter search prunes there; an
    exception it raises ends training and propagates).

    The best checkpoint (highest validation AUC) is ``checkpoints/best.pt``: the network's state dict.
    ``checkpoints/checkpoint_epoch=N.pt`` holds the last epoch's network, optimizer, scheduler and trainer state.
    """
    run_dir = run_dir or create_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    seed = config.training.seed
    if config.training.deterministic:
        set_determinism(seed=seed)
    else:
        set_determinism(seed=seed, use_deterministic_algorithms=False)
        torch.backends.cudnn.benchmark = True
    device = select_device(config)
    amp_dtype = autocast_dtype(config, device)

    data = prepare_data(config, splits=("train", "val"), cache_dir=run_dir / "cache")
    info = data.info
    write_table(run_dir / "splits.csv", data.split_table, ("item", "label", "split", "patient"))
    if data.skipped:
        write_table(run_dir / "skipped_items.csv", data.skipped, ("item", "split", "reason"))
        logger.warning("skipped %d unreadable item(s): see %s", len(data.skipped), run_dir / "skipped_items.csv")
    for note in data.notes:
        logger.warning(note)
    sample_shape = tuple(data.loaders["train"].dataset[0]["image"].shape)
    network = make_network(config, info, sample_shape).to(device)
    loss, tap = make_loss(config, info.task, network)
    optimizer = make_optimizer(config, network)
    scheduler = make_scheduler(config, optimizer)
    logger.info("run %s: %s on %s, loss: variance_weight=%g feature_sampling_ratio=%g lambda_=%g taps=%s%s",
                run_dir, config.model.name, hardware_description(device), config.loss.variance_weight,
                config.loss.feature_sampling_ratio, config.loss.lambda_,
                tap.layer_names if tap else "none", f", autocast {amp_dtype}" if amp_dtype else "")

    checkpoint_dir = run_dir / CHECKPOINT_DIR
    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
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
        val_handlers=[
            StatsHandler(name="medvp.validation", output_transform=lambda output: None, iteration_log=False),
            CheckpointSaver(save_dir=str(checkpoint_dir), save_dict={"network": network}, save_key_metric=True,
                            key_metric_name=KEY_METRIC, key_metric_filename=BEST_CHECKPOINT),
        ],
    )
    TensorBoardStatsHandler(summary_writer=writer, output_transform=lambda output: None, iteration_log=False,
                            global_epoch_transform=lambda epoch: trainer.state.epoch).attach(evaluator)

    history = EpochHistory(run_dir, evaluator, title=f"{config.output.name}: {config.model.name}")
    save_dict = {"network": network, "optimizer": optimizer}
    train_handlers = [ValidationHandler(validator=evaluator, interval=1, epoch_level=True), history]
    if scheduler is not None:
        save_dict["lr_scheduler"] = scheduler
        train_handlers.append(LrScheduleHandler(lr_scheduler=scheduler, print_lr=False, epoch_level=True))
    train_handlers += [
        StatsHandler(name="medvp.train", tag_name="train_loss", output_transform=lambda output: None,
                     iteration_log=False),
        TensorBoardStatsHandler(summary_writer=writer, iteration_log=True, epoch_log=True,
                                output_transform=lambda output: output[Keys.LOSS].item()),
    ]

    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.training.max_epochs,
        train_data_loader=data.loaders["train"],
        network=network,
        optimizer=optimizer,
        loss_function=loss,
        key_train_metric={"train_accuracy": Accuracy(output_transform=accuracy_output(info.task),
                                                     is_multilabel=info.task == "multilabel")},
        additional_metrics={
            "train_loss": Average(output_transform=lambda output: output[Keys.LOSS].detach()),
            "train_classification": Average(output_transform=lambda output: loss.last_terms["classification"]),
            "train_variance": Average(output_transform=lambda output: loss.last_terms["variance"]),
        },
        amp=amp_dtype is not None,
        amp_kwargs=amp_kwargs,
        decollate=False,
        train_handlers=train_handlers,
    )
    save_dict["trainer"] = trainer
    CheckpointSaver(save_dir=str(checkpoint_dir), save_dict=save_dict, save_interval=1, n_saved=1,
                    epoch_level=True).attach(trainer)
    if on_validation is not None:
        evaluator.add_event_handler(Events.COMPLETED,
                                    lambda engine: on_validation(trainer.state.epoch, dict(engine.state.metrics)))
    if config.training.early_stopping_patience > 0:
        EarlyStopHandler(patience=config.training.early_stopping_patience,
                         score_function=stopping_fn_from_metric(KEY_METRIC), trainer=trainer,
                         epoch_level=True).attach(evaluator)
    if _want_progress_bar(config.training.progress_bar):
        ProgressBar(persist=False).attach(trainer, output_transform=lambda output: {"loss": output[Keys.LOSS].item()})

    started = time.perf_counter()
    try:
        trainer.run()
    finally:
        writer.close()
        if tap is not None:
            tap.remove()
    seconds = time.perf_counter() - started
    result = TrainResult(run_dir=run_dir, epochs_run=trainer.state.epoch,
                         best_epoch=int(evaluator.state.best_metric_epoch),
                         best_val_auc=float(evaluator.state.best_metric), seconds=seconds)
    summary = {
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch, "best_val_auc": result.best_val_auc,
        "train_seconds": round(seconds, 2), "hardware": hardware_description(device),
        "autocast": str(amp_dtype) if amp_dtype else None, "task": info.task, "class_names": info.class_names,
        "in_channels": info.in_channels, "spatial_dims": info.spatial_dims, "input_shape": list(sample_shape),
        "taps": tap.layer_names if tap else [], "versions": {"monai": monai.__version__, "torch": torch.__version__},
        "split_made_here": data.split_made_here, "items": data.sizes, "skipped_items": len(data.skipped),
        "unsafe_augmentation": data.notes,
    }
    (run_dir / "train_summary.json").write_text(json.dumps(json_safe(summary), indent=1), encoding="utf-8")
    logger.info("trained %d epochs in %.1f s; best validation AUC %.4f at epoch %d", result.epochs_run, seconds,
                result.best_val_auc, result.best_epoch)
    return result
