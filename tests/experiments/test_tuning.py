import json

import optuna
import pytest

import pipeline.engine.data_setup as components
from pipeline.engine.checkpoint import BEST_CHECKPOINT, CHECKPOINT_DIR
from pipeline.errors import ConfigError
from pipeline.experiments.tuning import (
    SEARCH_SPACES,
    _pruner,
    _Pruning,
    sampler_seed,
    search_ranges,
    storage_description,
    trial_overrides,
    tune,
)
from pipeline.kinds import SelectionMetric


@pytest.mark.slow
def test_tune_searches_on_validation_only_and_stores_the_study(tmp_path, repo_root, monkeypatch):
    seen_items = []
    real_make_dataset = components.make_dataset

    def spy(items, *args, **kwargs):
        seen_items.extend(item["name"] for item in items)
        return real_make_dataset(items, *args, **kwargs)

    monkeypatch.setattr(components, "make_dataset", spy)
    scale = ["training.max_epochs=1", "model.options={channels: [4, 4, 8, 8]}", "data.batch_size=256"]
    study = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "vp_tuned", trials=2, out_dir=tmp_path,
                 overrides=scale, study_name="spec-vp_tuned-n60", n_train=60, allow_dirty=True)
    assert len(study.trials) == 2 and study.study_name == "spec-vp_tuned-n60"
    attrs = study.trials[0].user_attrs
    assert attrs["run_dir"].endswith("trials/vp_tuned_0") and attrs["seeds"] == [0] and attrs["n_train"] == 60
    assert "evaluation.splits=[]" in attrs["overrides"] and len(attrs["commit"]) == 40
    assert seen_items and not any(":test:" in name for name in seen_items)  # items are named file.npz:split:index
    assert sum(":train:" in name for name in seen_items) == 60 * 2  # the subset, once per trial
    best = json.loads((tmp_path / "best_vp_tuned.json").read_text())
    assert set(best["params"]) == {"variance_weight", "feature_sampling_ratio", "lambda_", "taps"}
    assert best["objective"] == "val_auc" and best["best_value"] == max(trial.value for trial in study.trials)
    assert (best["trials_completed"], best["trials_started"]) == (2, 2)
    assert best["sampler_seed"] == sampler_seed("spec-vp_tuned-n60", 60) and best["search"] == search_ranges("vp_tuned")
    assert best["seeds"] == [0] and best["hardware"].startswith("CPU")  # where the best trial trained
    assert (tmp_path / "optuna_vp_tuned.db").is_file()
    assert best["storage"] == "SQLite optuna_vp_tuned.db in the --out folder" and str(tmp_path) not in json.dumps(best)
    trials = (tmp_path / "trials_vp_tuned.csv").read_text().splitlines()
    assert len(trials) == 3 and trials[0].startswith("trial,state,val_auc,epochs_reported,")
    # the same storage resumes the study: 3 completed trials asked, 2 there, one more runs
    again = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "vp_tuned", trials=3, out_dir=tmp_path,
                 overrides=scale, study_name="spec-vp_tuned-n60", n_train=60, allow_dirty=True)
    assert len(again.trials) == 3 and optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna_vp_tuned.db'}")


def test_pruning_reports_each_epoch_and_says_stop_when_the_pruner_prunes():
    class FakeTrial:
        reports = []

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= 2

    trial = FakeTrial()
    pruning = _Pruning(trial, SelectionMetric.VAL_AUC)
    assert pruning(1, {"val_auc": 0.7}) is False and pruning.pruned_at is None
    assert pruning(2, {"val_auc": 0.71}) is True and pruning.pruned_at == 2
    assert trial.reports == [(1, 0.7), (2, 0.71)]


def test_pruning_reports_the_best_value_so_far_not_a_noisy_epoch():
    class FakeTrial:
        def __init__(self):
            self.reports = []

        def report(self, value, step):
            self.reports.append(value)

        def should_prune(self):
            return False

    auc, loss = FakeTrial(), FakeTrial()
    by_auc, by_loss = _Pruning(auc, SelectionMetric.VAL_AUC), _Pruning(loss, SelectionMetric.VAL_LOSS)
    for epoch, (auc_value, loss_value) in enumerate([(float("nan"), 0.5), (0.8, 0.4), (0.6, 0.7), (0.85, 0.45)], 1):
        by_auc(epoch, {"val_auc": auc_value, "val_loss": loss_value})
        by_loss(epoch, {"val_auc": auc_value, "val_loss": loss_value})
    assert auc.reports[1:] == [0.8, 0.8, 0.85]  # a NaN first epoch does not stick; the dip to 0.6 is not reported
    assert loss.reports == [0.5, 0.4, 0.4, 0.4]  # lowest so far for a loss


def test_search_space_overrides_turn_the_penalty_off_for_ce_arms():
    assert trial_overrides("ce_dropout", {"dropout": 0.2}) == ["loss.variance_weight=0", "loss.lambda_=1.0",
                                                                "model.dropout=0.2"]
    assert "loss.taps=all_conv" in trial_overrides("vp_tuned", {"variance_weight": 0.1, "feature_sampling_ratio": 0.5,
                                                                "lambda_": 1.0, "taps": "all_conv"})


def test_a_database_url_is_recorded_without_its_password():
    recorded = storage_description("postgresql://tuner:s3cret@db.example:5432/studies")
    assert "s3cret" not in recorded and recorded.startswith("postgresql://tuner:***@db.example:5432/studies")


def test_the_pruner_stops_the_lowest_quarter_after_the_warm_up_only():
    study = optuna.create_study(direction="maximize", pruner=_pruner(warmup_epochs=3))
    for value in (0.60, 0.70, 0.80, 0.90, 0.95):  # 5 completed trials before any pruning
        trial = study.ask()
        for epoch in range(1, 5):
            trial.report(value, step=epoch)
        study.tell(trial, value)

    def pruned_at(epoch: int, value: float) -> bool:
        trial = study.ask()
        trial.report(value, step=epoch)
        decision = trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return decision

    assert pruned_at(4, 0.65)  # below the lowest quarter (0.70)
    assert not pruned_at(4, 0.75)  # below the median (0.80), above the lowest quarter: a median pruner stops it
    assert not pruned_at(2, 0.50)  # still in the warm-up (3 epochs run before a trial can be pruned)


def test_the_pruner_compares_with_every_finished_trial_not_only_the_completed_survivors():
    def study_with(pruner):
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for value in (0.80, 0.85, 0.90, 0.95, 0.95):  # completed: the survivors, lowest quarter from 0.85
            trial = study.ask()
            for epoch in range(1, 5):
                trial.report(value, step=epoch)
            study.tell(trial, value)
        for _ in range(10):  # pruned at epoch 4 with 0.60: most of what was tried
            trial = study.ask()
            trial.report(0.60, step=4)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        trial = study.ask()
        trial.report(0.75, step=4)
        return trial.should_prune()

    # Optuna's own rule prunes a trial better than two thirds of those tried; the finished population keeps it
    assert study_with(optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=3))
    assert not study_with(_pruner(warmup_epochs=3))


def test_search_spaces_are_comparable_and_seeds_differ_per_dataset_and_size():
    assert len(SEARCH_SPACES["vp_tuned"]) == 4
    assert all(len(SEARCH_SPACES[arm]) == 2 for arm in ("ce_dropout", "ce_label_smoothing", "ce_weight_decay"))
    assert search_ranges("ce_weight_decay") == "weight_decay 0.0001–0.5 (log); lr 0.0003–0.01 (log)"
    assert "variance_weight ∈ {0.01, 0.1}" in search_ranges("original_setup_vp")
    seeds = {sampler_seed(f"{name}-vp_tuned-n{n}", n) for name in ("pneumonia", "breast") for n in (50, 100, "full")}
    assert len(seeds) == 6
    assert "optimizer.lr=0.003" in trial_overrides("ce_dropout", {"dropout": 0.2, "lr": 0.003})


def test_completed_trials_are_counted_not_started_ones(tmp_path, repo_root, monkeypatch):
    import pipeline.experiments.tuning as tuning

    outcomes = iter(["pruned", "done", "pruned", "pruned", "done", "done", "done"])

    class Result:
        best_value, hardware = 0.8, "test double"

    def fake_train(config, run_dir, on_validation):
        if next(outcomes) == "pruned":
            on_validation.pruned_at = 1  # what the pruner callback sets when it stops a trial
        return Result()

    monkeypatch.setattr(tuning, "train", fake_train)
    study = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=3, out_dir=tmp_path,
                 allow_dirty=True)
    assert [t.state.name for t in study.trials] == ["PRUNED", "COMPLETE", "PRUNED", "PRUNED", "COMPLETE", "COMPLETE"]
    assert json.loads((tmp_path / "best_ce_dropout.json").read_text())["trials_pruned"] == 3


def test_workers_sharing_a_study_propose_different_points(tmp_path, repo_root, monkeypatch):
    """Processes tuning one study in parallel each draw from their own sampler seed; with one seed they proposed
    the same first points (seen on 2026-12-04 with two workers of a vp_tuned search)."""
    import pipeline.experiments.tuning as tuning

    class Result:
        best_value, hardware = 0.8, "test double"

    monkeypatch.setattr(tuning, "train", lambda config, run_dir, on_validation: Result())
    config = repo_root / "configs" / "pneumoniamnist_demo.yaml"
    shared = dict(out_dir=tmp_path, study_name="shared-vp_tuned-n60", n_train=60, allow_dirty=True)
    tune(config, "vp_tuned", trials=1, worker=0, **shared)
    study = tune(config, "vp_tuned", trials=2, worker=1, **shared)
    first, second = study.trials
    assert first.params != second.params
    assert first.user_attrs["sampler_seed"] == sampler_seed("shared-vp_tuned-n60", 60)  # worker 0: the old seed
    # worker 1, joining a study that holds 1 trial, is offset by it too: a worker that resumes a study on a later
    # lease does not repeat its own earlier start-up draws
    assert second.user_attrs["sampler_seed"] == sampler_seed("shared-vp_tuned-n60", 60, worker=1 + 1)


def test_a_trial_whose_worker_was_killed_is_failed_when_the_study_resumes(tmp_path, repo_root, monkeypatch):
    """A worker killed mid-trial (a GPU lease ending) left its trial "running" for good; the heartbeat marks it
    failed once it has been silent for the grace period, and it does not count as completed."""
    import time

    import optuna

    import pipeline.experiments.tuning as tuning

    class Result:
        best_value, hardware = 0.8, "test double"

    monkeypatch.setattr(tuning, "train", lambda config, run_dir, on_validation: Result())
    monkeypatch.setattr(tuning, "HEARTBEAT_GRACE_SECONDS", 1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    killed = optuna.create_study(study_name="s-ce_dropout-nfull", storage=url, direction="maximize")
    orphan = killed.ask()
    killed._storage.record_heartbeat(orphan._trial_id)  # what the killed worker's heartbeat thread last did
    time.sleep(2)
    study = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=1, out_dir=tmp_path,
                 storage=url, study_name="s-ce_dropout-nfull", allow_dirty=True)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert json.loads((tmp_path / "best_ce_dropout.json").read_text())["trials_failed"] == 1


def test_a_trial_is_scored_on_every_tuning_seed_and_pruned_on_the_first_only(tmp_path, repo_root, monkeypatch):
    import pipeline.experiments.tuning as tuning

    calls = []
    prune_first_seed = iter([True, False, False])

    class Result:
        def __init__(self, auc: float):
            self.best_value = auc
            self.hardware = "test double"

    def fake_train(config, run_dir, on_validation):
        seed = config.training.seed
        calls.append({"seed": seed, "data": str(config.data.path), "dir": run_dir.name, "pruning": on_validation})
        (run_dir / CHECKPOINT_DIR).mkdir(parents=True)
        (run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT).write_bytes(b"weights")
        if on_validation is not None and next(prune_first_seed, False):
            on_validation.pruned_at = 3  # what the pruner callback sets when it stops a trial
        return Result({0: 0.9, 1: 0.6, 2: 0.75}[seed])

    monkeypatch.setattr(tuning, "train", fake_train)
    study = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=2, out_dir=tmp_path,
                 n_train=60, seeds=(0, 1, 2), allow_dirty=True)
    assert [t.state.name for t in study.trials] == ["PRUNED", "COMPLETE", "COMPLETE"]
    # a trial pruned on its first seed trains no other seed; a complete one trains each seed once, in order
    assert [call["seed"] for call in calls] == [0, 0, 1, 2, 0, 1, 2]
    assert [call["pruning"] is not None for call in calls] == [True, True, False, False, True, False, False]
    assert [call["dir"] for call in calls[1:4]] == ["seed_0", "seed_1", "seed_2"]
    # every seed trains on its own subset, and on the same one in every trial
    assert len({call["data"] for call in calls[1:4]}) == 3 and calls[1]["data"] == calls[4]["data"]
    assert study.trials[1].value == pytest.approx(0.75)  # the mean of 0.9, 0.6 and 0.75, not the best seed
    assert study.trials[1].user_attrs["val_auc_by_seed"] == [0.9, 0.6, 0.75]
    best = json.loads((tmp_path / "best_ce_dropout.json").read_text())
    assert best["seeds"] == [0, 1, 2] and best["best_value"] == pytest.approx(0.75)
    # scored and pruned trials alike leave their folders without checkpoints (nothing resumes a trial)
    assert (tmp_path / "trials" / "ce_dropout_0").is_dir() and not list((tmp_path / "trials").rglob("*.pt"))
    kept = tmp_path / "kept"
    tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=1, out_dir=kept, n_train=60,
         seeds=(0, 1), allow_dirty=True, keep_checkpoints=True)
    assert len(list((kept / "trials").rglob(BEST_CHECKPOINT))) == 2
    with pytest.raises(ConfigError, match="distinct seeds"):
        tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=1, out_dir=tmp_path,
             seeds=(1, 1), allow_dirty=True)


def test_a_study_on_validation_loss_minimizes_it_and_prunes_on_it(tmp_path, repo_root, monkeypatch):
    import pipeline.experiments.tuning as tuning

    losses = iter([0.5, 0.3, 0.4])

    class Result:
        def __init__(self, loss: float):
            self.best_value = loss
            self.hardware = "test double"

    def fake_train(config, run_dir, on_validation):
        assert config.training.selection_metric == "val_loss"
        on_validation(1, {"val_auc": 0.9, "val_loss": 0.6})
        return Result(next(losses))

    monkeypatch.setattr(tuning, "train", fake_train)
    study = tune(repo_root / "configs" / "pneumoniamnist_demo.yaml", "ce_dropout", trials=3, out_dir=tmp_path,
                 overrides=["training.selection_metric=val_loss"], allow_dirty=True)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert [trial.intermediate_values for trial in study.trials] == [{1: 0.6}] * 3  # the loss, not the AUC
    best = json.loads((tmp_path / "best_ce_dropout.json").read_text())
    assert (best["objective"], best["best_value"]) == ("val_loss", 0.3)
    assert (tmp_path / "trials_ce_dropout.csv").read_text().startswith("trial,state,val_loss,")
