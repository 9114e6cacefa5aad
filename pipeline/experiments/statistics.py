"""Paired comparisons over seeds: differences with t intervals, effect sizes, minimal detectable differences, and
multiplicity adjustments (Holm's step-down family-wise and Benjamini-Hochberg's false-discovery-rate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.extras import require_extra

__all__ = ["summarize", "paired_test", "holm", "benjamini_hochberg", "minimal_detectable_difference",
           "format_p"]


def _stats():
    """scipy.stats (the ``medvp[stats]`` extra)."""
    return require_extra("scipy.stats", "benchmark statistics (t-intervals, paired t-tests)")

def summarize(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, sample sd and the t-based interval of the mean."""
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if len(array) < 2:
        return {"n": len(array), "mean": mean, "sd": None, "low": None, "high": None}
    sd = float(array.std(ddof=1))
    half = float(_stats().t.ppf(0.5 + confidence / 2, len(array) - 1) * sd / np.sqrt(len(array)))
    return {"n": len(array), "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def minimal_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean paired difference a two-sided paired t-test at ``alpha`` detects with ``power``,
    given the sd of the differences over n pairs: (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n) (the usual
    t approximation of the noncentral-t power; slightly optimistic for very small n). None below 2 pairs."""
    if n < 2:
        return None
    return float((_stats().t.ppf(1 - alpha / 2, n - 1) + _stats().t.ppf(power, n - 1)) * sd / np.sqrt(n))


def paired_test(values: Sequence[float], references: Sequence[float]) -> dict | None:
    """Arm minus reference over paired seeds: mean, sd, 95% t interval, paired t-test p, Cohen's d_z (mean / sd
    of the differences) and the minimal detectable difference at 80% power. None below 2 pairs; p, d_z are None
    when every difference is the same (no spread: no test)."""
    differences = np.asarray(values, dtype=float) - np.asarray(references, dtype=float)
    if len(differences) < 2:
        return None
    summary = summarize(differences)
    spread = summary["sd"] > 1e-12 * max(1.0, abs(summary["mean"]))
    summary["p"] = float(_stats().ttest_rel(values, references).pvalue) if spread else None
    summary["dz"] = summary["mean"] / summary["sd"] if spread else None
    summary["mdd"] = minimal_detectable_difference(summary["sd"], len(differences))
    return summary


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment over the family of the given p-values (None entries are not tests and stay
    None): sorted ascending, p_(i) * (m - i + 1), made non-decreasing, capped at 1."""
    tested = [(p, index) for index, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(tested), 0.0
    for rank, (p, index) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg q-values (None entries stay None): p_(i) * m / i, made non-increasing from the largest
    down, capped at 1."""
    tested = [(p, index) for index, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    m, running = len(tested), 1.0
    for rank, (p, index) in reversed(list(enumerate(sorted(tested), start=1))):
        running = min(running, p * m / rank)
        adjusted[index] = running
    return adjusted


def format_p(p: float | None) -> str:
    """A p-value as printed: '< 0.001' below 0.001, three decimals otherwise, '–' when there is no test."""
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
