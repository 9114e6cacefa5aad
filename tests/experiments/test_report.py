"""The report from fabricated raw results (no training): family-wide adjustment, provenance flags, the preamble
filled in from the specs, p-value printing."""

import json
import subprocess

import pytest

from pipeline.experiments.report import write_report
from pipeline.experiments.statistics import holm

_METRICS = ("accuracy", "auc", "balanced_accuracy", "sensitivity", "specificity", "nll", "ece")


def _result(arm, n, seed, accuracy, commit):
    split = {metric: accuracy for metric in _METRICS}
    history = [{"epoch": e, "train_classification": 0.5 / e, "train_variance": 0.0, "train_accuracy": 0.9,
                "val_loss": 0.4 + 0.01 * (e - 2) ** 2, "val_accuracy": 0.8, "val_auc": 0.85} for e in (1, 2, 3, 4)]
    return {"spec": "s", "arm": arm, "seed": seed, "n_train": n, "test": split, "val": split, "train": split,
            "train_last_epoch": {**split, "accuracy": 1.0, "nll": 0.01}, "val_last_epoch": {**split, "accuracy": 0.8,
                                                                                             "nll": 0.5},
            "gaps": {"accuracy_train_minus_val": 0.1 + accuracy / 100, "loss_train_minus_val": -0.2,
                     "accuracy_train_minus_test": 0.1, "loss_train_minus_test": -0.3},
            "best_epoch": 2, "epochs_run": 4, "train_seconds": 10.0, "wall_seconds": 12.0, "history": history,
            "hardware": "CPU: x86_64, 1 threads", "commit": commit, "dirty": False, "cpu": "Test CPU",
            "threads": 1, "versions": {"torch": "2.13.0"}}


def _section(folder, name, commits, shift):
    folder.mkdir(parents=True)
    spec = {"name": name, "description": f"{name} described", "base_config": "configs/x.yaml", "overrides": [],
            "arms": ["ce", "vp_original"], "seeds": [0, 1, 2, 3], "n_train": [50, 100]}
    (folder / "spec.json").write_text(json.dumps(spec))
    for n in (50, 100):
        for seed in range(4):
            for arm, accuracy in (("ce", 0.80 + 0.01 * seed), ("vp_original", 0.80 + 0.01 * seed + shift + 0.001 *
                                                               seed ** 2)):
                path = folder / arm / f"n_{n}" / f"seed_{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(_result(arm, n, seed, accuracy, commits[seed % len(commits)])))


def test_report_adjusts_over_the_whole_document_and_flags_untraceable_runs(tmp_path, repo_root):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True).stdout.strip()
    _section(tmp_path / "one", "one", [head], shift=0.05)
    _section(tmp_path / "two", "two", [head, None, "f" * 40], shift=0.0)
    out = tmp_path / "doc" / "report.md"
    written = write_report([tmp_path / "one", tmp_path / "two"], out, repo_root, draw=False)
    text = written[0].read_text()
    assert written == [out]
    # 2 sections x 2 sizes x 1 comparison x 7 outcomes, less the identical-difference ones with no test
    assert "every paired test in this document (" in text
    tests = int(text.split("every paired test in this document (")[1].split(" tests")[0])
    assert 8 <= tests <= 28
    # section one: vp_original is 0.05 + 0.001 seed^2 above ce on every seed: raw p tiny, Holm p = raw p * family
    one = text.split("## one")[1].split("## two")[0]
    row = next(line for line in one.splitlines() if line.startswith("| 50 | vp_original | ce | test accuracy |"))
    raw, adjusted = row.split(" | ")[-3], row.split(" | ")[-2]
    assert raw == "< 0.001" and adjusted != raw
    # the survivors' list is computed over the same family: section one's accuracy row is in it, section two's
    # (no difference) is not, and each row's Holm p is the one its section prints
    survivors = text.split(f"## What survives Holm's adjustment over the {tests} tests")[1].split("## one")[0]
    listed = [line for line in survivors.splitlines() if line.startswith("| one | ")]
    assert any(line.startswith("| one | 50 | vp_original | ce | test accuracy |") for line in listed)
    assert all(float(line.split(" | ")[-2]) < 0.05 for line in listed) and "| two | " not in survivors
    assert f"{len(listed)} paired difference(s) have a Holm-adjusted p below 0.05" in survivors
    assert row.split(" | ")[-2] == next(line for line in listed if " | 50 | vp_original | ce | test accuracy |"
                                        in line).split(" | ")[-2]
    assert "| " + head[:10] + " | 16 | traceable |" in one
    two = text.split("## two")[1]
    assert "| none | 4 | **untraceable**: no commit recorded |" in two
    assert "| ffffffffff | 4 | **untraceable**: commit not in this repository |" in two
    assert "**8 run(s) are untraceable or dirty**" in text
    # the preamble lists the arms run, from their registry descriptions, and the budget from the results
    assert "- `ce`: cross-entropy" in text and "- `vp_original`: the method's published setting" in text
    assert "ce_dropout" not in text.split("## one")[0]
    assert "32 runs, 0.1 h" in text and "Test CPU" in text
    # overfitting table: the last epoch's gap and where validation loss bottomed out (epoch 2 of 4)
    assert "| ce | 4 | 2.0 ± 0.0 of 4 | 0.040 ± 0.000 | 1.000 ± 0.000 | 0.800 ± 0.000 | 0.200 ± 0.000 |" in one


def test_a_section_run_on_a_gpu_names_the_card_and_the_commits_named_without_git(tmp_path, repo_root):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True).stdout.strip()
    _section(tmp_path / "gpu", "gpu", [head], shift=0.0)
    for path in sorted((tmp_path / "gpu").glob("*/n_*/seed_[01].json")):  # 8 of the 16 runs came from a GPU copy
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "hardware": "NVIDIA H200 (CUDA 13.0)", "commit_source": "MEDVP_COMMIT"}))
    text = write_report([tmp_path / "gpu"], tmp_path / "report.md", repo_root, draw=False)[0].read_text()
    assert f"| {head[:10]} | 16 | traceable (8 named by MEDVP_COMMIT on a copy without git) |" in text
    assert "GPU: NVIDIA H200 (CUDA 13.0). CPU: Test CPU." in text


def test_holm_and_bh_span_every_section_of_the_document(tmp_path):
    from pipeline.experiments.report import adjust_family, load_section
    from pipeline.experiments.statistics import benjamini_hochberg

    _section(tmp_path / "one", "one", [None], shift=0.05)
    _section(tmp_path / "two", "two", [None], shift=0.0)
    sections = [load_section(tmp_path / "one"), load_section(tmp_path / "two")]
    tests = adjust_family(sections)
    family = [c for section in sections for c in section.comparisons]
    raw = [c["p"] for c in family]
    assert tests == sum(p is not None for p in raw) and tests > len(sections[0].comparisons) / 2
    assert [c["p_holm"] for c in family] == holm(raw) and [c["p_bh"] for c in family] == benjamini_hochberg(raw)
    # section one's smallest p is multiplied by the size of the whole family, not of its own section
    smallest = min(p for p in raw if p is not None)
    first = next(c for c in family if c["p"] == smallest)
    assert first["p_holm"] == pytest.approx(min(1.0, smallest * tests))


def test_headline_shows_the_penalty_and_the_baseline_best_on_validation_not_on_test(tmp_path):
    folder = tmp_path / "scarce"
    folder.mkdir()
    spec = {"name": "scarce", "base_config": "configs/x.yaml", "overrides": [], "seeds": [0, 1, 2, 3],
            "arms": ["ce", "vp_original", "ce_dropout", "ce_augment"], "n_train": [50],
            "headline": {"penalty": ["vp_original"], "baselines": ["ce_dropout", "ce_augment"]}}
    (folder / "spec.json").write_text(json.dumps(spec))
    # (test accuracy offset from ce, validation AUC): ce_dropout is better on test, ce_augment on validation
    arms = {"ce": (0.0, 0.80), "vp_original": (0.02, 0.80), "ce_dropout": (0.10, 0.70), "ce_augment": (-0.05, 0.90)}
    for arm, (offset, val_auc) in arms.items():
        for seed in range(4):
            result = _result(arm, 50, seed, 0.70 + 0.01 * seed + offset + 0.002 * seed ** 2 * (arm != "ce"), None)
            result["val"] = {**result["val"], "auc": val_auc}
            path = folder / arm / "n_50" / f"seed_{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))
    text = write_report([folder], tmp_path / "report.md", tmp_path, draw=False)[0].read_text()
    headline = text.split("## Headline: ")[1].split("## scarce")[0]
    row = next(line for line in headline.splitlines() if line.startswith("| scarce | 50 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "4" and cells[3] == "0.715 ± 0.013"
    assert cells[5].startswith("+2.7 [") and ", p " in cells[5]  # vp_original's Δ accuracy in points
    assert cells[-1] == "ce_augment" and cells[7].startswith("-4.3 [")  # chosen on validation, worse on test


def test_headline_columns_line_up_when_sections_name_different_penalty_arms(tmp_path, repo_root):
    for name, shift, penalty in (("one", 0.05, ["vp_original", "vp_tuned"]), ("two", 0.0, ["vp_original"])):
        _section(tmp_path / name, name, [None], shift=shift)
        spec = json.loads((tmp_path / name / "spec.json").read_text())
        (tmp_path / name / "spec.json").write_text(json.dumps({**spec, "arms": ["ce", *penalty],
                                                               "headline": {"penalty": penalty}}))
    text = write_report([tmp_path / "one", tmp_path / "two"], tmp_path / "report.md", repo_root, draw=False)[0]
    lines = text.read_text().split("## Headline: ")[1].split("## What survives")[0].splitlines()
    header = next(line for line in lines if line.startswith("| section |"))
    rows = [line for line in lines if line.startswith(("| one |", "| two |"))]
    assert len(rows) == 4 and {row.count("|") for row in rows} == {header.count("|")}
    vp_original = header.strip("|").split("|").index(" Δ vp_original acc ")
    assert all(row.strip("|").split("|")[vp_original].strip().startswith("+") for row in rows)
    assert all(row.strip("|").split("|")[vp_original + 2].strip() == "–" for row in rows)  # vp_tuned never ran


def test_the_tuning_table_says_which_seeds_objective_and_pruning_rule_scored_each_search(tmp_path, repo_root):
    _section(tmp_path / "one", "one", [None], shift=0.0)
    records = ((50, {"seeds": [0, 1, 2], "best_val_auc": 0.9, "pruning": "rule A"}),
               (100, {"best_val_auc": 0.9, "pruning": "rule B"}),  # from before multi-seed scoring: no seeds
               (200, {"seeds": [0], "objective": "val_loss", "best_value": 0.25, "pruning": "rule A",
                      "trials_failed": 2}))  # two trials cut off, marked failed when the search resumed
    for n, extra in records:
        best = tmp_path / "tuning" / "one" / f"n_{n}" / "best_ce_dropout.json"
        best.parent.mkdir(parents=True)
        best.write_text(json.dumps({"arm": "ce_dropout", "n_train": n, "trials_completed": 20,
                                    "trials_started": 25, "search": "dropout 0–0.5; lr 0.0003–0.01 (log)", **extra}))
    text = write_report([tmp_path / "one"], tmp_path / "report.md", repo_root, draw=False)[0].read_text()
    search = "dropout 0–0.5; lr 0.0003–0.01 (log)"
    assert f"| 50 | ce_dropout | 20 of 25, pruning rule 1 | {search} | 0, 1, 2 | val AUC 0.9000 |" in text
    assert f"| 100 | ce_dropout | 20 of 25, pruning rule 2 | {search} | 0 | val AUC 0.9000 |" in text
    assert f"| 200 | ce_dropout | 20 of 25 (2 failed), pruning rule 1 | {search} | 0 | val loss 0.2500 |" in text
    assert "when its search resumed) do not; pruning rule 1: rule A; pruning rule 2: rule B):" in text  # each once
    rows = [line.split(" | ")[0] for line in text.splitlines() if "| ce_dropout | 20 of" in line]
    assert rows == ["| 50", "| 100", "| 200"]  # by size, not by the folder names' text order (n_100 < n_50)


def test_a_stale_result_is_left_out_of_the_statistics_and_named(tmp_path):
    from pipeline.experiments.report import load_section
    from pipeline.experiments.spec import BenchmarkSpec, cell_overrides

    _section(tmp_path / "one", "one", [None], shift=0.05)
    spec = json.loads((tmp_path / "one" / "spec.json").read_text())
    model = BenchmarkSpec.model_validate({**spec, "results": str(tmp_path / "one")})
    stale = tmp_path / "one" / "vp_original" / "n_50" / "seed_3.json"
    for path in (tmp_path / "one").glob("*/n_50/seed_*.json"):  # results that record what they trained with
        result = json.loads(path.read_text())
        recorded = ["loss.variance_weight=0.5"] if path == stale else None  # trained before the spec changed
        result["overrides"] = recorded or cell_overrides(model, result["arm"], result["seed"], 50)
        path.write_text(json.dumps(result))
    section = load_section(tmp_path / "one")
    assert section.stale == [stale]
    assert [r["seed"] for r in section.runs[("vp_original", "50")]] == [0, 1, 2]
    accuracy = next(c for c in section.comparisons if (c["size"], c["metric"]) == ("50", "accuracy"))
    assert accuracy["n"] == 3
    text = write_report([tmp_path / "one"], tmp_path / "report.md", tmp_path, draw=False)[0].read_text()
    assert "**1 stale result(s) are left out**" in text and "`vp_original/n_50/` (1)" in text
    assert "vp_original at n = 50 (3 of 4 seeds)" in text


def test_coverage_names_tuned_arms_waiting_for_settings_and_arms_missing_at_some_sizes(tmp_path):
    _section(tmp_path / "one", "one", [None], shift=0.05)
    spec = json.loads((tmp_path / "one" / "spec.json").read_text())
    spec = {**spec, "arms": ["ce", "vp_original", "vp_tuned", "vp_augment"], "n_train": [50, 100, 200],
            "arm_settings_by_n": {"200": {"vp_tuned": {"variance_weight": 0.1}}}}
    (tmp_path / "one" / "spec.json").write_text(json.dumps(spec))
    text = write_report([tmp_path / "one"], tmp_path / "report.md", tmp_path, draw=False)[0].read_text()
    coverage = next(line for line in text.splitlines() if line.startswith("**Partial: 16 of 48 planned runs**"))
    assert "not run at all: vp_augment" in coverage
    assert "not run at some sizes: ce at n = 200; vp_original at n = 200" in coverage
    assert coverage.endswith("tuned arms not run for want of settings (`medvp tune`): vp_tuned at n = 50, 100.")


def test_the_arm_table_counts_runs_whose_test_predictions_were_all_one_class(tmp_path):
    _section(tmp_path / "one", "one", [None], shift=0.05)
    collapsed = {(arm, seed): (1.0, 0.0) if arm == "ce" else (0.0, 1.0)
                 for arm, seed in (("ce", 1), ("ce", 3), ("vp_original", 2))}
    for (arm, seed), (sensitivity, specificity) in collapsed.items():
        path = tmp_path / "one" / arm / "n_100" / f"seed_{seed}.json"
        result = json.loads(path.read_text())
        result["test"] = {**result["test"], "sensitivity": sensitivity, "specificity": specificity}
        path.write_text(json.dumps(result))
    # a run with sensitivity 1 but specificity above 0 predicted both classes
    path = tmp_path / "one" / "vp_original" / "n_100" / "seed_0.json"
    result = json.loads(path.read_text())
    path.write_text(json.dumps({**result, "test": {**result["test"], "sensitivity": 1.0, "specificity": 0.02}}))
    text = write_report([tmp_path / "one"], tmp_path / "report.md", tmp_path, draw=False)[0].read_text()
    at_50, at_100 = text.split("### n = 50 training items")[1].split("### n = 100 training items")
    assert "| arm | seeds | one class | test acc |" in at_50
    assert "| ce | 4 | 0 | " in at_50 and "| vp_original | 4 | 0 | " in at_50
    assert "| ce | 4 | 2 | " in at_100 and "| vp_original | 4 | 1 | " in at_100
    # multi-class results record no sensitivity and specificity: the count is not known
    for path in (tmp_path / "one").glob("ce/n_50/seed_*.json"):
        result = json.loads(path.read_text())
        path.write_text(json.dumps({**result, "test": {"accuracy": 0.8, "auc": 0.9}}))
    text = write_report([tmp_path / "one"], tmp_path / "report.md", tmp_path, draw=False)[0].read_text()
    assert "| ce | 4 | – | 0.800 ± 0.000 |" in text.split("### n = 50 training items")[1]


def test_the_tuning_table_says_where_each_search_ran_and_marks_an_untraceable_one(tmp_path, repo_root):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True).stdout.strip()
    _section(tmp_path / "tuned", "tuned", [head], shift=0.0)
    old_rule = ("a trial is pruned when its best validation score so far is in the worst quarter of earlier trials' "
                "at that epoch")
    searches = {"vp_tuned": {"commit": head, "hardware": "NVIDIA H200 (CUDA 13.0)", "cpu": "Test CPU",
                             "pruning": old_rule},
                "ce_dropout": {"commit": head, "dirty": True},
                "ce_weight_decay": {},  # the first study's records: no commit
                "ce_label_smoothing": {"commit": "f" * 40, "cpu": "Test CPU"},
                # a CPU search, recorded before the hardware field named the model: the architecture is not repeated
                "ce_augment": {"commit": head, "hardware": "CPU: x86_64, 1 threads", "cpu": "Test CPU"}}
    folder = tmp_path / "tuning" / "tuned" / "n_50"
    folder.mkdir(parents=True)
    for arm, where in searches.items():
        best = {"arm": arm, "params": {}, "best_value": 0.9, "trials_completed": 20, "trials_started": 30,
                "n_train": 50, **where}
        (folder / f"best_{arm}.json").write_text(json.dumps(best))
    text = write_report([tmp_path / "tuned"], tmp_path / "report.md", repo_root, draw=False)[0].read_text()
    rows = {line.split(" | ")[1]: line.split(" | ")[-1] for line in text.splitlines() if line.startswith("| 50 | ")
            and "20 of 30" in line}
    assert rows == {"vp_tuned": f"{head[:7]}; NVIDIA H200 (CUDA 13.0); Test CPU |",
                    "ce_dropout": "**dirty**: 1 search from uncommitted changes |",
                    "ce_weight_decay": "**untraceable**: no commit recorded |",
                    "ce_label_smoothing": "**untraceable**: commit not in this repository |",
                    "ce_augment": f"{head[:7]}; CPU, 1 thread; Test CPU |"}
    # the older record's rule is printed with what its description left out (it compared with completed trials)
    assert f"{old_rule} (earlier completed trials only: Optuna's PercentilePruner, before 2026-12-05)" in text
