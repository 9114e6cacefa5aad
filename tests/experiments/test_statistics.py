"""Holm, Benjamini-Hochberg, MDD and the paired test against values worked out by hand (no statistics package
as the oracle)."""

import pytest

from pipeline.experiments.statistics import (benjamini_hochberg, format_p, holm, minimal_detectable_difference,
                                             paired_test, summarize)


def test_holm_step_down_by_hand():
    # sorted: 0.005 (x4), 0.01 (x3), 0.03 (x2), 0.04 (x1) -> 0.02, 0.03, 0.06, max(0.04, 0.06) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # entries that are no test stay out of the family (m = 3): 0.3*3 = 0.9, 0.6*2 = 1.2 -> capped at 1, then
    # max(0.7*1, 1.0) = 1.0
    assert holm([0.6, None, 0.3, 0.7]) == [pytest.approx(1.0), None, pytest.approx(0.9), pytest.approx(1.0)]


def test_benjamini_hochberg_by_hand():
    # p * m / rank: 0.005*4/1 = 0.02, 0.01*4/2 = 0.02, 0.03*4/3 = 0.04, 0.04*4/4 = 0.04; running minimum from the top
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # 0.02*3/1 = 0.06 but 0.03*3/2 = 0.045 below it: the smaller rank takes the later minimum
    assert benjamini_hochberg([0.02, 0.03, 0.9, None]) == [pytest.approx(0.045), pytest.approx(0.045),
                                                           pytest.approx(0.9), None]


def test_minimal_detectable_difference_by_hand():
    # t(0.975, 9) = 2.2622, t(0.80, 9) = 0.8834 (tables): (2.2622 + 0.8834) / sqrt(10) = 0.99473 per unit sd
    assert minimal_detectable_difference(1.0, 10) == pytest.approx(0.99473, abs=2e-4)
    # t(0.975, 4) = 2.7764, t(0.80, 4) = 0.9410: (3.7174) * 0.02 / sqrt(5) = 0.033249
    assert minimal_detectable_difference(0.02, 5) == pytest.approx(0.033249, abs=1e-4)
    assert minimal_detectable_difference(1.0, 1) is None


def test_paired_test_by_hand():
    # differences 0.01, 0.02, 0.02: mean 0.016667, sd 0.0057735, t = 0.016667 / (0.0057735 / sqrt 3) = 5.0,
    # two-sided p with 2 df = 1 - 5/sqrt(27) = 0.037750 (t with 2 df has a closed-form cdf)
    test = paired_test([0.81, 0.84, 0.86], [0.80, 0.82, 0.84])
    assert test["mean"] == pytest.approx(0.05 / 3)
    assert test["sd"] == pytest.approx(0.0057735, rel=1e-4)
    assert test["p"] == pytest.approx(1 - 5 / 27**0.5, rel=1e-4)
    assert test["dz"] == pytest.approx(0.016667 / 0.0057735, rel=1e-3)
    assert test["low"] < test["mean"] < test["high"]
    same = paired_test([0.8, 0.9], [0.7, 0.8])  # the same difference on every seed: no test, not nan
    assert same["mean"] == pytest.approx(0.1) and same["p"] is None and same["dz"] is None
    assert paired_test([0.8], [0.7]) is None


def test_summary_interval_and_p_formatting():
    summary = summarize([0.80, 0.82, 0.84])
    # t(0.975, 2) = 4.303: half width 4.303 * 0.02 / sqrt(3)
    assert summary["high"] - summary["mean"] == pytest.approx(4.303 * 0.02 / 3**0.5, rel=1e-3)
    assert [format_p(p) for p in (0.0004, 0.001, 0.0426, None)] == ["< 0.001", "0.001", "0.043", "–"]
