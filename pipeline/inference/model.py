"""The model ``medvp predict`` runs: from a run directory, a bundle medvp wrote, or (trusted) any MONAI bundle."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monai.bundle import ConfigParser
from torch import nn

from pipeline.bundle.metadata import is_medvp_bundle, medvp_mark, read_metadata
from pipeline.config import PreprocessingConfig
from pipeline.data.dicom import DEFAULT_DICOM, DicomOptions
from pipeline.data.loading import item_transforms, legacy_numpy_axes
from pipeline.engine.builders import make_network
from pipeline.engine.data_setup import dicom_options
from pipeline.engine.rundir import RunDir, load_weights
from pipeline.errors import DataError
from pipeline.kinds import Task
from pipeline.networks import NetworkSpec, build_network

__all__ = ["LoadedModel", "load_model"]

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A network with its weights, the preprocessing it was trained with, and what its outputs mean.

    ``input_shape`` is the preprocessed training input ``(C, *spatial)``; ``preprocessing`` takes
    ``{"image": ...}`` dictionaries: for medvp models (``reads_files`` False) the images
    :func:`~pipeline.inference.collect_inputs` read, through training's item path
    (:func:`pipeline.data.loading.item_transforms`); file paths for a foreign bundle's own preprocessing
    (``reads_files`` True). ``dicom``: the run's DICOM options, for reading inputs as training read them.
    """

    network: nn.Module
    task: str
    class_names: list[str]
    preprocessing: Callable[[dict], dict]
    input_shape: tuple[int, ...]
    resizes: bool
    reads_files: bool
    source: str
    dicom: DicomOptions = DEFAULT_DICOM

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1


def _from_run(run_dir: Path, which: str | None) -> LoadedModel:
    run = RunDir(run_dir)
    config, summary = run.config(), run.summary()
    info, input_shape = summary.info, tuple(summary.input_shape)
    network = make_network(config, info, input_shape)
    run.load_weights(network, which or config.evaluation.checkpoint)
    legacy = legacy_numpy_axes(summary.axis_order, config.data.source == "medmnist")
    dicom = dicom_options(config)
    return LoadedModel(network=network, task=info.task, class_names=info.class_names,
                       preprocessing=item_transforms(config.preprocessing, info.spatial_dims, dicom, legacy,
                                                     ensure_plain=False),
                       input_shape=input_shape, resizes=config.preprocessing.spatial_size is not None,
                       reads_files=False, source=str(run_dir), dicom=dicom)


def _from_medvp_bundle(bundle_dir: Path, mark: dict) -> LoadedModel:
    spec = NetworkSpec(**mark["network"])
    preprocessing = PreprocessingConfig(**mark["preprocessing"])
    network = build_network(spec)
    load_weights(network, bundle_dir / "models" / "model.pt")
    network.eval()
    # bundles written before the axis order was recorded say numpy_order (true: trained on MedMNIST arrays)
    legacy = mark.get("axis_order") is None and bool(mark.get("numpy_order", True))
    dicom = DicomOptions(**mark["dicom"]) if isinstance(mark.get("dicom"), dict) else DEFAULT_DICOM
    return LoadedModel(network=network, task=mark["task"], class_names=list(mark["class_names"]),
                       preprocessing=item_transforms(preprocessing, spec.spatial_dims, dicom, legacy,
                                                     ensure_plain=False),
                       input_shape=tuple(mark["input_shape"]), resizes=preprocessing.spatial_size is not None,
                       reads_files=False, source=str(bundle_dir), dicom=dicom)


def _inference_config_file(bundle_dir: Path) -> Path:
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (bundle_dir / "configs" / name).is_file():
            return bundle_dir / "configs" / name
    raise DataError(f"{bundle_dir}: no configs/inference.json or configs/inference.yaml")


def _from_foreign_bundle(bundle_dir: Path, metadata: dict) -> LoadedModel:
    """A bundle's own ``network_def`` and ``preprocessing`` (they read image files themselves)."""
    parser = ConfigParser()
    parser.read_config(str(_inference_config_file(bundle_dir)))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_dir)
    try:
        network = parser.get_parsed_content("network_def")
        preprocessing = parser.get_parsed_content("preprocessing")
    except (KeyError, ValueError) as error:
        raise DataError(f"{bundle_dir}: the inference config needs network_def and preprocessing ({error})") from None
    load_weights(network, bundle_dir / "models" / "model.pt")
    network.eval()
    data_format = metadata.get("network_data_format", {})
    image = data_format.get("inputs", {}).get("image", {})
    pred = data_format.get("outputs", {}).get("pred", {})
    outputs = int(pred.get("num_channels", 1))
    channel_def = pred.get("channel_def", {})
    names = [str(channel_def.get(str(index), index)) for index in range(outputs)]
    task = "binary" if outputs == 1 else "multiclass"
    class_names = ["negative", names[0]] if task == Task.BINARY else names
    input_shape = (int(image.get("num_channels", 1)), *image.get("spatial_shape", []))
    return LoadedModel(network=network, task=task, class_names=class_names, preprocessing=preprocessing,
                       input_shape=input_shape, resizes=True, reads_files=True, source=str(bundle_dir))


def load_model(path: Path, trust_bundle: bool = False, checkpoint: str | None = None) -> LoadedModel:
    """Load a run directory (``checkpoint``: best or last) or a bundle, on the CPU, in evaluation mode.

    Checkpoints load with ``torch.load(weights_only=True)``. A bundle medvp did not write (or whose configs
    changed since) is only loaded with ``trust_bundle``: its configs can run arbitrary Python code.

    Raises:
        DataError: when ``path`` is neither, or an untrusted foreign bundle.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such run directory or bundle")
    if RunDir(path).is_run():
        model = _from_run(path, checkpoint)
    else:
        metadata = read_metadata(path)
        if not (path / "models" / "model.pt").is_file():
            raise DataError(f"{path}: bundle has no models/model.pt")
        if is_medvp_bundle(path, metadata):
            model = _from_medvp_bundle(path, medvp_mark(path, metadata))
        elif trust_bundle:
            logger.warning("%s: running the bundle's own configs (--trust-bundle)", path)
            model = _from_foreign_bundle(path, metadata)
        else:
            raise DataError(f"{path}: this bundle was not written by medvp, or its configs changed since; its configs "
                            "can run arbitrary Python code (_target_), so pass --trust-bundle if you trust its source")
    model.network.eval()
    return model
