"""Export a finished run as a MONAI bundle laid out like the Model Zoo's ``classification_template``.

::

    OUT_DIR/
      configs/metadata.json          MONAI's mandatory keys, network_data_format, metrics, medvp's mark
      configs/inference.yaml         MONAI components only: read, preprocess, infer, probabilities, CSV
      configs/train.yaml             the run's training as MONAI components (SupervisedTrainer, handlers, medvp loss)
      configs/evaluate.yaml          on top of train.yaml: metrics of the weights on a labelled split
      configs/multi_gpu_train.yaml   on top of train.yaml: torchrun, DistributedDataParallel
      configs/logging.conf           the logging set-up monai.bundle run reads
      models/model.pt                the network's state dict
      models/model.ts                TorchScript, written by MONAI's ckpt_export
      scripts/                       a medvp network's source (SimpleCNN), so inference needs MONAI alone
      sample_data/                   a few test-split inputs, so a bare inference run writes predictions
      docs/README.md                 model card
      LICENSE
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import platform
import sys
from collections.abc import Iterator
from pathlib import Path

import ignite
import monai
import numpy as np
import torch
import yaml
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

import pipeline
from pipeline.bundle.configs import (
    LOGGING_CONF,
    SCRIPTS_PACKAGE,
    inference_config,
    network_source,
)
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
from pipeline.bundle.readme import bundle_license, bundle_readme, data_description, preprocessing_description
from pipeline.bundle.samples import dicom_modality, inference_suffixes, run_file_kinds, write_samples
from pipeline.bundle.train_configs import evaluate_config, multi_gpu_config, train_config
from pipeline.config import Config
from pipeline.data.loading import AXIS_ORDER
from pipeline.demo_data import DEMO_FILES, PACKAGED_PREFIX, packaged_file
from pipeline.engine.builders import network_spec
from pipeline.engine.data_setup import dicom_options
from pipeline.engine.rundir import RunDir
from pipeline.errors import DataError, writing

__all__ = ["export_bundle", "verify_bundle"]

logger = logging.getLogger(__name__)

_MEDMNIST_COPYRIGHT = "training data: MedMNIST v2 (Yang et al., 2023), CC BY 4.0, and its source dataset"
_MEDMNIST_REFERENCE = ("Yang J. et al., MedMNIST v2: a large-scale lightweight benchmark for 2D and 3D biomedical "
                       "image classification, Scientific Data 10:41 (2023)")
_DATA_TYPES = {".dcm": "dicom", ".nii": "nibabel", ".nii.gz": "nibabel", ".png": "png", ".jpg": "jpeg",
               ".jpeg": "jpeg"}


def _required_packages(spatial_dims: int, file_kinds: list[str]) -> dict[str, str]:
    """What inference needs besides MONAI, torch and numpy: ignite (the evaluator) and the image readers."""
    packages = {"pytorch-ignite": ignite.__version__}
    if spatial_dims == 2:
        import PIL

        packages["pillow"] = PIL.__version__
    if spatial_dims == 3 or any(kind.startswith(".nii") for kind in file_kinds):
        import nibabel

        packages["nibabel"] = nibabel.__version__
    if ".dcm" in file_kinds:
        import pydicom

        packages["pydicom"] = pydicom.__version__
    if file_kinds:  # a run on files reads them through medvp's reader (inference.yaml's first transform)
        packages["medvp"] = pipeline.__version__
    return packages


def _shipped_name(config: Config) -> str | None:
    """``medvp:<name>`` when the run trained on a demo file shipped with medvp, else None (data not shipped)."""
    for name in DEMO_FILES:
        if config.data.path.resolve() == packaged_file(name).resolve():
            return PACKAGED_PREFIX + name
    return None


@contextlib.contextmanager
def _quiet_monai(quiet: bool) -> Iterator[None]:
    """MONAI's bundle tools log every argument at INFO (about 30 lines per export); keep them at WARNING."""
    loggers = [logging.getLogger(name) for name in ("monai", "monai.bundle", "monai.bundle.scripts",
                                                    "monai.bundle.config_parser", "monai.apps", "monai.apps.utils")]
    levels = [item.level for item in loggers]
    if quiet:
        for item in loggers:
            item.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for item, level in zip(loggers, levels, strict=True):
            item.setLevel(level)


@contextlib.contextmanager
def _importable(bundle_dir: Path) -> Iterator[None]:
    """The bundle folder on ``sys.path`` (its ``scripts`` package), as ``monai.bundle run`` puts it."""
    sys.path.insert(0, str(bundle_dir))
    try:
        yield
    finally:
        sys.path.remove(str(bundle_dir))
        for name in [name for name in sys.modules if name == SCRIPTS_PACKAGE or
                     name.startswith(SCRIPTS_PACKAGE + ".")]:
            del sys.modules[name]  # another bundle's scripts/ may be imported next


def _write_configs(out_dir: Path, documents: dict[str, dict]) -> None:
    for name, document in documents.items():
        (out_dir / "configs" / name).write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    (out_dir / "configs" / "logging.conf").write_text(LOGGING_CONF, encoding="utf-8")


def _write_scripts(out_dir: Path, spec) -> bool:
    """Ship a medvp network's source in ``scripts/``; False for MONAI networks (nothing to ship)."""
    source = network_source(spec)
    if source is None:
        return False
    (out_dir / SCRIPTS_PACKAGE).mkdir()
    (out_dir / SCRIPTS_PACKAGE / "__init__.py").write_text(f'"""Network code of this bundle (from medvp '
                                                           f'{pipeline.__version__})."""\n', encoding="utf-8")
    (out_dir / SCRIPTS_PACKAGE / source[0]).write_text(source[1], encoding="utf-8")
    return True


def export_bundle(run_dir: Path, out_dir: Path, version: str = "0.1.0", authors: str = "medvp",
                  modality: str = "unspecified", checkpoint: str | None = None, quiet: bool = True) -> Path:
    """Write the bundle of ``run_dir`` into ``out_dir`` (which must be new or empty) and return ``out_dir``.

    Args:
        run_dir: a finished medvp run directory.
        out_dir: the bundle folder to create.
        version: the bundle's version (metadata ``version``).
        authors: metadata ``authors``.
        modality: imaging modality of the input (e.g. ``"X-ray"``), for ``network_data_format``; when
            ``"unspecified"``, a DICOM run's Modality tag.
        checkpoint: ``best`` or ``last``; default: the run's ``evaluation.checkpoint``.
        quiet: keep MONAI's bundle tools from logging their arguments at INFO.

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
    run_config = config.model_dump(mode="json")
    file_kinds = run_file_kinds(run, config)
    suffixes = inference_suffixes(info.spatial_dims, file_kinds)
    dataset_dir = _shipped_name(config)
    # files: read as training read them (medvp's reader); MedMNIST arrays: MONAI's readers alone
    run_dicom = dicom_options(config)
    dicom = run_dicom if config.data.source != "medmnist" else None
    if modality == "unspecified" and ".dcm" in file_kinds:
        modality = dicom_modality(run, config) or modality

    with writing(out_dir, "the bundle"):  # a full disk: one line; the run itself is only read
        for folder in ("configs", "models", "docs"):
            (out_dir / folder).mkdir(parents=True, exist_ok=True)
        torch.save(run.weights(which), out_dir / "models" / "model.pt")
        uses_scripts = _write_scripts(out_dir, spec)
        samples = write_samples(run, config, out_dir)
        _write_configs(out_dir, {
            "inference.yaml": inference_config(spec, config.preprocessing, info.task, config.data.eval_batch_size,
                                               dicom, suffixes),
            "train.yaml": train_config(config, info, spec, dataset_dir),
            "evaluate.yaml": evaluate_config(),
            "multi_gpu_train.yaml": multi_gpu_config(),
        })
        metadata = _metadata(run, config, summary, info, which, version, authors, modality, input_shape,
                             file_kinds, dataset_dir)
        metadata[MARK_KEY] = {
            "format": 1,
            "version": pipeline.__version__,
            "configs_sha256": configs_digest(out_dir / "configs"),
            "network": {"name": spec.name, "spatial_dims": spec.spatial_dims, "in_channels": spec.in_channels,
                        "num_outputs": spec.num_outputs, "small_input": spec.small_input, "dropout": spec.dropout,
                        "options": spec.options},
            "preprocessing": config.preprocessing.model_dump(mode="json"),
            "axis_order": AXIS_ORDER,
            "dicom": dataclasses.asdict(run_dicom),
            "task": info.task,
            "class_names": info.class_names,
            "input_shape": input_shape,
            "python": platform.python_version(),
        }
        meta_file = out_dir / "configs" / METADATA_FILE
        meta_file.write_text(json.dumps(metadata, indent=2), encoding="utf-8")

        with _quiet_monai(quiet), _importable(out_dir):
            ckpt_export(net_id="network_def", filepath=str(out_dir / "models" / "model.ts"),
                        ckpt_file=str(out_dir / "models" / "model.pt"), meta_file=str(meta_file),
                        config_file=str(out_dir / "configs" / "inference.yaml"), bundle_root=str(out_dir))
        (out_dir / "docs" / "README.md").write_text(
            bundle_readme(metadata["name"], metadata, run_config, summary, suffixes, bool(samples), dataset_dir),
            encoding="utf-8")
        (out_dir / "LICENSE").write_text(bundle_license(metadata["copyright"]), encoding="utf-8")
    logger.info("exported %s (%s checkpoint) to the bundle %s%s", run_dir, which, out_dir,
                " (SimpleCNN's code in scripts/)" if uses_scripts else "")
    return out_dir


def _metadata(run: RunDir, config: Config, summary: dict, info, which: str, version: str, authors: str,
              modality: str, input_shape: list[int], file_kinds: list[str], dataset_dir: str | None) -> dict:
    """MONAI's metadata keys, written from the run: data source, preprocessing, metrics, penalty settings."""
    reports = {split: run.metrics(split) for split in ("val", "test") if run.metrics(split) is not None}
    classes = ", ".join(info.class_names)
    medmnist = config.data.source == "medmnist"
    loss = config.loss
    data = {**config.data.model_dump(mode="json"), "path": str(config.data.path)}
    return {
        "schema": SCHEMA_URL,
        "version": version,
        "changelog": {version: f"exported by medvp {pipeline.__version__} from run '{run.path.name}' "
                               f"({which} checkpoint, epoch {summary['best_epoch'] if which == 'best' else 'last'})"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": _required_packages(info.spatial_dims, file_kinds),
        # train.yaml and evaluate.yaml read data and compute the loss through medvp. Not "optional_packages_version":
        # MONAI 1.6 renames that key to required_packages_version when it parses the metadata (DEPRECATED_ID_MAPPING)
        "training_packages_version": {"medvp": pipeline.__version__},
        "supported_apps": {},
        "name": f"{config.output.name or run.path.name} ({config.model.name})",
        "task": f"{info.task} classification of {info.spatial_dims}D images into {classes}",
        "description": f"A {config.model.name} classifier ({info.spatial_dims}D, {info.in_channels} channel(s), "
                       f"{len(info.class_names)} classes: {classes}) trained from scratch by medvp with the "
                       f"variance-penalized loss (variance_weight {loss.variance_weight}, feature_sampling_ratio "
                       f"{loss.feature_sampling_ratio}, lambda_ {loss.lambda_}, taps {loss.taps}).",
        "authors": authors,
        "copyright": f"Copyright (c) {authors}" + (f"; {_MEDMNIST_COPYRIGHT}" if medmnist else
                                                    "; training data: see its own licence"),
        "data_source": data_description(data, file_kinds, bool(summary.get("split_made_here")), bool(dataset_dir)),
        "data_type": ("png" if info.spatial_dims == 2 else "nibabel") if medmnist else
                     ", ".join(sorted({_DATA_TYPES.get(kind, kind.lstrip(".")) for kind in file_kinds})),
        "image_classes": f"{info.in_channels} channel(s); " + preprocessing_description(
            config.preprocessing.model_dump(mode="json"), info.spatial_dims),
        "label_classes": f"{info.task}: " + ", ".join(f"{i} = {name}" for i, name in enumerate(info.class_names)),
        "pred_classes": "one probability per class: " + classes,
        "eval_metrics": evaluation_metrics(summary, reports),
        "intended_use": "Research and demonstration only; not a medical device and not for clinical decisions.",
        "references": [_MEDMNIST_REFERENCE] if medmnist else [],
        "network_data_format": network_data_format(info.task, info.class_names, input_shape,
                                                   list(config.preprocessing.target_range), modality),
    }


def verify_bundle(bundle_dir: Path, quiet: bool = True) -> None:
    """Run MONAI's ``verify_metadata`` (against the shipped schema, no download) and ``verify_net_in_out``.

    Raises:
        ValueError: from MONAI, when the metadata breaks the schema or the network's outputs contradict it.
    """
    meta_file = str(bundle_dir / "configs" / METADATA_FILE)
    with _quiet_monai(quiet), _importable(bundle_dir):
        verify_metadata(meta_file=meta_file, filepath=str(schema_path()), hash_val=SCHEMA_MD5)
        verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=str(bundle_dir / "configs" /
                          "inference.yaml"), device="cpu")
