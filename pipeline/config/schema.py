"""The configuration schema: pydantic models for each section of a medvp YAML pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from pipeline.kinds import SelectionMetric, Split
from pipeline.losses import TAP_CHOICES
from pipeline.networks import NETWORKS
from pipeline.transforms.policy import check_augmentation

__all__ = [
    "Config",
    "AugmentationConfig",
    "DataConfig",
    "DicomConfig",
    "PreprocessingConfig",
    "ModelConfig",
    "LossConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "OutputConfig",
    "EvaluationConfig",
]

Probability = Annotated[float, Field(ge=0.0, lt=1.0)]


class _Section(BaseModel):
    # allow_inf_nan=False: every float of every section is finite (an lr of .inf or a loss weight of .nan is refused)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DicomConfig(_Section):
    series_uid: str | None = Field(None, description="the series to read when a directory holds several")
    uneven_spacing: Literal["error", "warn"] = "error"
    missing_slices: Literal["error", "warn"] = "error"
    gantry_tilt: Literal["error", "warn"] = "warn"
    show_headers: bool = Field(False, description="let messages quote DICOM header fields such as SeriesDescription "
                               "(they can identify a patient); `medvp --show-headers` sets it")


class DataConfig(_Section):
    source: Literal["medmnist", "folder", "csv", "datalist"] = "medmnist"
    path: Path = Field(description="dataset file or folder; a relative path is taken from the config file's folder")
    task: Literal["auto", "binary", "multiclass", "multilabel"] = "auto"
    class_names: list[str] | None = None
    spatial_dims: Literal["auto", 2, 3] = "auto"
    batch_size: Annotated[int, Field(ge=1)] = 64
    eval_batch_size: Annotated[int, Field(ge=1)] = 256
    num_workers: Annotated[int, Field(ge=0)] = 0
    cache: Literal["none", "memory", "disk", "gpu"] = Field(
        "memory", description="memory: MONAI CacheDataset; disk: PersistentDataset in the run's cache/; gpu: the "
        "preprocessed split stacked on the CUDA device and batched by indexing (small datasets; CUDA only); none")
    on_bad_item: Literal["error", "skip"] = "error"
    split_fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="train/val/test shares when the data gives no split (patient-grouped)")
    split_seed: int = 0
    max_pixels: Annotated[int, Field(ge=1)] = Field(
        2**28, description="refuse an image with more pixels (voxels) per channel than this (2**28: 1 GiB of float32)")
    dicom: DicomConfig = DicomConfig()

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(part <= 0 for part in value) or abs(sum(value) - 1) > 1e-6:
            raise ValueError("expected three positive shares (train, val, test) that sum to 1")
        return value

    @field_validator("cache")
    @classmethod
    def _gpu_cache_in_process(cls, value: str, info: ValidationInfo) -> str:
        workers = info.data.get("num_workers", 0)
        if value == "gpu" and workers:
            raise ValueError(f"the gpu cache forms batches on the device in the training process; set "
                             f"data.num_workers = 0 (got {workers})")
        return value


class PreprocessingConfig(_Section):
    preset: Literal["range", "ct_lung", "ct_mediastinum", "ct_brain", "ct_bone", "ct_window", "mr_percentile",
                    "mr_zscore", "radiograph", "rgb"] = Field(
        "range", description="intensity normalization: range maps source_range to target_range; ct_* are HU "
        "windows; mr_percentile/radiograph map percentiles to target_range; mr_zscore and rgb standardize")
    source_range: tuple[float, float] = Field((0.0, 255.0), description="range preset: stored intensity range")
    target_range: tuple[float, float] = Field((-1.0, 1.0), description="range the intensities are mapped to")
    window: tuple[float, float] | None = Field(None, description="ct_window preset: (level, width) in HU")
    percentiles: tuple[float, float] = (1.0, 99.0)
    orientation: str | None = Field(None, description="3D: reorient to this axis code, e.g. RAS")
    spacing: list[Annotated[float, Field(gt=0)]] | None = Field(None, description="resample to this spacing (mm)")
    spatial_size: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="resize keeping the aspect ratio, then pad to this size (one entry per spatial axis)")
    resize_mode: Literal["pad", "crop_foreground"] = "pad"
    interpolation: Literal["area", "bilinear", "nearest"] = "area"

    @model_validator(mode="after")
    def _consistent(self) -> PreprocessingConfig:
        if self.source_range[0] >= self.source_range[1]:
            raise ValueError(f"source_range must be increasing, got {list(self.source_range)}")
        if self.preset == "ct_window" and (self.window is None or self.window[1] <= 0):
            raise ValueError("preset ct_window needs window: [level, width] with a positive width")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {list(self.percentiles)}")
        if self.orientation is not None and (len(self.orientation) != 3 or
                                             set(self.orientation.upper()) - set("RLAPSI")):
            raise ValueError(f"orientation must be a 3-letter axis code such as RAS, got {self.orientation!r}")
        return self


class AugmentationConfig(_Section):
    laterality_invariant: bool = Field(False, description="the anatomy has no left/right meaning (flips allowed)")
    allow_unsafe_augmentation: bool = False
    transforms: list[dict] = Field(default_factory=list, description="entries {name, prob, ...} from the "
                                   "clinically safe allow-list (pipeline/transforms/policy.py)")

    @field_validator("transforms")
    @classmethod
    def _policy(cls, transforms: list[dict], info: ValidationInfo) -> list[dict]:
        for index, spec in enumerate(transforms):
            if not isinstance(spec.get("name"), str):
                raise ValueError(f"entry {index} needs a name")
            try:
                check_augmentation(spec, info.data.get("laterality_invariant", False),
                                   info.data.get("allow_unsafe_augmentation", False))
            except ValueError as error:
                raise ValueError(f"entry {index}: {error}") from None
        return transforms

    def override_warnings(self) -> list[str]:
        """What ``allow_unsafe_augmentation`` let through (recorded in the run's metadata)."""
        notes: list[str] = []
        for spec in self.transforms:
            notes += check_augmentation(spec, self.laterality_invariant, self.allow_unsafe_augmentation)
        return notes


class ModelConfig(_Section):
    name: str = "resnet18"
    small_input: bool = Field(False, description="stem for 28-px images (3x3 conv, stride 1, no max-pool) where "
                              "the network supports it (ResNets)")
    dropout: Probability = 0.0
    options: dict = Field(default_factory=dict, description="extra keyword arguments of the network class")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in NETWORKS:
            raise ValueError(f"expected one of {sorted(NETWORKS)}")
        return name

    @model_validator(mode="after")
    def _supported(self) -> ModelConfig:
        """What the network registry says this network supports."""
        entry = NETWORKS[self.name]
        if self.dropout > 0 and not entry.dropout:
            supported = sorted(name for name, other in NETWORKS.items() if other.dropout)
            raise ValueError(f"dropout is supported for {', '.join(supported)}, not {self.name}")
        if self.small_input and not entry.small_input:
            supported = sorted(name for name, other in NETWORKS.items() if other.small_input)
            raise ValueError(f"small_input is supported for {', '.join(supported)}, not {self.name}")
        return self


class LossConfig(_Section):
    variance_weight: Annotated[float, Field(ge=0.0)] = 0.01
    feature_sampling_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    lambda_: Annotated[float, Field(ge=0.0)] = 1.0
    taps: str | list[str] = Field("last_block", description=f"one of {TAP_CHOICES} or a list of layer names")
    seed: int | None = None
    from_logits: bool = True
    label_smoothing: Probability = 0.0
    variance_scope: Literal["local", "global"] = Field(
        "local", description="distributed runs: penalize each process's batch (local) or the features gathered "
        "from every process, i.e. the global batch (global); see docs/distributed.md")


class OptimizerConfig(_Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9


class SchedulerConfig(_Section):
    name: Literal["none", "multistep", "cosine"] = "none"
    milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        [0.5, 0.75], description="multistep: fractions of max_epochs at which the LR is multiplied by gamma")
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1


class TrainingConfig(_Section):
    max_epochs: Annotated[int, Field(ge=1)] = 10
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto"] | bool = Field("auto", description="bf16 autocast: auto = on where CUDA supports bf16")
    selection_metric: SelectionMetric = Field(
        SelectionMetric.VAL_AUC, description="the validation metric that keeps the best checkpoint, drives early "
        "stopping and scores a tuning trial: val_auc (highest) or val_loss (lowest; the classification loss, "
        "which unlike AUC also sees whether the scores sit on the right side of the 0.5 threshold)")
    early_stopping_patience: Annotated[int, Field(ge=0)] = Field(0, description="epochs without a better "
                                                                  "selection_metric before stopping; 0 = never")
    scheduler: SchedulerConfig = SchedulerConfig()
    progress_bar: Literal["auto"] | bool = "auto"
    deterministic: bool = Field(True, description="same seed, same weights and metrics (bit for bit on CPU); "
                                "see docs/reliability.md for what it does on GPU")
    checkpoint_every_iterations: Annotated[int, Field(ge=0)] = Field(
        0, description="also write a resumable checkpoint every N training iterations; 0 = at epoch ends only")
    sync_batchnorm: bool = Field(False, description="distributed runs on CUDA: batch normalization statistics over "
                                 "the global batch (SyncBatchNorm); no effect in a single process")


class OutputConfig(_Section):
    root: Path = Field(Path("runs"), description="folder that holds run directories (relative: to the cwd)")
    name: str | None = Field(None, description="run directory name; default: the config file's name")

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str | None) -> str | None:
        """A single folder inside ``output.root``: no separators, no ``.``/``..``, nothing hidden or unprintable."""
        if name is None:
            return name
        if (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
                or not name.isprintable() or len(name.encode("utf-8")) > 200):
            raise ValueError("expected a single folder name (no / or \\, not . or .., not hidden, printable, "
                             "at most 200 bytes)")
        return name


class EvaluationConfig(_Section):
    splits: list[Split] = Field([Split.TEST], description="splits evaluated after training with the chosen checkpoint")
    checkpoint: Literal["best", "last"] = "best"
    bootstrap_samples: Annotated[int, Field(ge=0)] = 1000
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95


class Config(_Section):
    data: DataConfig
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
