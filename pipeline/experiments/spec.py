"""Benchmark specifications and the arms they compare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.config.loader import format_validation_error, read_yaml
from pipeline.errors import ConfigError

__all__ = ["BenchmarkSpec", "ARMS", "TUNED_ARMS", "arm_overrides", "load_spec"]

_SAFE_AUGMENTATION = ("[{name: rotate, degrees: 10, prob: 0.5}, {name: translate, fraction: 0.1, prob: 0.5}, "
                      "{name: zoom, range: [0.9, 1.1], prob: 0.5}]")
_ORIGINAL_PENALTY = ["loss.variance_weight=0.01", "loss.feature_sampling_ratio=0.2", "loss.lambda_=0.5"]
_CE = ["loss.variance_weight=0", "loss.lambda_=1.0"]


#: the method's original network: four 1x1 conv layers of 10 filters (its write-up used 224 px and a dense head;
#: here the images stay at 28 px and SimpleCNN pools globally before its linear head)
# SimpleCNN has no small-input stem: the arms switch off small_input that ResNet base configs set.
_ORIGINAL_CNN = ["model.name=simplecnn", "model.small_input=false",
                 "model.options={channels: [10, 10, 10, 10], kernel_size: 1}"]

#: tuned arm -> its tuned hyperparameters (from ``medvp tune``, kept in the spec's arm_settings) as overrides;
#: ``medvp tune`` uses the same translation for its trials, so a trial and the benchmark arm train alike
TUNED_ARMS: dict[str, Callable[[dict], list[str]]] = {
    "vp_tuned": lambda p: [f"loss.{key}={value}" for key, value in p.items()],
    "ce_dropout": lambda p: [*_CE, f"model.dropout={p['dropout']}"],
    "ce_label_smoothing": lambda p: [*_CE, f"loss.label_smoothing={p['label_smoothing']}"],
    "ce_weight_decay": lambda p: [*_CE, "optimizer.name=adamw", f"optimizer.weight_decay={p['weight_decay']}"],
}

#: arm -> overrides on top of the base config, given the spec's per-arm settings (tuned values)
ARMS: dict[str, Callable[[dict], list[str]]] = {
    "ce": lambda s: _CE,
    "vp_original": lambda s: [*_ORIGINAL_PENALTY, "loss.taps=last_block"],
    "vp_original_last_conv": lambda s: [*_ORIGINAL_PENALTY, "loss.taps=last_conv"],
    "vp_original_all_conv": lambda s: [*_ORIGINAL_PENALTY, "loss.taps=all_conv"],
    **{arm: (lambda s, arm=arm: TUNED_ARMS[arm](s[arm])) for arm in TUNED_ARMS},
    "ce_augment": lambda s: [*_CE, f"augmentation.transforms={_SAFE_AUGMENTATION}"],
    "vp_augment": lambda s: [*_ORIGINAL_PENALTY, "loss.taps=last_block",
                             f"augmentation.transforms={_SAFE_AUGMENTATION}"],
    "original_cnn_ce": lambda s: [*_CE, *_ORIGINAL_CNN],
    "original_cnn_vp": lambda s: [*_ORIGINAL_PENALTY, "loss.taps=last_block", *_ORIGINAL_CNN],
}


class BenchmarkSpec(BaseModel):
    """A benchmark: one base config, the arms trained identically but for their regularizer, and the seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    conclusion: str = Field("", description="what the results show, in plain words (written after the runs)")
    published: list[dict] = Field(default_factory=list, description="published rows: method, auc, accuracy, source")
    base_config: Path = Field(description="relative paths are taken from the spec's folder")
    overrides: list[str] = Field(default_factory=list, description="applied to every arm (the scale)")
    arms: list[str]
    seeds: list[int] = Field(min_length=1)
    results: Path = Field(description="folder of per-run result JSON files (committed)")
    runs: Path = Field(Path("runs/benchmarks"), description="folder of run directories (not committed)")
    arm_settings: dict[str, dict] = Field(default_factory=dict, description="tuned hyperparameters per arm")
    comparisons: list[tuple[str, str]] = Field(
        default_factory=list, description="extra paired comparisons [arm, reference] besides every arm against ce")

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, arms: list[str]) -> list[str]:
        unknown = [arm for arm in arms if arm not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; expected some of {sorted(ARMS)}")
        if "ce" not in arms:
            raise ValueError("the arms must include 'ce', the reference for paired differences")
        return arms


def arm_overrides(spec: BenchmarkSpec, arm: str) -> list[str]:
    """The ``--set`` overrides that make the base config into ``arm``."""
    if arm in TUNED_ARMS and arm not in spec.arm_settings:
        raise ConfigError(f"{spec.name}: arm {arm} needs arm_settings.{arm} (its hyperparameters from medvp tune)")
    return [*spec.overrides, *ARMS[arm](spec.arm_settings)]


def load_spec(path: Path) -> BenchmarkSpec:
    """Read and validate a spec; relative paths are resolved against its folder."""
    if not path.is_file():
        raise ConfigError(f"benchmark spec {path} not found")
    try:
        spec = BenchmarkSpec.model_validate(read_yaml(path))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, str(path), BenchmarkSpec)) from None
    base = path.resolve().parent
    resolve = lambda value: value if value.is_absolute() else (base / value).resolve()  # noqa: E731
    return spec.model_copy(update={"base_config": resolve(spec.base_config), "results": resolve(spec.results),
                                   "runs": resolve(spec.runs)})
