"""A bundle's ``configs/metadata.json``: MONAI's mandatory keys, the network's data format, and medvp's mark.

medvp marks the bundles it writes with a ``medvp`` entry holding what its own predictor needs (network
spec, preprocessing, classes) and a SHA-256 digest of every file in ``configs/`` but the metadata. A
bundle whose mark is missing or whose configs no longer match the digest is treated as foreign:
its configs can run arbitrary Python through ``_target_``, so ``medvp predict`` asks for ``--trust-bundle``.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from pipeline.config import PreprocessingConfig
from pipeline.errors import DataError
from pipeline.kinds import Task

__all__ = ["SCHEMA_URL", "SCHEMA_MD5", "MARK_KEY", "METADATA_FILE", "schema_path", "configs_digest",
           "read_metadata", "is_medvp_bundle", "medvp_mark", "evaluation_metrics", "network_data_format"]

#: The schema the Model Zoo's bundles name; a verbatim copy ships in ``pipeline/bundle/schema/``.
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"
MARK_KEY = "medvp"
METADATA_FILE = "metadata.json"


def schema_path() -> Path:
    """The shipped copy of MONAI's bundle metadata schema, for ``verify_metadata --filepath`` (no download)."""
    return Path(str(resources.files("pipeline.bundle") / "schema" / "meta_schema_20240725.json"))


def configs_digest(configs_dir: Path) -> dict[str, str]:
    """SHA-256 of each file in ``configs_dir`` except the metadata, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(configs_dir.iterdir()) if path.is_file() and path.name != METADATA_FILE}


def read_metadata(bundle_dir: Path) -> dict:
    """``configs/metadata.json`` of a bundle.

    Raises:
        DataError: when the file is missing or not a JSON object.
    """
    path = bundle_dir / "configs" / METADATA_FILE
    if not path.is_file():
        raise DataError(f"{bundle_dir} is neither a medvp run directory (config.yaml) nor a MONAI bundle "
                        f"(configs/{METADATA_FILE})")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise DataError(f"{path}: expected a JSON object")
    return metadata


def is_medvp_bundle(bundle_dir: Path, metadata: dict) -> bool:
    """True when medvp wrote the bundle and none of its configs changed since."""
    mark = metadata.get(MARK_KEY)
    if not isinstance(mark, dict) or not isinstance(mark.get("configs_sha256"), dict):
        return False
    return mark["configs_sha256"] == configs_digest(bundle_dir / "configs")


_MARK_FIELDS = {"network": dict, "preprocessing": dict, "task": str, "class_names": list, "input_shape": list}
_NETWORK_FIELDS = {"name", "spatial_dims", "in_channels", "num_outputs", "small_input", "dropout", "options"}


def medvp_mark(bundle_dir: Path, metadata: dict) -> dict:
    """medvp's entry of a bundle's metadata, checked for what ``medvp predict`` reads from it.

    Raises:
        DataError: one line naming the entry that is missing or of the wrong kind.
    """
    mark = metadata.get(MARK_KEY)
    where = f"{bundle_dir / 'configs' / METADATA_FILE}: {MARK_KEY}"
    if not isinstance(mark, dict):
        raise DataError(f"{where}: expected an object (medvp's description of the model)")
    for key, kind in _MARK_FIELDS.items():
        if not isinstance(mark.get(key), kind):
            raise DataError(f"{where}.{key}: missing or not a {kind.__name__}; re-export the bundle with medvp")
    unknown = set(mark["network"]) ^ _NETWORK_FIELDS
    if unknown:
        raise DataError(f"{where}.network: expected the keys {sorted(_NETWORK_FIELDS)}, "
                        f"differs in {sorted(unknown)}; re-export the bundle with medvp")
    try:
        PreprocessingConfig.model_validate(mark["preprocessing"])
    except ValidationError as error:
        problem = error.errors()[0]
        raise DataError(f"{where}.preprocessing.{'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None
    return mark


def _metric_values(report: dict, split: str) -> dict[str, float]:
    """``{split}_{metric}`` of a ``metrics_<split>.json`` report (point estimates only)."""
    values = {}
    for name, metric in report.get("metrics", {}).items():
        value = metric.get("value") if isinstance(metric, dict) else None
        if isinstance(value, int | float):
            values[f"{split}_{name}"] = round(float(value), 6)
    return values


def evaluation_metrics(summary: dict, reports: dict[str, dict]) -> dict[str, float]:
    """The run's validation and test figures: best validation AUC during training, then each evaluated split."""
    metrics = {"val_auc_best_epoch": round(float(summary["best_val_auc"]), 6)}
    for split, report in reports.items():
        metrics.update(_metric_values(report, split))
    return metrics


_ACTIVATIONS = {"binary": "a sigmoid and writes [1 - p, p]", "multiclass": "a softmax", "multilabel": "a sigmoid"}


def network_data_format(task: str, class_names: list[str], input_shape: list[int], value_range: list[float],
                        modality: str) -> dict:
    """Inputs and outputs of the network as MONAI's schema describes them (``pred``: logits, one per output)."""
    channels, spatial = input_shape[0], input_shape[1:]
    logit_names = [class_names[1]] if task == Task.BINARY else class_names
    return {
        "inputs": {"image": {
            "type": "image", "format": "magnitude", "modality": modality, "num_channels": channels,
            "spatial_shape": spatial, "dtype": "float32", "value_range": value_range, "is_patch_data": False,
            "channel_def": {"0": "grey"} if channels == 1 else {str(i): c for i, c in enumerate("RGB"[:channels])},
        }},
        "outputs": {"pred": {
            "type": "logits", "format": "classes", "num_channels": len(logit_names), "spatial_shape": [1],
            "dtype": "float32", "value_range": [], "is_onehot": False,
            "channel_def": {str(index): name for index, name in enumerate(logit_names)},
            "description": f"one logit per channel; the postprocessing applies {_ACTIVATIONS[task]}",
        }},
        "post_processed_outputs": {"pred": {
            "type": "probabilities", "format": "classes", "num_channels": len(class_names), "spatial_shape": [1],
            "dtype": "float32", "value_range": [0, 1], "is_onehot": False,
            "channel_def": {str(index): name for index, name in enumerate(class_names)},
        }},
    }
