"""The configuration schema: pydantic models for each section of a medvp YAML pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.losses import TAP_CHOICES
from pipeline.networks import NETWORKS

__all__ = [
    "Config",
    "DataConfig",
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
Split = Literal["train", "val", "test"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    source: Literal["medmnist"] = "medmnist"
    path: Path = Field(description="dataset file; a relative path is taken from the config file's folder")
    task: Literal["auto", "binary", "multiclass", "multilabel"] = "auto"
    class_names: list[str] | None = None
    spatial_dims: Literal["auto", 2, 3] = "auto"
    batch_size: Annotated[int, Field(ge=1)] = 64
    eval_batch_size: Annotated[int, Field(ge=1)] = 256
    num_workers: Annotated[int, Field(ge=0)] = 0
    cache: Literal["none", "memory"] = "memory"


class PreprocessingConfig(_Section):
    source_range: tuple[float, float] = Field((0.0, 255.0), description="intensity range of the stored images")
    target_range: tuple[float, float] = Field((-1.0, 1.0), description="range the source range is mapped to")
    spatial_size: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, description="resize every image to this size (one entry per spatial dimension)")

    @model_validator(mode="after")
    def _ranges(self) -> PreprocessingConfig:
        if self.source_range[0] >= self.source_range[1]:
            raise ValueError(f"source_range must be increasing, got {list(self.source_range)}")
        return self


class ModelConfig(_Section):
    name: str = "resnet18"
    small_input: bool = Field(False, description="ResNet stem for 28-px images: 3x3 conv, stride 1, no max-pool")
    dropout: Probability = 0.0
    options: dict = Field(default_factory=dict, description="extra keyword arguments of the network class")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in NETWORKS:
            raise ValueError(f"expected one of {sorted(NETWORKS)}")
        return name

    @model_validator(mode="after")
    def _dropout_supported(self) -> ModelConfig:
        if self.dropout > 0 and self.name not in ("simplecnn", "densenet121"):
            raise ValueError(f"dropout is supported for simplecnn and densenet121, not {self.name}")
        return self


class LossConfig(_Section):
    variance_weight: Annotated[float, Field(ge=0.0)] = 0.01
    feature_sampling_ratio: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    lambda_: Annotated[float, Field(ge=0.0)] = 1.0
    taps: str | list[str] = Field("last_block", description=f"one of {TAP_CHOICES} or a list of layer names")
    seed: int | None = None
    from_logits: bool = True
    label_smoothing: Probability = 0.0


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
    early_stopping_patience: Annotated[int, Field(ge=0)] = Field(0, description="epochs without a better "
                                                                  "validation AUC before stopping; 0 = never")
    scheduler: SchedulerConfig = SchedulerConfig()
    progress_bar: Literal["auto"] | bool = "auto"
    deterministic: bool = Field(True, description="same seed, same weights and metrics (bit for bit on CPU); "
                                "see docs/reliability.md for what it does on GPU")
    checkpoint_every_iterations: Annotated[int, Field(ge=0)] = Field(
        0, description="also write a resumable checkpoint every N training iterations; 0 = at epoch ends only")


class OutputConfig(_Section):
    root: Path = Field(Path("runs"), description="folder that holds run directories (relative: to the cwd)")
    name: str | None = Field(None, description="run directory name; default: the config file's name")


class EvaluationConfig(_Section):
    splits: list[Split] = Field(["test"], description="splits evaluated after training with the chosen checkpoint")
    checkpoint: Literal["best", "last"] = "best"
    bootstrap_samples: Annotated[int, Field(ge=0)] = 1000
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95


class Config(_Section):
    data: DataConfig
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
