"""The summary a finished run writes (``train_summary.json``, a :class:`~pipeline.engine.rundir.RunSummary`)."""

from __future__ import annotations

import monai
import torch

from pipeline.config import Config
from pipeline.data.loading import AXIS_ORDER
from pipeline.engine.builders import TrainingParts
from pipeline.engine.data_setup import PreparedData
from pipeline.engine.distributed import DistributedContext
from pipeline.engine.engines import Engines
from pipeline.engine.rundir import RunSummary

__all__ = ["run_summary"]


def _distributed(config: Config, context: DistributedContext) -> dict | None:
    if not context.enabled:
        return None
    return {"processes": context.world_size, "backend": torch.distributed.get_backend(),
            "batch_size_per_process": config.data.batch_size,
            "global_batch_size": config.data.batch_size * context.world_size,
            "variance_scope": config.loss.variance_scope, "sync_batchnorm": config.training.sync_batchnorm}


def run_summary(config: Config, engines: Engines, parts: TrainingParts, data: PreparedData,
                sample_shape: tuple[int, ...], *, seconds: float, hardware: str, amp_dtype: torch.dtype | None,
                resumed_from: dict | None, context: DistributedContext) -> RunSummary:
    """What the run trained on, how it went, and where."""
    info, best_epoch = data.info, int(engines.evaluator.state.best_metric_epoch)
    best = next((record for record in engines.history.records if record["epoch"] == best_epoch), {})
    return RunSummary(
        epochs_run=engines.trainer.state.epoch, best_epoch=best_epoch, best_val_auc=best.get("val_auc"),
        best_val_loss=best.get("val_loss"), selection_metric=config.training.selection_metric.value,
        train_seconds=round(seconds, 2),
        resumed_from=resumed_from, hardware=hardware, deterministic=config.training.deterministic,
        autocast=str(amp_dtype) if amp_dtype else None, task=info.task, class_names=info.class_names,
        in_channels=info.in_channels, spatial_dims=info.spatial_dims, input_shape=list(sample_shape),
        taps=parts.tap.layer_names if parts.tap else [],
        versions={"monai": monai.__version__, "torch": torch.__version__},
        split_made_here=data.split_made_here, items=data.sizes, skipped_items=len(data.skipped),
        unsafe_augmentation=data.notes, distributed=_distributed(config, context), axis_order=AXIS_ORDER,
    )
