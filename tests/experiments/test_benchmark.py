import json
from itertools import takewhile
from pathlib import Path

import pytest

import pipeline.experiments.provenance as provenance
from pipeline.errors import ConfigError
from pipeline.experiments import arm_overrides, load_spec, run_benchmark, write_report
from pipeline.experiments.runner import recorded_state
from pipeline.experiments.spec import base_config_digest


def tiny_spec(tmp_path, repo_root, n_train="[full]"):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
name: tiny
base_config: {repo_root / 'configs' / 'pneumoniamnist_demo.yaml'}
overrides: [training.max_epochs=1, "model.options={{channels: [4, 4, 8, 8]}}", data.batch_size=256]
arms: [ce, vp_original]
seeds: [0, 1]
n_train: {n_train}
results: results/tiny
runs: runs
""")
    return load_spec(path)


def test_the_commit_comes_from_git_and_from_the_variable_only_where_git_cannot_tell(monkeypatch):
    named = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, named)
    from_git = provenance.provenance()  # a checkout: git wins over the variable
    assert from_git["commit_source"] == "git" and from_git["commit"] != named and len(from_git["commit"]) == 40
    monkeypatch.setattr(provenance, "_git", lambda *args: None)  # a copy of the files without the repository
    copied = provenance.provenance()
    assert (copied["commit"], copied["commit_source"], copied["dirty"]) == (named, provenance.COMMIT_VARIABLE, None)
    monkeypatch.delenv(provenance.COMMIT_VARIABLE)
    assert (provenance.provenance()["commit"], provenance.provenance()["commit_source"]) == (None, None)


@pytest.mark.slow
def test_tiny_benchmark_end_to_end_with_resume_and_report(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(provenance, "_dirty_paths", lambda: ["pipeline/experiments/runner.py"])
    spec = tiny_spec(tmp_path, repo_root, n_train="[40]")  # 40 training items: fast
    lines = []
    with pytest.raises(ConfigError, match=r"uncommitted changes under pipeline/ \(pipeline/experiments/runner.py\)"
                                          r".*--allow-dirty"):
        run_benchmark(spec, report=lines.append)
    progress = run_benchmark(spec, report=lines.append, allow_dirty=True)
    assert (progress.done, progress.total) == (4, 4)
    assert lines[0].startswith("[1/4] ce n=40 seed 0") and "ETA" in lines[0]
    results = sorted((tmp_path / "results" / "tiny").glob("*/n_40/seed_*.json"))
    assert len(results) == 4
    run_dirs = sorted(path for path in (tmp_path / "runs" / "tiny").glob("*/n_40/seed_*") if path.is_dir())
    assert len(run_dirs) == 4  # each finished run keeps its curves and logs but not its checkpoints
    assert not any((run / "checkpoints").exists() for run in run_dirs) and all(any(run.iterdir()) for run in run_dirs)
    record = json.loads((tmp_path / "results" / "tiny" / "spec.json").read_text())
    assert (record["results"], record["runs"]) == ("results/tiny", "runs")  # relative to the working directory
    result = json.loads(results[0].read_text())
    for key in ("accuracy", "auc", "balanced_accuracy", "nll", "ece"):
        assert 0 <= result["test"][key] <= (1 if key != "nll" else 10)
    assert set(result["gaps"]) == {"accuracy_train_minus_val", "accuracy_train_minus_test", "loss_train_minus_val",
                                   "loss_train_minus_test"}
    assert "test_last_epoch" in result and result["best_epoch"] == 1 and len(result["history"]) == 1
    assert result["subset"]["n_train"] == 40 and sum(result["subset"]["class_counts"].values()) == 40
    # what a run records is what the staleness check compares with: a fresh result is current
    assert all(recorded_state(spec, arm, seed, 40) == "current" for arm in ("ce", "vp_original") for seed in (0, 1))
    assert result["base_config_digest"] == base_config_digest(spec.base_config) is not None
    assert result["train_last_epoch"]["accuracy"] >= 0 and result["val_last_epoch"]["nll"] > 0
    assert result["dirty"] is True and len(result["commit"]) == 40 and result["threads"] >= 1 and result["cpu"]
    assert {"torch", "monai", "numpy", "scipy", "optuna", "pytorch-ignite"} <= set(result["versions"])
    # resume: only the missing run is trained again
    untouched = {path: path.stat().st_mtime_ns for path in results}
    missing = tmp_path / "results" / "tiny" / "vp_original" / "n_40" / "seed_1.json"
    missing.unlink()
    lines.clear()
    progress = run_benchmark(spec, report=lines.append, allow_dirty=True, keep_checkpoints=True)
    assert lines[0] == "3/4 runs already finished: skipped" and len(lines) == 2
    kept = tmp_path / "runs" / "tiny" / "vp_original" / "n_40" / "seed_1" / "checkpoints"
    assert (kept / "best.pt").is_file()
    assert "vp_original n=40 seed 1" in lines[1]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in untouched.items() if path != missing)
    written = write_report([tmp_path / "results" / "tiny"], tmp_path / "docs" / "benchmarks.md", repo_root)
    text = written[0].read_text()
    assert "| ce | 2 |" in text and "| vp_original | 2 |" in text and "Paired differences" in text
    assert "| 40 | vp_original | ce |" in text and "**dirty**: 4 run(s)" in text
    assert [path.name for path in written[1:]] == ["tiny_curves.png", "tiny_forest.png"]
    assert all(path.stat().st_size > 1000 for path in written[1:])


def test_arms_differ_only_in_their_regularizer(tmp_path, repo_root):
    spec = tiny_spec(tmp_path, repo_root)
    ce, vp = arm_overrides(spec, "ce"), arm_overrides(spec, "vp_original")
    assert ce[:3] == vp[:3] == spec.overrides
    assert "loss.variance_weight=0" in ce
    assert {"loss.variance_weight=0.01", "loss.feature_sampling_ratio=0.2", "loss.lambda_=0.5"} <= set(vp)
    for arm in ("vp_tuned", "ce_dropout", "ce_label_smoothing", "ce_weight_decay"):
        with pytest.raises(ConfigError, match=f"arm {arm} needs arm_settings.{arm}"):
            arm_overrides(spec, arm)


def test_tuned_arms_train_with_the_settings_their_tuning_found(tmp_path, repo_root):
    settings = {"ce_weight_decay": {"weight_decay": 3e-4},
                "vp_tuned": {"variance_weight": 0.05, "feature_sampling_ratio": 0.4, "lambda_": 1.2,
                             "taps": "all_conv"}}
    spec = tiny_spec(tmp_path, repo_root).model_copy(update={"arm_settings": settings})
    assert arm_overrides(spec, "vp_tuned") == [*spec.overrides, "loss.variance_weight=0.05",
                                               "loss.feature_sampling_ratio=0.4", "loss.lambda_=1.2",
                                               "loss.taps=all_conv"]
    assert arm_overrides(spec, "ce_weight_decay") == [*spec.overrides, "loss.variance_weight=0", "loss.lambda_=1.0",
                                                      "optimizer.name=adamw", "optimizer.weight_decay=0.0003"]


def test_spec_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbase_config: a.yaml\narms: [vp_original, dropout]\nseeds: [0]\nresults: r\n")
    with pytest.raises(ConfigError, match=r"arms = \['vp_original', 'dropout'\]: unknown arm\(s\) \['dropout'\]"):
        load_spec(path)


def _recording_run_one(trained: list, before=lambda: None):
    """A stand-in for runner.run_one that records (arm, seed) and writes an empty result, without training."""
    import pipeline.experiments.runner as runner

    def fake_run(spec, arm, seed, n="full", provenance=None, keep_checkpoints=False):
        before()
        trained.append((arm, seed))
        path = runner.result_path(spec, arm, seed, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return {"test": {"accuracy": 0.5, "auc": 0.5}}

    return fake_run


def test_shards_split_the_pairs_and_a_time_limit_stops_between_runs(tmp_path, repo_root, monkeypatch):
    import pipeline.experiments.runner as runner

    spec = tiny_spec(tmp_path, repo_root).model_copy(update={"seeds": [0, 1, 2]})
    clock = {"now": 0.0}
    trained = []

    def a_minute_passes():
        clock["now"] += 60.0

    monkeypatch.setattr(runner, "run_one", _recording_run_one(trained, a_minute_passes))
    monkeypatch.setattr(runner.time, "perf_counter", lambda: clock["now"])
    lines = []
    monkeypatch.setattr(runner, "require_clean", lambda allow_dirty: {})
    runner.run_benchmark(spec, lines.append, shard=(1, 2), time_limit_minutes=2.5)
    assert trained == [("ce", 0), ("ce", 1)]  # a third run would end at 3 min > 2.5
    assert "time limit of 2.5 min reached: 2/6" in lines[-1]
    runner.run_benchmark(spec, lines.append, shard=(1, 2))
    runner.run_benchmark(spec, lines.append, shard=(2, 2))
    assert sorted(trained) == sorted((arm, seed) for arm in ("ce", "vp_original") for seed in (0, 1, 2))
    assert len(trained) == 6  # no pair twice
    with pytest.raises(ConfigError, match="--shard 3/2"):
        runner.run_benchmark(spec, lines.append, shard=(3, 2))
    # filters: only the named arms / seeds / sizes run; unknown names are refused
    trained.clear()
    scarce = spec.model_copy(update={"n_train": [50, 100], "seeds": [0, 1, 2], "results": tmp_path / "scarce"})
    runner.run_benchmark(scarce, lines.append, arms=["vp_original"], seeds=[2, 1], sizes=["100"])
    assert trained == [("vp_original", 1), ("vp_original", 2)]
    assert runner.result_path(scarce, "vp_original", 1, 100).parts[-3:] == ("vp_original", "n_100", "seed_1.json")
    assert [cell[0] for cell in runner.cells(scarce)][:6] == [50] * 6  # smallest n first
    with pytest.raises(ConfigError, match=r"--arms/--n/--seeds \['ce_dropout', '7', 5\]"):
        runner.run_benchmark(scarce, lines.append, arms=["ce_dropout"], sizes=["7"], seeds=[5])


def test_a_result_trained_with_settings_the_spec_no_longer_names_runs_again(tmp_path, repo_root, monkeypatch):
    import pipeline.experiments.runner as runner
    from pipeline.experiments.spec import cell_overrides, is_stale

    spec = tiny_spec(tmp_path, repo_root, n_train="[50, full]").model_copy(update={
        "arms": ["ce", "ce_dropout"], "arm_settings_by_n": {"50": {"ce_dropout": {"dropout": 0.2, "lr": 0.001}}}})
    trained = []

    def fake_run(spec, arm, seed, n="full", provenance=None, keep_checkpoints=False):  # records overrides as run_one
        trained.append((arm, seed))
        path = runner.result_path(spec, arm, seed, n)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"arm": arm, "seed": seed, "n_train": n,
                                    "overrides": cell_overrides(spec, arm, seed, n)}))
        return {"test": {"accuracy": 0.5, "auc": 0.5}}

    monkeypatch.setattr(runner, "run_one", fake_run)
    monkeypatch.setattr(runner, "require_clean", lambda allow_dirty: {})
    lines = []
    runner.run_benchmark(spec, lines.append)
    # ce_dropout has settings at n = 50 only: it does not run on the full split, and the benchmark says so
    assert sorted(trained) == sorted([("ce", 0), ("ce", 1)] * 2 + [("ce_dropout", 0), ("ce_dropout", 1)])
    assert lines[0] == ("not run (tuned arms without settings at that n; `medvp tune` finds them for "
                        "arm_settings_by_n): ce_dropout at n = full")
    assert runner.recorded_state(spec, "ce_dropout", 1, 50) == "current"
    # re-tuned: ce_dropout's cells at n = 50 are stale and run again; ce's stay
    retuned = spec.model_copy(update={"arm_settings_by_n": {"50": {"ce_dropout": {"dropout": 0.3, "lr": 0.001}}}})
    assert runner.recorded_state(retuned, "ce_dropout", 1, 50) == "stale"
    assert runner.recorded_state(retuned, "ce", 1, 50) == "current"
    trained.clear()
    lines.clear()
    progress = runner.run_benchmark(retuned, lines.append)
    assert trained == [("ce_dropout", 0), ("ce_dropout", 1)] and (progress.done, progress.total) == (6, 6)
    assert lines[:2] == ["4/6 runs already finished: skipped",
                         "2 result(s) were trained with settings the spec no longer names: they run again"]
    trained.clear()
    runner.run_benchmark(retuned, lines.append)
    assert trained == []
    # a result cut short by a crash while it was written runs again; so does one for a cell no longer planned
    runner.result_path(retuned, "ce", 0, 50).write_text('{"arm": "ce", "seed": 0, "n_train": 50, "overr')
    assert runner.recorded_state(retuned, "ce", 0, 50) == "missing"
    runner.run_benchmark(retuned, lines.append)
    assert trained == [("ce", 0)]
    assert is_stale(retuned.model_copy(update={"arm_settings_by_n": {}}), json.loads(
        runner.result_path(retuned, "ce_dropout", 0, 50).read_text()))
    assert is_stale(retuned.model_copy(update={"arms": ["ce"]}), {"arm": "ce_dropout", "seed": 0, "n_train": 50,
                                                                   "overrides": []})


def test_a_result_trained_on_another_base_config_is_stale_and_a_comment_does_not_count(tmp_path, repo_root):
    """Ten runs of a study once trained the demo config's former network: the filters changed in the base config,
    which the recorded overrides did not show."""
    import yaml

    from pipeline.experiments.spec import cell_overrides, is_stale

    base = tmp_path / "base.yaml"
    base.write_text((repo_root / "configs" / "pneumoniamnist_demo.yaml").read_text())
    spec = tiny_spec(tmp_path, repo_root).model_copy(update={"base_config": base})
    result = {"arm": "ce", "seed": 0, "n_train": "full", "overrides": cell_overrides(spec, "ce", 0, "full"),
              "base_config_digest": base_config_digest(base)}
    assert not is_stale(spec, result)
    base.write_text("# a comment and another layout change nothing\n" + base.read_text() + "\n\n")
    assert not is_stale(spec, result)
    config = yaml.safe_load(base.read_text())
    config["model"]["options"] = {"channels": [32, 32, 64, 64]}
    base.write_text(yaml.safe_dump(config))
    assert is_stale(spec, result)
    assert not is_stale(spec, {key: value for key, value in result.items() if key != "base_config_digest"})
    assert not is_stale(spec.model_copy(update={"base_config": tmp_path / "elsewhere.yaml"}), result)


def test_a_cell_another_process_is_running_is_skipped_not_trained_twice(tmp_path, repo_root, monkeypatch):
    import multiprocessing

    import pipeline.experiments.runner as runner

    spec = tiny_spec(tmp_path, repo_root)
    trained = []
    monkeypatch.setattr(runner, "run_one", _recording_run_one(trained))
    monkeypatch.setattr(runner, "require_clean", lambda allow_dirty: {})
    context = multiprocessing.get_context("spawn")
    holding, release = context.Event(), context.Event()
    other = context.Process(target=_hold_claim, args=(spec, "vp_original", 0, holding, release))
    other.start()
    try:
        assert holding.wait(60), "the other process did not claim its cell"
        lines = []
        progress = runner.run_benchmark(spec, lines.append)
        assert sorted(trained) == [("ce", 0), ("ce", 1), ("vp_original", 1)]
        assert "vp_original seed 0: being run by another process: skipped" in lines
        assert (progress.done, progress.total) == (3, 4)
    finally:
        release.set()
        other.join(60)
    runner.run_benchmark(spec, lines.append)  # the claim ended with the other process's run: the cell runs now
    assert trained[-1] == ("vp_original", 0) and len(trained) == 4


def _hold_claim(spec, arm, seed, holding, release) -> None:
    from pipeline.experiments.runner import claimed

    with claimed(spec, arm, seed) as mine:
        assert mine
        holding.set()
        release.wait(60)


def test_curve_colours_stay_distinct_beyond_ten_arms():
    from pipeline.experiments.figures import arm_colours

    for count in (2, 10, 12, 20):
        assert len(set(arm_colours(count))) == count


def test_the_committed_benchmark_document_is_what_medvp_report_makes_of_the_committed_results(repo_root, tmp_path):
    import re

    committed = (repo_root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (\S+)$", committed, flags=re.MULTILINE)
    assert sections, "docs/benchmarks.md has no benchmark sections"
    results = [repo_root / "benchmarks" / "results" / name for name in sections]
    regenerated = write_report(results, tmp_path / "benchmarks.md", repo_root, draw=False)[0].read_text(
        encoding="utf-8")
    assert regenerated == committed


def test_record_spec_writes_the_edited_conclusion_and_runs_nothing(tmp_path, repo_root, medvp_in_process,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tiny_spec(tmp_path, repo_root)
    path = tmp_path / "tiny.yaml"
    path.write_text(path.read_text() + "conclusion: edited after the runs\n")
    result = medvp_in_process("benchmark", path, "--record-spec")
    assert result.returncode == 0, result.stderr
    assert json.loads((spec.results / "spec.json").read_text())["conclusion"] == "edited after the runs"
    assert [entry.name for entry in spec.results.iterdir()] == ["spec.json"] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("spec_path", sorted((Path(__file__).parents[2] / "benchmarks" / "specs").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_a_committed_spec_and_the_spec_json_its_report_reads_agree(spec_path):
    """The report reads results/<name>/spec.json, recorded when the runs ran: a description or conclusion edited
    in the spec since then would not reach docs/benchmarks.md."""
    from pipeline.experiments import load_results

    spec = load_spec(spec_path)
    if not (spec.results / "spec.json").is_file():
        pytest.skip(f"{spec.name} has no results")
    recorded = load_results(spec.results)[1]
    paths = {"base_config", "results", "runs"}
    assert recorded.model_dump(exclude=paths) == spec.model_dump(exclude=paths), \
        f"{spec.results / 'spec.json'} differs from {spec_path.name}: run `medvp benchmark {spec_path} --record-spec`"


def _table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows, as cells, of the first markdown table whose header line starts with ``header_start``."""
    body = takewhile(lambda line: line.startswith("|"), markdown[markdown.index(header_start):].splitlines()[2:])
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in body]


def test_the_readme_benchmark_table_quotes_the_report_headline(repo_root):
    """Every row of the README's benchmark table (n, cross-entropy's accuracy and AUC, the penalty arms' paired
    differences) is a row of docs/benchmarks.md's headline table as `medvp report` printed it."""
    import re

    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    document = (repo_root / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    plain = lambda cell: re.sub(r", p [<0-9.]+$", "", cell).replace("−", "-")  # noqa: E731
    headline = {tuple(plain(cell) for cell in [row[1], *row[3:9]])
                for row in _table_rows(document, "| section | n | seeds | reference acc")}
    quoted = [tuple(plain(cell) for cell in row[1:8]) for row in _table_rows(readme, "| study | n | ce accuracy")]
    assert len(quoted) >= 10
    assert [row for row in quoted if row not in headline] == []
