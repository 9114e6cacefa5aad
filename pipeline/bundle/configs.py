"""The bundle's MONAI configs, laid out like the Model Zoo's ``classification_template``.

``inference.yaml`` uses MONAI components only (a medvp network class ships in the bundle's ``scripts/``).
``train.yaml`` is the run's training as MONAI components: ``network_def``, medvp's ``FeatureTap`` and
``VariancePenalizedLoss``, the optimizer and schedule, datasets and loaders over the items medvp's reader gives,
``SupervisedTrainer`` and ``SupervisedEvaluator`` with MONAI's handlers. ``evaluate.yaml`` and
``multi_gpu_train.yaml`` are overrides on top of ``train.yaml``, as in the template.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any

from monai.networks import nets

from pipeline.config import PreprocessingConfig
from pipeline.data.dicom import DicomOptions
from pipeline.data.loading import item_transform_defs
from pipeline.kinds import Task
from pipeline.networks import NetworkSpec, network_definition
from pipeline.transforms import preprocessing_steps

__all__ = ["LOGGING_CONF", "IMAGE_SUFFIXES_2D", "IMAGE_SUFFIXES_3D", "SCRIPTS_PACKAGE", "network_target",
           "network_def", "preprocessing_def", "postprocessing_def", "is_monai_network", "inference_config"]

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
#: the bundle's package of network code (``scripts/``, as Model Zoo bundles ship custom networks)
SCRIPTS_PACKAGE = "scripts"


def network_target(factory: Any, in_bundle: bool = False) -> str:
    """The ``_target_`` of a network class or function: MONAI's public ``monai.networks.nets`` name when it has one;
    for a medvp network, ``scripts.<module>.<class>`` inside a bundle (its source ships there), else medvp's name."""
    if getattr(nets, factory.__name__, None) is factory:
        return f"monai.networks.nets.{factory.__name__}"
    if factory.__module__.startswith("pipeline.networks"):
        if in_bundle:
            return f"{SCRIPTS_PACKAGE}.{factory.__module__.rpartition('.')[2]}.{factory.__qualname__}"
        return f"pipeline.networks.{factory.__name__}"
    return f"{factory.__module__}.{factory.__qualname__}"


def _lists_for_yaml(value: Any) -> Any:
    """Tuples as lists, so the YAML stays plain."""
    if isinstance(value, dict):
        return {key: _lists_for_yaml(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_lists_for_yaml(item) for item in value]
    return value


def network_def(spec: NetworkSpec, in_bundle: bool = False) -> dict[str, Any]:
    """``network_def``: the same class and arguments :func:`pipeline.networks.build_network` uses."""
    factory, kwargs = network_definition(spec)
    return {"_target_": network_target(factory, in_bundle), **_lists_for_yaml(kwargs)}


def is_monai_network(network_def_: dict[str, Any]) -> bool:
    return network_def_["_target_"].startswith("monai.")


def network_source(spec: NetworkSpec) -> tuple[str, str] | None:
    """``(module file name, source text)`` of a medvp network class, to ship in the bundle's ``scripts/``; None for
    MONAI's networks. The module must import only torch and MONAI (a bundle's inference needs nothing else)."""
    factory, _ = network_definition(spec)
    if not factory.__module__.startswith("pipeline.networks"):
        return None
    module = sys.modules[factory.__module__]
    source = inspect.getsource(module)
    if re.search(r"^\s*(from|import)\s+pipeline\b", source, re.MULTILINE):
        raise ValueError(f"{factory.__module__} imports medvp; a bundle's scripts/ must need MONAI alone")
    return f"{factory.__module__.rpartition('.')[2]}.py", source


def preprocessing_def(settings: PreprocessingConfig, spatial_dims: int,
                      dicom: DicomOptions | None = None) -> dict[str, Any]:
    """Read a file, then training's deterministic preprocessing (:func:`pipeline.transforms.preprocessing_steps`,
    the same definitions training instantiates).

    Every source is in MONAI's axis order (``docs/data.md``), so for a run on MedMNIST arrays (``dicom`` None) MONAI's
    ``LoadImaged`` with its default readers reads PNG/JPEG and NIfTI as training saw the arrays, and the bundle needs
    MONAI alone. A run that read files (``dicom``: its DICOM rules) gets training's own item path
    (:func:`pipeline.data.loading.item_transform_defs`: medvp's reader for DICOM series folders, the Modality LUT,
    colour, enhanced multi-frame, and the geometry check), so the bundle reads as training did and needs medvp.
    """
    if dicom is not None:
        return {"_target_": "Compose", "transforms": item_transform_defs(settings, spatial_dims, dicom)}
    load = {"_target_": "LoadImaged", "keys": "image", "image_only": True, "ensure_channel_first": True}
    transforms = [load, *preprocessing_steps(settings, spatial_dims), {"_target_": "EnsureTyped", "keys": "image"}]
    return {"_target_": "Compose", "transforms": transforms}


def postprocessing_def(task: str) -> dict[str, Any]:
    """Logits to one probability per class (binary: ``[1 - p, p]`` from the single logit)."""
    transforms: list[dict[str, Any]] = [{"_target_": "Activationsd", "keys": "pred", "sigmoid": task != Task.MULTICLASS,
                                         "softmax": task == Task.MULTICLASS}]
    if task == Task.BINARY:
        transforms.append({"_target_": "Lambdad", "keys": "pred", "func": "$lambda p: torch.cat([1 - p, p])"})
    return {"_target_": "Compose", "transforms": transforms}


def inference_config(spec: NetworkSpec, settings: PreprocessingConfig, task: str, batch_size: int,
                     dicom: DicomOptions | None = None, suffixes: list[str] | None = None) -> dict[str, Any]:
    """A MONAI bundle inference config: every image file under ``dataset_dir`` (default: the bundle's
    ``sample_data/``) to ``output_dir/predictions.csv``; with no image file there it stops with one line.

    Each CSV row is the file name and one probability per class (MONAI's ``ClassificationSaver``).
    ``suffixes``: the file kinds to read (default: PNG/JPEG for 2D, NIfTI for 3D).
    """
    suffixes = suffixes or (IMAGE_SUFFIXES_2D if spec.spatial_dims == 2 else IMAGE_SUFFIXES_3D)
    return {
        "imports": ["$import glob", "$import os", "$import sys", "$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "ckpt_path": "$os.path.join(@bundle_root, 'models', 'model.pt')",
        "dataset_dir": "$os.path.join(@bundle_root, 'sample_data')",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "image_suffixes": suffixes,
        "datalist": "$[{'image': path} for path in sorted(glob.glob(os.path.join(@dataset_dir, '**', '*'), "
                    "recursive=True)) if path.lower().endswith(tuple(@image_suffixes))]",
        "network_def": network_def(spec, in_bundle=True),
        "network": "$@network_def.to(@device)",
        "preprocessing": preprocessing_def(settings, spec.spatial_dims, dicom),
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
        "initialize": ["$sys.exit('inference: no ' + '/'.join(@image_suffixes) + ' file under dataset_dir = ' + "
                       "str(@dataset_dir) + '; pass --dataset_dir FOLDER') if not @datalist else None"],
        "run": ["$@evaluator.run()"],
    }


