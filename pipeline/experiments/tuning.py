"""Hyperparameter search for an arm on the validation split only: Optuna TPE with median pruning."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.config import Config, load_config
from pipeline.engine import train
from pipeline.engine.history import write_table
from pipeline.errors import ConfigError
from pipeline.experiments.spec import TUNED_ARMS
from pipeline.extras import require_extra

optuna = require_extra("optuna", "medvp tune")

__all__ = ["SEARCH_SPACES", "storage_description", "tune", "trial_overrides", "write_trials"]

logger = logging.getLogger(__name__)


def _vp(trial: optuna.Trial) -> dict:
    return {"variance_weight": trial.suggest_float("variance_weight", 1e-4, 1.0, log=True),
            "feature_sampling_ratio": trial.suggest_float("feature_sampling_ratio", 0.05, 1.0),
            "lambda_": trial.suggest_float("lambda_", 0.25, 2.0),
            "taps": trial.suggest_categorical("taps", ["last_block", "last_conv", "all_conv"])}


#: arm -> suggest the arm's hyperparameters (turned into overrides as the benchmark arm does: TUNED_ARMS)
SEARCH_SPACES: dict[str, Callable[[optuna.Trial], dict]] = {
    "vp_tuned": _vp,
    "ce_dropout": lambda t: {"dropout": t.suggest_float("dropout", 0.0, 0.6)},
    "ce_label_smoothing": lambda t: {"label_smoothing": t.suggest_float("label_smoothing", 0.0, 0.3)},
    "ce_weight_decay": lambda t: {"weight_decay": t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)},
}


def trial_overrides(arm: str, params: dict) -> list[str]:
    return TUNED_ARMS[arm](params)


class _Pruning:
    """Reports each epoch's validation AUC to the trial; says to stop training when the pruner prunes it."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned_at: int | None = None

    def __call__(self, epoch: int, metrics: dict) -> bool:
        self.trial.report(float(metrics["val_auc"]), step=epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
        return self.pruned_at is not None


def tune(config_path: Path, arm: str, trials: int, out_dir: Path, overrides: list[str] = (),
         storage: str | None = None, seed: int = 0) -> optuna.Study:
    """Search ``arm``'s hyperparameters, maximizing the best validation AUC of a run.

    Runs train on the training split and validate on the validation split; the configured evaluation splits
    are switched off, so the test split is never loaded. The study lives in ``storage`` (any database URL
    Optuna accepts, so several machines can share one study; default: SQLite in ``out_dir``), and the best
    parameters are written to ``out_dir/best_<arm>.json``.
    """
    if arm not in SEARCH_SPACES:
        raise ConfigError(f"--arm {arm!r}: expected one of {sorted(SEARCH_SPACES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    base: Config = load_config(config_path, list(overrides))
    # One SQLite file per arm by default: concurrent first-time schema creation in one file can collide.
    database = f"optuna_{arm}.db"
    recorded = storage_description(storage) if storage else f"SQLite {database} in the --out folder"
    storage = storage or f"sqlite:///{(out_dir / database).resolve()}"
    study = optuna.create_study(study_name=f"{base.output.name}-{arm}", storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
                                load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        params = SEARCH_SPACES[arm](trial)
        config = load_config(config_path, [*overrides, *trial_overrides(arm, params), "evaluation.splits=[]",
                                           "training.progress_bar=false"])
        pruning = _Pruning(trial)
        result = train(config, out_dir / "trials" / f"{arm}_{trial.number}", on_validation=pruning)
        if pruning.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        return result.best_val_auc

    study.optimize(objective, n_trials=trials, catch=())
    write_trials(study, out_dir / f"trials_{arm}.csv")
    best = {"arm": arm, "params": study.best_params, "best_val_auc": study.best_value,
            "trials": len(study.trials), "storage": recorded, "study": study.study_name}
    (out_dir / f"best_{arm}.json").write_text(json.dumps(best, indent=1), encoding="utf-8")
    return study


def storage_description(url: str) -> str:
    """A database URL as results may record it: the password hidden."""
    make_url = require_extra("sqlalchemy.engine", "medvp tune --storage").make_url

    return make_url(url).render_as_string(hide_password=True)


def write_trials(study: optuna.Study, path: Path) -> Path:
    """One row per trial: number, state, best validation AUC (or the last reported one when pruned), epochs
    reported and the parameters, so the search can be committed beside the benchmark results."""
    rows = []
    for trial in study.trials:
        reported = trial.intermediate_values
        value = trial.value if trial.value is not None else (reported[max(reported)] if reported else None)
        rows.append({"trial": trial.number, "state": trial.state.name, "val_auc": value,
                     "epochs_reported": len(reported), **trial.params})
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_table(path, rows, tuple(columns))
    return path
