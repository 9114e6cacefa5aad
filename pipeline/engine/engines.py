"""The two MONAI engines of a run: the SupervisedEvaluator that validates every epoch (and keeps the best
checkpoint), and the SupervisedTrainer with its metrics, schedule, history and stopping rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, EarlyStopping
from ignite.metrics import Accuracy, Average, Loss, Metric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ROCAUC, LrScheduleHandler, ValidationHandler
from monai.utils import CommonKeys as Keys

from pipeline.config import Config
from pipeline.data import DatasetInfo
from pipeline.engine.builders import TrainingParts
from pipeline.engine.checkpoint import BEST_CHECKPOINT, AtomicDiskSaver
from pipeline.engine.data_setup import PreparedData
from pipeline.engine.history import EpochHistory
from pipeline.engine.outputs import accuracy_output, auc_output, loss_output
from pipeline.engine.resume import DataOrder
from pipeline.kinds import SelectionMetric, Split, Task

__all__ = ["Engines", "build_evaluator", "attach_best_checkpoint", "build_trainer", "attach_stopping"]


@dataclass
class Engines:
    evaluator: SupervisedEvaluator
    trainer: SupervisedTrainer
    history: EpochHistory
    best_saver: Checkpoint
    train_metrics: dict[str, Metric]
    data_order: DataOrder
    early_stopping: EarlyStopping | None = None


def _amp(amp_dtype: torch.dtype | None) -> dict:
    return {"amp": amp_dtype is not None, "amp_kwargs": {"dtype": amp_dtype} if amp_dtype else None}


def build_evaluator(data: PreparedData, parts: TrainingParts, device: torch.device, amp_dtype: torch.dtype | None,
                    handlers: list | None, selection: SelectionMetric) -> SupervisedEvaluator:
    """Validation of the plain network (not the DDP wrapper): AUC, accuracy and the loss's classification term,
    reduced over the processes of a distributed run; ``selection`` is the key metric (its best epoch is the
    evaluator's ``best_metric_epoch``)."""
    info = data.info
    metrics: dict[str, Metric] = {
        SelectionMetric.VAL_AUC.value: ROCAUC(output_transform=auc_output(info.task, info.num_classes)),
        "val_accuracy": Accuracy(output_transform=accuracy_output(info.task),
                                 is_multilabel=info.task == Task.MULTILABEL),
        SelectionMetric.VAL_LOSS.value: Loss(parts.loss.classification_loss, output_transform=loss_output),
    }
    return SupervisedEvaluator(
        device=device,
        val_data_loader=data.loaders[Split.VAL],
        network=parts.network,
        key_val_metric={selection.value: metrics.pop(selection.value)},
        additional_metrics=metrics,
        metric_cmp_fn=selection.is_better,
        decollate=False,
        val_handlers=handlers,
        **_amp(amp_dtype),
    )


def attach_best_checkpoint(evaluator: SupervisedEvaluator, parts: TrainingParts, checkpoint_dir,
                           selection: SelectionMetric) -> Checkpoint:
    """Keep the network's weights of the best ``selection`` (highest AUC, lowest loss) as ``best.pt`` (written by
    rank 0 only)."""
    saver = Checkpoint({"network": parts.network}, AtomicDiskSaver(checkpoint_dir, filename=BEST_CHECKPOINT),
                       score_function=lambda engine: selection.score(engine.state.metrics[selection]),
                       score_name=selection.value, n_saved=1)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, saver)
    return saver


def _train_metrics(info: DatasetInfo, parts: TrainingParts) -> dict[str, Metric]:
    loss = parts.loss
    return {
        "train_accuracy": Accuracy(output_transform=accuracy_output(info.task),
                                   is_multilabel=info.task == Task.MULTILABEL),
        "train_loss": Average(output_transform=lambda output: output[Keys.LOSS].detach()),
        "train_classification": Average(output_transform=lambda output: loss.last_terms["classification"]),
        "train_variance": Average(output_transform=lambda output: loss.last_terms["variance"]),
    }


def build_trainer(config: Config, data: PreparedData, parts: TrainingParts, evaluator: SupervisedEvaluator,
                  history: EpochHistory, log_handlers: list, device: torch.device,
                  amp_dtype: torch.dtype | None, best_saver: Checkpoint, distributed: bool) -> Engines:
    """The trainer: validation every epoch, the epoch history, the learning-rate schedule, then ``log_handlers``."""
    handlers = [ValidationHandler(validator=evaluator, interval=1, epoch_level=True), history]
    if parts.scheduler is not None:
        handlers.append(LrScheduleHandler(lr_scheduler=parts.scheduler, print_lr=False, epoch_level=True))
    metrics = _train_metrics(data.info, parts)
    data_order = DataOrder(data.loaders[Split.TRAIN])
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.training.max_epochs,
        train_data_loader=data_order,
        network=parts.train_network,
        optimizer=parts.optimizer,
        loss_function=parts.loss,
        key_train_metric={"train_accuracy": metrics["train_accuracy"]},
        additional_metrics={name: metric for name, metric in metrics.items() if name != "train_accuracy"},
        decollate=False,
        train_handlers=handlers + log_handlers,
        **_amp(amp_dtype),
    )
    if distributed:  # a new shuffle every epoch; registered before a resumed run replays its epoch's order
        sampler = data.loaders[Split.TRAIN].sampler
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: sampler.set_epoch(engine.state.epoch))
    return Engines(evaluator=evaluator, trainer=trainer, history=history, best_saver=best_saver,
                   train_metrics=metrics, data_order=data_order)


def attach_stopping(config: Config, engines: Engines,
                    on_validation: Callable[[int, dict], bool | None] | None) -> None:
    """Stop after an epoch when ``on_validation`` returns True (a pruned trial), or on early stopping."""
    trainer, evaluator = engines.trainer, engines.evaluator
    if on_validation is not None:
        def after_validation(engine: Engine) -> None:
            if on_validation(trainer.state.epoch, dict(engine.state.metrics)):
                trainer.terminate()  # ends after this epoch's handlers, checkpoint included

        evaluator.add_event_handler(Events.COMPLETED, after_validation)
    if config.training.early_stopping_patience > 0:
        selection = config.training.selection_metric
        engines.early_stopping = EarlyStopping(
            patience=config.training.early_stopping_patience, trainer=trainer,
            score_function=lambda engine: selection.score(engine.state.metrics[selection]))
        evaluator.add_event_handler(Events.EPOCH_COMPLETED, engines.early_stopping)
