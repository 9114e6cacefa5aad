"""Configuration: the only place raw YAML is read and checked."""

from pipeline.config.loader import apply_overrides, load_config, load_saved_config, parse_config, read_yaml, save_config
from pipeline.config.schema import (
    Config,
    DataConfig,
    EvaluationConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    OutputConfig,
    PreprocessingConfig,
    SchedulerConfig,
    TrainingConfig,
)

__all__ = [
    "Config",
    "DataConfig",
    "EvaluationConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "PreprocessingConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "apply_overrides",
    "load_config",
    "load_saved_config",
    "parse_config",
    "read_yaml",
    "save_config",
]
