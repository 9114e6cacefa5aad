import json

import pytest

from pipeline.benchmark import arm_overrides, load_spec, paired_difference, run_benchmark, summarize, write_report
from pipeline.errors import ConfigError


def tiny_spec(tmp_path, repo_root):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
name: tiny
base_config: {repo_root / 'configs' / 'pneumoniamnist_demo.yaml'}
overrides: [training.max_epochs=1, "model.options={{channels: [4, 4, 8, 8]}}", data.batch_size=256]
arms: [ce, vp_original]
seeds: [0, 1]
results: results/tiny
runs: runs
""")
    return load_spec(path)


@pytest.mark.slow
def test_tiny_benchmark_end_to_end_with_resume_and_report(tmp_path, repo_root):
    spec = tiny_spec(tmp_path, repo_root)
    lines = []
    progress = run_benchmark(spec, report=lines.append)
    assert (progress.done, progress.total) == (4, 4)
    assert lines[0].startswith("[1/4] ce seed 0") and "ETA" in lines[0]
    results = sorted((tmp_path / "results" / "tiny").glob("*/seed_*.json"))
    assert len(results) == 4
    result = json.loads(results[0].read_text())
    for key in ("accuracy", "auc", "balanced_accuracy", "nll", "ece"):
        assert 0 <= result["test"][key] <= (1 if key != "nll" else 10)
    assert set(result["gaps"]) == {"accuracy_train_minus_val", "accuracy_train_minus_test", "loss_train_minus_val",
                                   "loss_train_minus_test"}
    assert "test_last_epoch" in result and result["best_epoch"] == 1 and len(result["history"]) == 1
    # resume: only the missing run is trained again
    untouched = {path: path.stat().st_mtime_ns for path in results}
    missing = tmp_path / "results" / "tiny" / "vp_original" / "seed_1.json"
    missing.unlink()
    lines.clear()
    progress = run_benchmark(spec, report=lines.append)
    assert lines[0] == "3/4 runs already finished: skipped" and len(lines) == 2 and "vp_original seed 1" in lines[1]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in untouched.items() if path != missing)
    out = write_report([tmp_path / "results" / "tiny"], tmp_path / "docs" / "benchmarks.md", "# Benchmarks\n")
    text = out.read_text()
    assert "| ce | 2 |" in text and "| vp_original | 2 |" in text and "Paired differences" in text
    assert (tmp_path / "docs" / "benchmarks" / "tiny_curves.png").is_file()


def test_arms_differ_only_in_their_regularizer(tmp_path, repo_root):
    spec = tiny_spec(tmp_path, repo_root)
    ce, vp = arm_overrides(spec, "ce"), arm_overrides(spec, "vp_original")
    assert ce[:3] == vp[:3] == spec.overrides
    assert "loss.variance_weight=0" in ce
    assert {"loss.variance_weight=0.01", "loss.feature_sampling_ratio=0.2", "loss.lambda_=0.5"} <= set(vp)
    with pytest.raises(ConfigError, match="vp_tuned needs arm_settings.vp_tuned"):
        arm_overrides(spec, "vp_tuned")


def test_spec_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nbase_config: a.yaml\narms: [vp_original, dropout]\nseeds: [0]\nresults: r\n")
    with pytest.raises(ConfigError, match=r"arms = \['vp_original', 'dropout'\]: unknown arm\(s\) \['dropout'\]"):
        load_spec(path)


def test_summary_and_paired_statistics():
    summary = summarize([0.80, 0.82, 0.84])
    assert summary["mean"] == pytest.approx(0.82) and summary["sd"] == pytest.approx(0.02)
    # t(0.975, 2) = 4.303: half width 4.303 * 0.02 / sqrt(3)
    assert summary["high"] - summary["mean"] == pytest.approx(4.303 * 0.02 / 3**0.5, rel=1e-3)
    arm = [{"seed": s, "test": {"accuracy": v}} for s, v in enumerate([0.81, 0.84, 0.86])]
    ce = [{"seed": s, "test": {"accuracy": v}} for s, v in enumerate([0.80, 0.82, 0.84])]
    difference = paired_difference(arm, ce, "test", "accuracy")
    assert difference["mean"] == pytest.approx(0.05 / 3) and 0 < difference["p"] < 1
