"""Benchmark specifications and the arms they compare."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config.loader import format_validation_error, read_yaml
from pipeline.errors import ConfigError

__all__ = ["BenchmarkSpec", "ARMS", "TUNED_ARMS", "arm_overrides", "cell_overrides", "cells", "describe_unsettled",
           "has_settings", "is_stale", "load_spec", "n_key", "settings_for", "unsettled", "UNATTENDED",
           "ARM_DESCRIPTIONS"]

_SAFE_AUGMENTATION = ("[{name: rotate, degrees: 10, prob: 0.5}, {name: translate, fraction: 0.1, prob: 0.5}, "
                      "{name: zoom, range: [0.9, 1.1], prob: 0.5}]")
_ORIGINAL_PENALTY = ["loss.variance_weight=0.01", "loss.feature_sampling_ratio=0.2", "loss.lambda_=0.5"]
_CE = ["loss.variance_weight=0", "loss.lambda_=1.0"]


#: the method's original network: four 1x1 conv layers of 10 filters (its write-up used 224 px and a dense head;
#: here the images stay at 28 px and SimpleCNN pools globally before its linear head)
# SimpleCNN has no small-input stem: the arms switch off small_input that ResNet base configs set.
_ORIGINAL_CNN = ["model.name=simplecnn", "model.small_input=false",
                 "model.options={channels: [10, 10, 10, 10], kernel_size: 1}"]
#: the original write-up's whole setup: that network with a dense head on the flattened last conv block,
#: PneumoniaMNIST nearest-upsampled to 224 px, Adam (lr 1e-3), early stopping (the engine's criterion is validation
#: AUC; the write-up stopped on validation loss)
_ORIGINAL_SETUP = ["model.name=simplecnn", "model.small_input=false",
                   "model.options={channels: [10, 10, 10, 10], kernel_size: 1, head: flatten, input_size: [224, 224]}",
                   "preprocessing.spatial_size=[224, 224]", "preprocessing.interpolation=nearest",
                   "optimizer.name=adam", "optimizer.lr=0.001", "training.scheduler={name: none}",
                   "training.early_stopping_patience=5"]

#: tuned arm -> its tuned hyperparameters (from ``medvp tune``, kept in the spec's arm_settings) as overrides;
#: ``medvp tune`` uses the same translation for its trials, so a trial and the benchmark arm train alike
TUNED_ARMS: dict[str, Callable[[dict], list[str]]] = {
    "vp_tuned": lambda p: [f"loss.{key}={value}" for key, value in p.items()],
    "ce_dropout": lambda p: [*_CE, f"model.dropout={p['dropout']}",
                             *([f"optimizer.lr={p['lr']}"] if "lr" in p else [])],
    "ce_label_smoothing": lambda p: [*_CE, f"loss.label_smoothing={p['label_smoothing']}",
                                     *([f"optimizer.lr={p['lr']}"] if "lr" in p else [])],
    "ce_weight_decay": lambda p: [*_CE, "optimizer.name=adamw", f"optimizer.weight_decay={p['weight_decay']}",
                                  *([f"optimizer.lr={p['lr']}"] if "lr" in p else [])],
    # the penalty on what the dense head reads: the output of the conv stack (after the last max-pool), flattened
    "original_setup_vp": lambda p: [*_ORIGINAL_SETUP, "loss.taps=features",
                                    *(f"loss.{key}={value}" for key, value in p.items())],
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
    "original_setup_ce": lambda s: [*_CE, *_ORIGINAL_SETUP],
}


#: arm -> what it is, in one line (the report's preamble lists the arms of the document from here)
ARM_DESCRIPTIONS: dict[str, str] = {
    "ce": "cross-entropy (BCE on one logit for binary tasks), lambda_ 1, no penalty: the reference",
    "vp_original": "the method's published setting, untuned: variance_weight 0.01, feature_sampling_ratio 0.2, "
                   "lambda_ 0.5, tap last_block",
    "vp_original_last_conv": "vp_original with the tap moved to the last conv layer (tap-location comparison)",
    "vp_original_all_conv": "vp_original with taps on every conv layer (tap-location comparison)",
    "vp_tuned": "the penalty tuned on validation: variance_weight, feature_sampling_ratio, lambda_ and the tap "
                "(4 dimensions)",
    "ce_dropout": "cross-entropy with dropout before the head, tuned on validation (dropout rate, lr)",
    "ce_label_smoothing": "cross-entropy with label smoothing, tuned on validation (smoothing, lr)",
    "ce_weight_decay": "cross-entropy with AdamW's decoupled weight decay, tuned on validation (decay 1e-4 to 0.5 "
                       "log, lr)",
    "ce_augment": "cross-entropy with the clinically safe augmentation allow-list (rotation ±10°, translation "
                  "±10%, zoom 0.9-1.1, each p 0.5)",
    "vp_augment": "ce_augment plus the published penalty (vp_original's setting)",
    "original_cnn_ce": "the original network (four 1x1 conv layers of 10 filters) at 28 px with a global-pooling "
                       "head, cross-entropy",
    "original_cnn_vp": "original_cnn_ce plus the published penalty",
    "original_setup_ce": "the original write-up's setup: 1x1-conv network with a dense head on the flattened "
                         "features, 224 px nearest-upsampled, Adam, early stopping; cross-entropy",
    "original_setup_vp": "original_setup_ce plus the penalty chosen on validation from the write-up's 12-point grid",
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
    reference: str = Field("ce", description="the arm every other arm is compared with (paired differences)")
    seeds: list[int] = Field(min_length=1)
    results: Path = Field(description="folder of per-run result JSON files (committed)")
    runs: Path = Field(Path("runs/benchmarks"), description="folder of run directories (not committed)")
    arm_settings: dict[str, dict] = Field(default_factory=dict, description="tuned hyperparameters per arm")
    comparisons: list[tuple[str, str]] = Field(
        default_factory=list, description="extra paired comparisons [arm, reference] besides every arm against ce")
    n_train: list[int | Literal["full"]] = Field(
        ["full"], min_length=1, description="training subset sizes (stratified by class, drawn by the seed, the "
        "same for every arm); 'full' is the whole training split. Validation and test are never subset")
    max_epochs_by_n: dict[str, int] = Field(
        default_factory=dict, description="training.max_epochs per subset size (keys as in n_train, e.g. '50')")
    arm_settings_by_n: dict[str, dict[str, dict]] = Field(
        default_factory=dict, description="per subset size: tuned hyperparameters per arm (else arm_settings)")
    settings_note: str = Field("", description="where the arm settings come from (tuned: trial counts; or fixed)")
    tuning: dict = Field(default_factory=dict, description="trials: completed trials per tuned arm; "
                         "warmup_epochs: pruning warm-up; the report prints them with each arm's search ranges")
    headline: dict[Literal["penalty", "baselines"], list[str]] = Field(
        default_factory=dict, description="the report's headline table: penalty arms, each shown against the "
        "reference, and baselines, of which the one with the best mean validation AUC at each n is shown")

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, arms: list[str]) -> list[str]:
        unknown = [arm for arm in arms if arm not in ARMS]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; expected some of {sorted(ARMS)}")
        return arms

    @model_validator(mode="after")
    def _reference_is_an_arm(self) -> BenchmarkSpec:
        if self.reference not in self.arms:
            raise ValueError(f"reference {self.reference!r} must be one of the arms {self.arms}")
        strangers = [arm for arms in self.headline.values() for arm in arms if arm not in self.arms]
        if strangers:
            raise ValueError(f"headline arm(s) {strangers} must be among the arms {self.arms}")
        return self

    @field_validator("n_train")
    @classmethod
    def _sizes(cls, sizes: list) -> list:
        if any(isinstance(n, int) and n < 2 for n in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError("expected distinct sizes of at least 2, or 'full'")
        return sizes


def n_key(n: int | str) -> str:
    """How a subset size names folders and keys: 'full' or the number."""
    return str(n)


def settings_for(spec: BenchmarkSpec, n: int | str) -> dict[str, dict]:
    """The arm settings at subset size n: ``arm_settings_by_n[n]`` over ``arm_settings``."""
    return {**spec.arm_settings, **spec.arm_settings_by_n.get(n_key(n), {})}


def has_settings(spec: BenchmarkSpec, arm: str, n: int | str = "full") -> bool:
    """Whether ``arm`` can train at subset size n: an untuned arm always can, a tuned one when the spec gives its
    settings there."""
    return arm not in TUNED_ARMS or arm in settings_for(spec, n)


def arm_overrides(spec: BenchmarkSpec, arm: str, n: int | str = "full") -> list[str]:
    """The ``--set`` overrides that make the base config into ``arm`` (at subset size n: its epochs and settings)."""
    if not has_settings(spec, arm, n):
        raise ConfigError(f"{spec.name}: arm {arm} needs arm_settings.{arm} (its hyperparameters from medvp tune)")
    epochs = spec.max_epochs_by_n.get(n_key(n))
    return [*spec.overrides, *ARMS[arm](settings_for(spec, n)), *([f"training.max_epochs={epochs}"] if epochs else [])]


#: what every unattended run (a benchmark cell, a tuning trial) adds: no evaluation splits after training (the
#: runner and the tuner measure what they need themselves) and no progress bar
UNATTENDED = ["evaluation.splits=[]", "training.progress_bar=false"]


def cell_overrides(spec: BenchmarkSpec, arm: str, seed: int, n: int | str = "full") -> list[str]:
    """Everything one benchmark cell (arm, n, seed) trains with on top of the base config, as its result records it
    (the subset's ``data.path`` aside): the arm's overrides, the seed and :data:`UNATTENDED`. A result recording
    other overrides was trained with settings the spec no longer names (stale)."""
    return [*arm_overrides(spec, arm, n), f"training.seed={seed}", *UNATTENDED]


def unsettled(spec: BenchmarkSpec) -> list[tuple[str, int | str]]:
    """(arm, n) of every tuned arm the spec gives no settings for at that n: those cells cannot run."""
    return [(arm, n) for n in spec.n_train for arm in spec.arms if not has_settings(spec, arm, n)]


def describe_unsettled(spec: BenchmarkSpec) -> str:
    """:func:`unsettled` in words, arms grouped by the sizes they wait at: 'a, b at n = 50, full'; '' if none."""
    by_n: dict[str, list[str]] = {}
    for arm, n in unsettled(spec):
        by_n.setdefault(n_key(n), []).append(arm)
    groups: dict[tuple[str, ...], list[str]] = {}
    for n, arms in by_n.items():
        groups.setdefault(tuple(arms), []).append(n)
    return "; ".join(f"{', '.join(arms)} at n = {', '.join(sizes)}" for arms, sizes in groups.items())


def cells(spec: BenchmarkSpec) -> list[tuple[int | str, int, str]]:
    """Every (n, seed, arm) the spec plans, in run order: smallest n first (cheap), then seeds, then arms, so a
    partial benchmark covers every arm at the sizes it reached. A tuned arm is planned only at the sizes the spec
    gives it settings for (:func:`unsettled` names the rest)."""
    sizes = sorted(spec.n_train, key=lambda n: (n == "full", 0 if n == "full" else n))
    return [(n, seed, arm) for n in sizes for seed in spec.seeds for arm in spec.arms if has_settings(spec, arm, n)]


def base_config_digest(path: Path) -> str | None:
    """A digest of the base config's content as parsed (comments and layout do not count), or None where the
    file is not there (a report read on another machine). A result records it: the overrides alone did not show
    that the demo config's filters changed between runs of one study."""
    if not path.is_file():
        return None
    status = path.stat()
    return _content_digest(path, status.st_mtime_ns, status.st_size)


@lru_cache(maxsize=32)
def _content_digest(path: Path, mtime_ns: int, size: int) -> str:
    """:func:`base_config_digest`'s work, once per version of the file (its modification time and size are in the
    key): a report checks every result against its section's one base config."""
    canonical = json.dumps(read_yaml(path), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def is_stale(spec: BenchmarkSpec, result: dict) -> bool:
    """Whether a result is not what its cell would train now: it records other overrides or another base config
    (its digest, :func:`base_config_digest`), or its cell is no longer planned (an arm or size the spec dropped,
    a tuned arm without settings there). A result that records no overrides, or no digest, (written before
    results kept them) cannot tell that part and counts as current for it."""
    recorded = result.get("overrides")
    if recorded is None:
        return False
    arm, n = result["arm"], result.get("n_train", "full")
    if arm not in spec.arms or n not in spec.n_train or not has_settings(spec, arm, n):
        return True
    digest = result.get("base_config_digest")
    if digest is not None and base_config_digest(spec.base_config) not in (None, digest):
        return True
    return recorded != cell_overrides(spec, arm, result["seed"], n)


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
