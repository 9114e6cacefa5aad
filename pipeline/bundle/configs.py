"""The bundle's MONAI configs: ``inference.yaml`` (MONAI components only) and ``train.yaml`` (retraining via medvp)."""

from __future__ import annotations

from typing import Any

from monai.networks import nets

from pipeline.config import PreprocessingConfig
from pipeline.networks import NetworkSpec, network_definition
from pipeline.transforms import preprocessing_steps

__all__ = ["LOGGING_CONF", "IMAGE_SUFFIXES_2D", "IMAGE_SUFFIXES_3D", "network_target", "network_def",
           "preprocessing_def", "postprocessing_def", "is_monai_network", "inference_config", "train_config"]

#: ``configs/logging.conf``, which ``monai.bundle run`` reads by default (as in the Model Zoo's bundles).
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

IMAGE_SUFFIXES_2D = [".png", ".jpg", ".jpeg"]
IMAGE_SUFFIXES_3D = [".nii", ".nii.gz"]


def network_target(factory: Any) -> str:
    """The ``_target_`` of a network class or function: MONAI's public ``monai.networks.nets`` name when it has one."""
    if getattr(nets, factory.__name__, None) is factory:
        return f"monai.networks.nets.{factory.__name__}"
    if factory.__module__.startswith("pipeline.networks"):
        return f"pipeline.networks.{factory.__name__}"
    return f"{factory.__module__}.{factory.__qualname__}"


def _lists_for_yaml(value: Any) -> Any:
    """Tuples as lists, so the YAML stays plain."""
    if isinstance(value, dict):
        return {key: _lists_for_yaml(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_lists_for_yaml(item) for item in value]
    return value


def network_def(spec: NetworkSpec) -> dict[str, Any]:
    """``network_def``: the same class and arguments :func:`pipeline.networks.build_network` uses."""
    factory, kwargs = network_definition(spec)
    return {"_target_": network_target(factory), **_lists_for_yaml(kwargs)}


def is_monai_network(network_def_: dict[str, Any]) -> bool:
    return network_def_["_target_"].startswith("monai.")


def preprocessing_def(settings: PreprocessingConfig, spatial_dims: int, numpy_order: bool = True) -> dict[str, Any]:
    """Read a file, then training's deterministic preprocessing (:func:`pipeline.transforms.preprocessing_steps`,
    the same definitions training instantiates).

    ``numpy_order``: the run trained on arrays stored in numpy (row, column) order (MedMNIST), so 2D images are
    read with ``PILReader(reverse_indexing=False)`` and 3D ones are NIfTI in that order. Otherwise the run read
    files through MONAI's readers in their default (column-first) order, and so does the bundle.
    """
    if numpy_order:
        reader: Any = {"_target_": "PILReader", "reverse_indexing": False} if spatial_dims == 2 else "NibabelReader"
        load: dict[str, Any] = {"_target_": "LoadImaged", "keys": "image", "reader": reader, "image_only": True,
                                "ensure_channel_first": True}
    else:
        load = {"_target_": "LoadImaged", "keys": "image", "image_only": True, "ensure_channel_first": True}
    transforms = [load, *preprocessing_steps(settings, spatial_dims), {"_target_": "EnsureTyped", "keys": "image"}]
    return {"_target_": "Compose", "transforms": transforms}


def postprocessing_def(task: str) -> dict[str, Any]:
    """Logits to one probability per class (binary: ``[1 - p, p]`` from the single logit)."""
    transforms: list[dict[str, Any]] = [{"_target_": "Activationsd", "keys": "pred", "sigmoid": task != "multiclass",
                                         "softmax": task == "multiclass"}]
    if task == "binary":
        transforms.append({"_target_": "Lambdad", "keys": "pred", "func": "$lambda p: torch.cat([1 - p, p])"})
    return {"_target_": "Compose", "transforms": transforms}


def inference_config(spec: NetworkSpec, settings: PreprocessingConfig, task: str, batch_size: int,
                     numpy_order: bool = True) -> dict[str, Any]:
    """A MONAI bundle inference config: every image file under ``dataset_dir`` to ``output_dir/predictions.csv``.

    Each CSV row is the file name and one probability per class (MONAI's ``ClassificationSaver``).
    """
    suffixes = IMAGE_SUFFIXES_2D if spec.spatial_dims == 2 else IMAGE_SUFFIXES_3D
    return {
        "imports": ["$import glob", "$import os", "$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "ckpt_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
        "dataset_dir": "$os.path.join(@bundle_root, 'sample_data')",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "image_suffixes": suffixes,
        "datalist": "$[{'image': path} for path in sorted(glob.glob(os.path.join(@dataset_dir, '**', '*'), "
                    "recursive=True)) if path.lower().endswith(tuple(@image_suffixes))]",
        "network_def": network_def(spec),
        "network": "$@network_def.to(@device)",
        "preprocessing": preprocessing_def(settings, spec.spatial_dims, numpy_order),
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": batch_size, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": postprocessing_def(task),
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "@ckpt_path", "load_dict": {"model": "@network"},
             "map_location": "@device"},
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "ClassificationSaver", "output_dir": "@output_dir", "filename": "predictions.csv",
             "batch_transform": "$lambda batch: [item['image'].meta for item in batch]",
             "output_transform": "$lambda output: [item['pred'] for item in output]"},
        ],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers"},
        "run": ["$@evaluator.run()"],
    }


def train_config(run_config: dict[str, Any], data_file_name: str) -> dict[str, Any]:
    """A MONAI bundle config that retrains the model with the variance-penalized loss through medvp.

    ``run_config`` is the run's resolved ``config.yaml``; its data path is replaced by ``@data_path`` (the
    training file is not shipped) and its output root by ``@output_root``. Run with
    ``python -m monai.bundle run --config_file configs/train.yaml --data_path /path/to/file.npz``
    (``--medvp#training#max_epochs 5`` overrides any setting).
    """
    medvp = _lists_for_yaml(run_config)
    medvp["data"] = {**medvp["data"], "path": "@data_path"}
    medvp["output"] = {**medvp.get("output", {}), "root": "@output_root"}
    return {
        "imports": ["$import os", "$import pathlib", "$from pipeline.config import parse_config",
                    "$from pipeline.engine import create_run_dir", "$from pipeline.engine import evaluate_run",
                    "$from pipeline.engine import train"],
        "bundle_root": ".",
        "data_path": "$os.path.join(@bundle_root, 'data', " + repr(data_file_name) + ")",
        "output_root": "$os.path.join(@bundle_root, 'runs')",
        "medvp": medvp,
        "config": "$parse_config(@medvp, 'configs/train.yaml', pathlib.Path(@bundle_root))",
        "run_dir": "$create_run_dir(@config)",
        "run": ["$train(@config, @run_dir)", "$[evaluate_run(@run_dir, split) for split in @config.evaluation.splits]"],
    }


