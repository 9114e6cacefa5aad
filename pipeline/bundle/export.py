"""Export a finished run as a MONAI bundle laid out like the Model Zoo's ``classification_template``.

::

    OUT_DIR/
      configs/metadata.json   MONAI's mandatory keys, network_data_format, metrics, medvp's mark
      configs/inference.yaml  MONAI components only: read, preprocess, infer, probabilities, CSV
      configs/train.yaml      retrain through medvp with the variance-penalized loss
      configs/logging.conf    the logging set-up monai.bundle run reads
      models/model.pt         the network's state dict
      models/model.ts         TorchScript, written by MONAI's ckpt_export
      docs/README.md          model card
      LICENSE
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import ignite
import monai
import numpy as np
import torch
import yaml
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

import pipeline
from pipeline.bundle.configs import LOGGING_CONF, inference_config, is_monai_network, network_def, train_config
from pipeline.bundle.metadata import (
    MARK_KEY,
    METADATA_FILE,
    SCHEMA_MD5,
    SCHEMA_URL,
    configs_digest,
    evaluation_metrics,
    network_data_format,
    schema_path,
)
from pipeline.bundle.readme import bundle_license, bundle_readme
from pipeline.engine.builders import network_spec
from pipeline.engine.rundir import RunDir
from pipeline.errors import DataError

__all__ = ["export_bundle", "verify_bundle"]

logger = logging.getLogger(__name__)

_COPYRIGHT_DATA = "training data: MedMNIST v2 (Yang et al., 2023), CC BY 4.0, and its source dataset"


def _required_packages(spatial_dims: int, uses_medvp: bool) -> dict[str, str]:
    packages = {"pytorch-ignite": ignite.__version__}
    if spatial_dims == 2:
        import PIL

        packages["pillow"] = PIL.__version__
    else:
        import nibabel

        packages["nibabel"] = nibabel.__version__
    if uses_medvp:
        packages["medvp"] = pipeline.__version__
    return packages


def export_bundle(run_dir: Path, out_dir: Path, version: str = "0.1.0", authors: str = "medvp",
                  modality: str = "unspecified", checkpoint: str | None = None) -> Path:
    """Write the bundle of ``run_dir`` into ``out_dir`` (which must be new or empty) and return ``out_dir``.

    Args:
        run_dir: a finished medvp run directory.
        out_dir: the bundle folder to create.
        version: the bundle's version (metadata ``version``).
        authors: metadata ``authors``.
        modality: imaging modality of the input (e.g. ``"X-ray"``), for ``network_data_format``.
        checkpoint: ``best`` or ``last``; default: the run's ``evaluation.checkpoint``.

    Raises:
        DataError: when ``run_dir`` is not a finished run or ``out_dir`` holds files.
    """
    run_dir, out_dir, run = Path(run_dir), Path(out_dir), RunDir(run_dir)
    config, run_summary = run.config(), run.summary()
    info, summary = run_summary.info, run_summary.model_dump(mode="json")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not an empty folder; choose a new bundle folder")
    which = checkpoint or config.evaluation.checkpoint
    input_shape = list(summary["input_shape"])
    spec = network_spec(config, info)
    run_config = run.config_document()
    data_name = Path(run_config["data"]["path"]).name

    for folder in ("configs", "models", "docs"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    torch.save(run.weights(which), out_dir / "models" / "model.pt")
    numpy_order = config.data.source == "medmnist"
    inference = inference_config(spec, config.preprocessing, info.task, config.data.eval_batch_size, numpy_order)
    for name, document in (("inference.yaml", inference), ("train.yaml", train_config(run_config, data_name))):
        (out_dir / "configs" / name).write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    (out_dir / "configs" / "logging.conf").write_text(LOGGING_CONF, encoding="utf-8")

    uses_medvp = not is_monai_network(network_def(spec))
    reports = {split: run.metrics(split) for split in ("val", "test") if run.metrics(split) is not None}
    classes = ", ".join(info.class_names)
    metadata = {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported by medvp {pipeline.__version__} from run '{run_dir.name}' "
                               f"({which} checkpoint, epoch {summary['best_epoch'] if which == 'best' else 'last'})"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": _required_packages(info.spatial_dims, uses_medvp),
        "supported_apps": {},
        "name": f"{config.output.name or run_dir.name} ({config.model.name})",
        "task": f"{info.task} classification of {info.spatial_dims}D images into {classes}",
        "description": f"A {config.model.name} classifier ({info.spatial_dims}D, {info.in_channels} channel(s), "
                       f"{len(info.class_names)} classes: {classes}) trained from scratch by medvp with the "
                       "variance-penalized loss" + (". The network class is medvp's SimpleCNN: running this "
                                                    "bundle needs medvp installed." if uses_medvp else "."),
        "authors": authors,
        "copyright": f"Copyright (c) {authors}; {_COPYRIGHT_DATA}",
        "data_source": f"{data_name} (MedMNIST v2 format, official train/val/test splits)",
        "data_type": "png" if info.spatial_dims == 2 else "nibabel",
        "image_classes": f"{info.in_channels} channel(s), intensities {list(config.preprocessing.source_range)} "
                         f"mapped to {list(config.preprocessing.target_range)}",
        "label_classes": f"{info.task}: " + ", ".join(f"{i} = {name}" for i, name in enumerate(info.class_names)),
        "pred_classes": "one probability per class: " + classes,
        "eval_metrics": evaluation_metrics(summary, reports),
        "intended_use": "Research and demonstration only; not a medical device and not for clinical decisions.",
        "references": ["Yang J. et al., MedMNIST v2: a large-scale lightweight benchmark for 2D and 3D biomedical "
                       "image classification, Scientific Data 10:41 (2023)"],
        "network_data_format": network_data_format(info.task, info.class_names, input_shape,
                                                   list(config.preprocessing.target_range), modality),
        MARK_KEY: {
            "format": 1,
            "version": pipeline.__version__,
            "configs_sha256": configs_digest(out_dir / "configs"),
            "network": {"name": spec.name, "spatial_dims": spec.spatial_dims, "in_channels": spec.in_channels,
                        "num_outputs": spec.num_outputs, "small_input": spec.small_input, "dropout": spec.dropout,
                        "options": spec.options},
            "preprocessing": config.preprocessing.model_dump(mode="json"),
            "numpy_order": numpy_order,
            "task": info.task,
            "class_names": info.class_names,
            "input_shape": input_shape,
            "python": platform.python_version(),
        },
    }
    meta_file = out_dir / "configs" / METADATA_FILE
    meta_file.write_text(json.dumps(metadata, indent=2), encoding="utf-8")

    ckpt_export(net_id="network_def", filepath=str(out_dir / "models" / "model.ts"),
                ckpt_file=str(out_dir / "models" / "model.pt"), meta_file=str(meta_file),
                config_file=str(out_dir / "configs" / "inference.yaml"), bundle_root=str(out_dir))
    (out_dir / "docs" / "README.md").write_text(bundle_readme(metadata["name"], metadata, run_config, summary),
                                                encoding="utf-8")
    (out_dir / "LICENSE").write_text(bundle_license(metadata["copyright"]), encoding="utf-8")
    logger.info("exported %s (%s checkpoint) to the bundle %s", run_dir, which, out_dir)
    return out_dir


def verify_bundle(bundle_dir: Path) -> None:
    """Run MONAI's ``verify_metadata`` (against the shipped schema, no download) and ``verify_net_in_out``.

    Raises:
        ValueError: from MONAI, when the metadata breaks the schema or the network's outputs contradict it.
    """
    meta_file = str(bundle_dir / "configs" / METADATA_FILE)
    verify_metadata(meta_file=meta_file, filepath=str(schema_path()), hash_val=SCHEMA_MD5)
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=str(bundle_dir / "configs" /
                      "inference.yaml"), device="cpu")
