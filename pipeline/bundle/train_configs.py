"""The bundle's ``train.yaml``, ``evaluate.yaml`` and ``multi_gpu_train.yaml``: the run's training as MONAI components.

``train.yaml`` rebuilds what :func:`pipeline.engine.train` builds, in the same order of random draws (seeding, then
the network's initial weights; the loaders and the loss draw from their own seeded generators), so a run of the
bundle with the run's settings and data repeats the run's training (bit for bit on CPU without augmentation).
Top-level keys hold what a user overrides: ``--optimizer#lr 0.0005``, ``--variance_weight 0`` (plain
cross-entropy), ``--num_epochs 5``, ``--dataset_dir /path/to/data``.
"""

from __future__ import annotations

from typing import Any

from pipeline.bundle.configs import network_def
from pipeline.config import Config
from pipeline.data import DatasetInfo
from pipeline.data.loading import item_transform_defs
from pipeline.engine.data_setup import dicom_options
from pipeline.networks import NetworkSpec

__all__ = ["train_config", "evaluate_config", "multi_gpu_config"]
_DATA_KEYS = ("source", "task", "class_names", "spatial_dims", "on_bad_item", "split_fractions", "split_seed", "dicom")


def _optimizer(config: Config) -> dict[str, Any]:
    settings = config.optimizer
    target = {"sgd": "torch.optim.SGD", "adamw": "torch.optim.AdamW"}.get(settings.name, "torch.optim.Adam")
    optimizer = {"_target_": target, "params": "$@network.parameters()", "lr": settings.lr,
                 "weight_decay": settings.weight_decay}
    if settings.name == "sgd":
        optimizer["momentum"] = settings.momentum
    return optimizer


def _scheduler(config: Config) -> dict[str, Any] | None:
    """The epoch-level schedule :func:`pipeline.engine.components.make_scheduler` builds, as a component."""
    schedule, epochs = config.training.scheduler, config.training.max_epochs
    if schedule.name == "multistep":
        milestones = sorted({max(1, round(fraction * epochs)) for fraction in schedule.milestones})
        return {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "optimizer": "@optimizer",
                "milestones": milestones, "gamma": schedule.gamma}
    if schedule.name == "cosine":
        return {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "optimizer": "@optimizer",
                "T_max": "@num_epochs"}
    return None


def _transforms(config: Config, info: DatasetInfo) -> dict[str, Any]:
    """The one item path training builds (:func:`pipeline.data.loading.item_transform_defs`: medvp's reader, which
    passes MedMNIST arrays through, the deterministic preprocessing and the geometry check), as components."""
    return {"_target_": "Compose",
            "transforms": item_transform_defs(config.preprocessing, info.spatial_dims, dicom_options(config))}


def _validation_metrics(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key metric, the other metrics) of validation, as the engine's evaluator has them: the key metric is the
    run's ``training.selection_metric``."""
    metrics = {"val_auc": {"_target_": "ROCAUC", "output_transform": "$auc_output(@task, @num_classes)"},
               **_metrics("val"),
               "val_loss": {"_target_": "ignite.metrics.Loss", "loss_fn": "$@loss.classification_loss",
                            "output_transform": "$loss_output"}}
    selection = config.training.selection_metric.value
    return {selection: metrics.pop(selection)}, metrics


def _metrics(prefix: str) -> dict[str, Any]:
    return {f"{prefix}_accuracy": {"_target_": "ignite.metrics.Accuracy",
                                   "output_transform": "$accuracy_output(@task)",
                                   "is_multilabel": "$@task == 'multilabel'"}}


def _train_section(config: Config) -> dict[str, Any]:
    augmentation = [{"_target_": "pipeline.transforms.policy.build_augmentation", "spec": spec,
                     "spatial_shape": "@spatial_shape"} for spec in config.augmentation.transforms]
    handlers: list[dict[str, Any]] = [
        {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True,
         "interval": "@val_interval"},
    ]
    if _scheduler(config) is not None:
        handlers.append({"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False,
                         "epoch_level": True})
    handlers += [
        {"_target_": "StatsHandler", "_disabled_": "@is_not_rank0", "tag_name": "train_loss",
         "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
        {"_target_": "TensorBoardStatsHandler", "_disabled_": "@is_not_rank0", "log_dir": "@output_dir",
         "tag_name": "train_loss", "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"},
        {"_target_": "CheckpointSaver", "_disabled_": "@is_not_rank0", "save_dir": "@output_dir",
         "save_dict": {"model": "@network", "optimizer": "@optimizer"}, "save_interval": 1, "n_saved": 1,
         "epoch_level": True, "save_final": False},
    ]
    return {
        "preprocessing": {"_target_": "Compose", "transforms": ["@preprocessing", *augmentation]},
        "dataset": {"_target_": "CacheDataset", "data": "$@datalists['train']", "transform": "@train#preprocessing",
                    "cache_rate": 1.0, "progress": False, "num_workers": 0},
        # the run's loader: seeded shuffle; a last batch of one item (batch normalization cannot take it) dropped
        "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size",
                       "shuffle": True, "num_workers": "@num_workers", "generator": "$torch.Generator().manual_seed("
                       "@seed)", "drop_last": "$len(@train#dataset) % @batch_size == 1"},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": None,
        "key_metric": _metrics("train"),
        "additional_metrics": {
            "train_loss": {"_target_": "ignite.metrics.Average",
                           "output_transform": "$lambda output: output['loss'].detach()"},
            "train_classification": {"_target_": "ignite.metrics.Average",
                                     "output_transform": "$lambda output: @loss.last_terms['classification']"},
            "train_variance": {"_target_": "ignite.metrics.Average",
                               "output_transform": "$lambda output: @loss.last_terms['variance']"},
        },
        "handlers": handlers,
        "trainer": {"_target_": "SupervisedTrainer", "max_epochs": "@num_epochs", "device": "@device",
                    # one epoch of batches at a time, as medvp's run iterates it: a shuffling loader run to exhaustion
                    # draws once more from its generator, and every epoch after the first would differ
                    "train_data_loader": "$DataOrder(@train#dataloader)", "network": "@network",
                    "optimizer": "@optimizer",
                    "loss_function": "@loss", "inferer": "@train#inferer",
                    "postprocessing": "@train#postprocessing", "key_train_metric": "@train#key_metric",
                    "additional_metrics": "@train#additional_metrics", "train_handlers": "@train#handlers",
                    "amp": False, "decollate": False},
    }


def _validate_section(config: Config) -> dict[str, Any]:
    selection = config.training.selection_metric
    key_metric, additional_metrics = _validation_metrics(config)
    handlers: list[dict[str, Any]] = [
        {"_target_": "StatsHandler", "_disabled_": "@is_not_rank0", "iteration_log": False,
         "output_transform": "$lambda output: None"},
        {"_target_": "TensorBoardStatsHandler", "_disabled_": "@is_not_rank0", "log_dir": "@output_dir",
         "iteration_log": False, "output_transform": "$lambda output: None"},
        {"_target_": "CheckpointSaver", "_disabled_": "@is_not_rank0", "save_dir": "@ckpt_dir",
         "save_dict": {"model": "@network"}, "save_key_metric": True, "key_metric_name": selection.value,
         "key_metric_negative_sign": not selection.higher_is_better, "key_metric_n_saved": 1,
         "key_metric_filename": "model.pt", "save_final": False},
    ]
    section: dict[str, Any] = {
        "preprocessing": "@preprocessing",
        "dataset": {"_target_": "CacheDataset", "data": "$@datalists['val']", "transform": "@validate#preprocessing",
                    "cache_rate": 1.0, "progress": False, "num_workers": 0},
        "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset", "batch_size": "@eval_batch_size",
                       "shuffle": False, "num_workers": "@num_workers",
                       "generator": "$torch.Generator().manual_seed(@seed)"},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": None,
        "key_metric": key_metric,
        "additional_metrics": additional_metrics,
        "handlers": handlers,
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                      "val_data_loader": "@validate#dataloader", "network": "@network", "inferer": "@validate#inferer",
                      "postprocessing": "@validate#postprocessing", "key_val_metric": "@validate#key_metric",
                      "additional_metrics": "@validate#additional_metrics",
                      "val_handlers": "@validate#handlers", "amp": False, "decollate": False,
                      "metric_cmp_fn": f"$SelectionMetric('{selection}').is_better"},
    }
    if config.training.early_stopping_patience > 0:
        # Attached to the evaluator; its trainer is set in `run` (a reference here would be circular).
        section["early_stop"] = {"_target_": "EarlyStopHandler", "patience": "@early_stopping_patience",
                                 "score_function": f"$lambda engine: SelectionMetric('{selection}').score("
                                                   f"engine.state.metrics['{selection}'])",
                                 "epoch_level": True}
        handlers.append("@validate#early_stop")
    return section


def train_config(config: Config, info: DatasetInfo, spec: NetworkSpec, dataset_dir: str | None) -> dict[str, Any]:
    """``train.yaml`` for a run's validated ``config`` and its data's ``info``.

    ``dataset_dir``: the default training data (``medvp:<name>`` for a demo file shipped with medvp; None when the
    run's data is not shipped: then the user passes ``--dataset_dir``).
    """
    loss = config.loss
    scheduler = _scheduler(config)
    document: dict[str, Any] = {
        "imports": ["$import os", "$import sys", "$import torch", "$import ignite", "$import monai",
                    "$from pipeline.bundle.training import read_splits",
                    "$from pipeline.engine.outputs import accuracy_output",
                    "$from pipeline.engine.outputs import auc_output",
                    "$from pipeline.engine.outputs import loss_output",
                    "$from pipeline.engine.resume import DataOrder",
                    "$from pipeline.kinds import SelectionMetric"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "rank": 0,
        "is_not_rank0": "$@rank > 0",
        "seed": config.training.seed,
        "deterministic": config.training.deterministic,
        "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
        "output_dir": "$os.path.join(@bundle_root, 'runs')",
        "dataset_dir": dataset_dir,
        "data": {key: value for key, value in config.data.model_dump(mode="json").items() if key in _DATA_KEYS},
        "datalists": "$read_splits(@data, @dataset_dir)",
        "task": info.task,
        "num_classes": info.num_classes,
        "spatial_shape": list(info.spatial_shape),
        "num_epochs": config.training.max_epochs,
        "val_interval": 1,
        "early_stopping_patience": config.training.early_stopping_patience,
        "batch_size": config.data.batch_size,
        "eval_batch_size": config.data.eval_batch_size,
        "num_workers": config.data.num_workers,
        "variance_weight": loss.variance_weight,
        "feature_sampling_ratio": loss.feature_sampling_ratio,
        "lambda_": loss.lambda_,
        "taps": loss.taps if isinstance(loss.taps, str) else list(loss.taps),
        "network_def": network_def(spec, in_bundle=True),
        "network": "$@network_def.to(@device)",
        "feature_tap": {"_target_": "pipeline.losses.FeatureTap", "_disabled_": "$@variance_weight == 0",
                        "network": "@network", "layers": "@taps"},
        "loss": {"_target_": "pipeline.losses.VariancePenalizedLoss", "variance_weight": "@variance_weight",
                 "feature_sampling_ratio": "@feature_sampling_ratio", "lambda_": "@lambda_", "task": "@task",
                 "feature_source": "@feature_tap", "seed": loss.seed if loss.seed is not None else "@seed",
                 "from_logits": loss.from_logits, "label_smoothing": loss.label_smoothing,
                 "variance_scope": loss.variance_scope},
        "optimizer": _optimizer(config),
    }
    if scheduler is not None:
        document["lr_scheduler"] = scheduler
    document.update({
        "preprocessing": _transforms(config, info),
        "train": _train_section(config),
        "validate": _validate_section(config),
        # Seeding first, then the network (its initial weights are the first draw, as in medvp's training).
        "initialize": ["$sys.path.insert(1, os.path.abspath(@bundle_root))",
                       "$monai.utils.set_determinism(seed=@seed)",
                       "$torch.use_deterministic_algorithms(@deterministic, warn_only=True)", "$@network"],
        "run": (["$@validate#early_stop.set_trainer(@train#trainer)"] if config.training.early_stopping_patience
                else []) + ["$@train#trainer.run()"],
        "finalize": ["$@feature_tap.remove() if @feature_tap is not None else None"],
    })
    return document


def evaluate_config() -> dict[str, Any]:
    """``evaluate.yaml``, on top of ``train.yaml``: the bundle's weights on a labelled split (default: the run's test
    split; ``--eval_split val``, or ``--dataset_dir`` with ``--data#source folder|csv|datalist``), metrics to
    ``output_dir/metrics.csv`` (MONAI's ``MetricsSaver``)."""
    return {
        "eval_split": "test",
        "ckpt_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "validate#dataset#data": "$@datalists[@eval_split]",
        "validate#handlers": [
            {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False, "output_transform": "$lambda output: None"},
            {"_target_": "MetricsSaver", "save_dir": "@output_dir", "metrics": ["val_auc", "val_accuracy", "val_loss"],
             "summary_ops": None},
        ],
        "initialize": ["$sys.path.insert(1, os.path.abspath(@bundle_root))",
                       "$monai.utils.set_determinism(seed=@seed)"],
        "run": ["$@validate#evaluator.run()"],
        "finalize": [],
    }


def multi_gpu_config() -> dict[str, Any]:
    """``multi_gpu_train.yaml``, on top of ``train.yaml``, for ``torchrun``: DistributedDataParallel, distributed
    samplers, handlers that write disabled on ranks other than 0 (NCCL on GPUs; Gloo on CPUs, for a check).

    Each process reads ``batch_size`` items per batch (a global batch of ``batch_size`` times the processes).
    """
    return {
        "device": "$torch.device(f\"cuda:{os.environ['LOCAL_RANK']}\" if torch.cuda.is_available() else 'cpu')",
        "rank": "$int(os.environ['RANK'])",
        "network": {"_target_": "torch.nn.parallel.DistributedDataParallel", "module": "$@network_def.to(@device)",
                    "device_ids": "$[@device] if @device.type == 'cuda' else None"},
        "feature_tap#network": "$@network.module",
        "train_sampler": {"_target_": "DistributedSampler", "dataset": "@train#dataset", "even_divisible": True,
                          "shuffle": True, "seed": "@seed"},
        "train#dataloader#sampler": "@train_sampler",
        "train#dataloader#shuffle": False,
        "val_sampler": {"_target_": "DistributedSampler", "dataset": "@validate#dataset", "even_divisible": False,
                        "shuffle": False},
        "validate#dataloader#sampler": "@val_sampler",
        "initialize": ["$import torch.distributed as dist",
                       "$dist.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')",
                       "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
                       # ignite creates its process group on first use (CheckpointSaver on rank 0 only): make it here,
                       # on every rank, or rank 0 waits for the others in that collective call while they train
                       "$import ignite.distributed as idist", "$idist.sync()",
                       "$sys.path.insert(1, os.path.abspath(@bundle_root))",
                       "$monai.utils.set_determinism(seed=@seed + @rank)", "$@network"],
        "finalize": ["$@feature_tap.remove() if @feature_tap is not None else None",
                     "$dist.is_initialized() and dist.destroy_process_group()"],
    }
