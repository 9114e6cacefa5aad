"""Tables and plots from a benchmark's raw results: mean +- sd and 95% intervals over seeds, paired differences."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np

from pipeline.errors import DataError
from pipeline.extras import require_extra

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["PREAMBLE", "load_results", "summarize", "paired_difference", "render_report", "write_report"]

PREAMBLE = """# Benchmarks: does the variance penalty reduce overfitting?

Regenerated from the raw results in `benchmarks/results/` by `medvp report`; the specs are in
`benchmarks/specs/`. Every arm is trained identically except for its regularizer, over several seeds, on the
official splits; checkpoints are chosen on the validation split and the test split is read once per run, after
training. Cells are mean ± sd over seeds; intervals are 95% t intervals of the mean over seeds; paired
differences pair the runs of the same seed (same initialization and data order) and use a paired t-test.

How the arms were made:
- `ce`: cross-entropy (BCE on one logit for binary tasks), `lambda_` 1, no penalty.
- `vp_original`: the method's published setting (variance_weight 0.01, feature_sampling_ratio 0.2, lambda_ 0.5,
  taps `last_block`); `vp_original_last_conv` and `vp_original_all_conv` move only the tap (the side table).
- Tuned arms (`vp_tuned`, `ce_dropout`, `ce_label_smoothing`, `ce_weight_decay`): `medvp tune --spec` with the
  same number of Optuna trials per arm (TPE, seeded; median pruning on validation AUC after 3 complete trials),
  objective the best validation AUC of a run at the benchmark's scale. The test split is never loaded while
  tuning. With 6 trials TPE is still in its random start-up phase, so this is a small random search, and since
  every study is seeded alike, an arm tries the same candidate settings on every dataset (the datasets differ
  in which candidate validates best, and in what pruning stops). Validation AUC is near its ceiling on
  PneumoniaMNIST (about 0.99), so there the search separates settings weakly.
- `ce_augment` / `vp_augment`: the clinically safe allow-list (rotation ±10°, translation ±10%, zoom 0.9-1.1,
  each with probability 0.5), without and with the original penalty.
- `original_cnn_ce` / `original_cnn_vp`: the method's own network (four 1x1 conv layers of 10 filters) with and
  without its published penalty, at 28 px rather than its 224 px.

A spec in `benchmarks/specs/` without a section below has not been run yet. Times are wall-clock on shared CPU
cores while other jobs ran, and the runs used 1 or 2 threads: they show the order of cost, not a throughput
measurement (see `docs/performance.md` for that).

"""

_COLUMNS = (("test", "accuracy", "test acc"), ("test", "auc", "test AUC"), ("test", "balanced_accuracy", "bal. acc"),
            ("test", "nll", "test NLL"), ("test", "ece", "test ECE"), ("test_last_epoch", "accuracy", "last-epoch acc"),
            ("test_last_epoch", "auc", "last-epoch AUC"))
#: generalization at the selected checkpoint, and the cost
_GAP_COLUMNS = (("gaps", "accuracy_train_minus_val", "acc train−val"), ("gaps", "accuracy_train_minus_test",
                "acc train−test"), ("gaps", "loss_train_minus_val", "NLL train−val"),
                ("gaps", "loss_train_minus_test", "NLL train−test"), (None, "best_epoch", "epoch of best val AUC"),
                (None, "train_seconds", "train s"))


def _stats():
    """scipy.stats (the ``medvp[stats]`` extra)."""
    return require_extra("scipy.stats", "benchmark reports (t-intervals, paired t-tests)")


def _value(result: dict, section: str | None, metric: str) -> float:
    return result[metric] if section is None else result[section][metric]


def _table(by_arm: dict[str, list[dict]], columns: tuple) -> list[str]:
    lines = ["| arm | seeds | " + " | ".join(title for _, _, title in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for arm, results in by_arm.items():
        cells = [_cell(summarize([_value(r, section, metric) for r in results]), 1 if section is None else 3)
                 for section, metric, _ in columns]
        lines.append(f"| {arm} | {len(results)} | " + " | ".join(cells) + " |")
    return lines


def load_results(results_dir: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The spec (``spec.json``) and the per-run results by arm, seeds sorted."""
    spec_path = results_dir / "spec.json"
    if not spec_path.is_file():
        raise DataError(f"{results_dir}: not a benchmark results folder (no spec.json)")
    spec = json.loads(spec_path.read_text())
    by_arm: dict[str, list[dict]] = {}
    for path in sorted(results_dir.glob("*/seed_*.json")):
        result = json.loads(path.read_text())
        by_arm.setdefault(result["arm"], []).append(result)
    for results in by_arm.values():
        results.sort(key=lambda r: r["seed"])
    return spec, {arm: by_arm[arm] for arm in spec["arms"] if arm in by_arm}


def summarize(values: list[float], confidence: float = 0.95) -> dict:
    """Mean, sample sd and the t-based interval of the mean."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return {"n": len(array), "mean": mean, "sd": None, "low": None, "high": None}
    sd = float(array.std(ddof=1))
    half = float(_stats().t.ppf(0.5 + confidence / 2, len(array) - 1) * sd / np.sqrt(len(array)))
    return {"n": len(array), "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def paired_difference(arm: list[dict], reference: list[dict], section: str, metric: str) -> dict | None:
    """Arm minus reference over the seeds both have: mean, 95% interval and the paired t-test's p-value."""
    reference_by_seed = {r["seed"]: r[section][metric] for r in reference}
    pairs = [(r[section][metric], reference_by_seed[r["seed"]]) for r in arm if r["seed"] in reference_by_seed]
    if len(pairs) < 2:
        return None
    differences = [a - b for a, b in pairs]
    summary = summarize(differences)
    p_value = float(_stats().ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
    summary["p"] = None if np.isnan(p_value) else p_value  # identical differences on every seed: no test
    return summary


def _cell(summary: dict, digits: int = 3) -> str:
    if summary["sd"] is None:
        return f"{summary['mean']:.{digits}f}"
    return f"{summary['mean']:.{digits}f} ± {summary['sd']:.{digits}f}"


def _number(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def arm_colours(count: int) -> list[tuple]:
    """One colour per arm, none repeated up to 20 arms (tab10, or tab20 beyond 10 arms)."""
    palette = plt.get_cmap("tab10" if count <= 10 else "tab20")
    return [palette(index % palette.N) for index in range(count)]


def _plot_curves(spec: dict, by_arm: dict[str, list[dict]], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    colours = arm_colours(len(by_arm))
    for index, (arm, results) in enumerate(by_arm.items()):
        length = min(len(r["history"]) for r in results)
        epochs = np.arange(1, length + 1)
        for axis, key in zip(axes, ("val_loss", "val_auc"), strict=True):
            values = np.asarray([[h[key] for h in r["history"][:length]] for r in results])
            mean, sd = values.mean(0), values.std(0)
            axis.plot(epochs, mean, label=arm, color=colours[index])
            axis.fill_between(epochs, mean - sd, mean + sd, color=colours[index], alpha=0.15)
        train = np.asarray([[h["train_classification"] for h in r["history"][:length]] for r in results]).mean(0)
        axes[0].plot(epochs, train, linestyle=":", color=colours[index])
    axes[0].set_title("classification loss: validation (solid, ±sd band) and train (dotted)")
    axes[1].set_title("validation AUC (mean ± sd over seeds)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.suptitle(spec["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def render_report(results_dir: Path, figure_path: Path | None = None, figure_link: str | None = None) -> str:
    """A markdown section for one benchmark: per-arm table, paired differences against ``ce``, curves."""
    spec, by_arm = load_results(results_dir)
    if not by_arm:
        raise DataError(f"{results_dir}: no results yet")
    any_result = next(iter(by_arm.values()))[0]
    hardware = "; ".join(sorted({r["hardware"] for results in by_arm.values() for r in results}))
    lines = [f"## {spec['name']}", "", spec.get("description", "").strip(), "",
             f"Base config `{Path(spec['base_config']).name}` with `{' '.join(spec['overrides'])}`; "
             f"seeds {spec['seeds']}. Hardware: {hardware}; versions {any_result['versions']}. "
             f"Model selection: {any_result['selection']}; the test split is read once per run, after training.",
             "", *_table(by_arm, _COLUMNS), "",
             "Generalization gaps at the selected checkpoint (train minus validation or test; accuracy and NLL), "
             "the epoch of the best validation AUC, and training time:", "", *_table(by_arm, _GAP_COLUMNS)]
    lines += ["", "95% intervals of the mean (t distribution over seeds):", "",
              "| arm | test accuracy | test AUC |", "|---|---|---|"]
    for arm, results in by_arm.items():
        intervals = []
        for metric in ("accuracy", "auc"):
            s = summarize([r["test"][metric] for r in results])
            intervals.append("n/a" if s["low"] is None else f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]")
        lines.append(f"| {arm} | " + " | ".join(intervals) + " |")
    if spec.get("published"):
        lines += ["", "Published figures on the same test split (not run here):", "", "| method | test AUC | test "
                  "accuracy | source |", "|---|---|---|---|"]
        lines += [f"| {row['method']} | {row['auc']} | {row['accuracy']} | {row['source']} |"
                  for row in spec["published"]]
    if spec.get("arm_settings"):
        lines += ["", "Tuned hyperparameters (`medvp tune` on the validation split; the test split is not read):", "",
                  "| arm | settings |", "|---|---|"]
        lines += [f"| {arm} | " + ", ".join(f"{key} = {_number(value)}" for key, value in settings.items()) + " |"
                  for arm, settings in spec["arm_settings"].items() if arm in by_arm]
    pairs = [(arm, "ce") for arm in by_arm if arm != "ce"]
    pairs += [tuple(pair) for pair in spec.get("comparisons", []) if pair[0] in by_arm and pair[1] in by_arm]
    lines += ["", "Paired differences (same seeds; arm minus reference: mean, 95% interval, paired t-test):", "",
              "| arm | reference | Δ test accuracy | p | Δ test AUC | p |", "|---|---|---|---|---|---|"]
    for arm, reference in pairs:
        cells = []
        for metric in ("accuracy", "auc"):
            d = paired_difference(by_arm[arm], by_arm.get(reference, []), "test", metric)
            cells += ["n/a", "n/a"] if d is None else [f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]",
                                                       "– (same on every seed)" if d["p"] is None
                                                       else f"{d['p']:.3f}"]
        lines.append(f"| {arm} | {reference} | " + " | ".join(cells) + " |")
    if figure_path is not None:
        _plot_curves(spec, by_arm, figure_path)
        lines += ["", f"![curves]({figure_link or figure_path.name})"]
    if spec.get("conclusion", "").strip():
        lines += ["", "**What we saw.** " + " ".join(spec["conclusion"].split())]
    return "\n".join(lines) + "\n"


def write_report(results_dirs: list[Path], out: Path, preamble: str = "") -> Path:
    """Regenerate the benchmark document from raw results folders (plots go beside it)."""
    sections = []
    for results_dir in results_dirs:
        figure = out.parent / "benchmarks" / f"{results_dir.name}_curves.png"
        sections.append(render_report(results_dir, figure, f"benchmarks/{figure.name}"))
    out.write_text(preamble + "\n".join(sections), encoding="utf-8")
    return out
