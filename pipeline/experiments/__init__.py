"""Experiments: multi-seed comparisons of the variance penalty against cross-entropy and standard regularizers."""

from pipeline.experiments.report import load_results, load_section, write_report
from pipeline.experiments.runner import run_benchmark, run_one
from pipeline.experiments.spec import ARMS, BenchmarkSpec, arm_overrides, load_spec
from pipeline.experiments.statistics import benjamini_hochberg, holm, paired_test, summarize

__all__ = ["ARMS", "BenchmarkSpec", "arm_overrides", "load_spec", "run_benchmark", "run_one", "load_results",
           "load_section", "paired_test", "summarize", "holm", "benjamini_hochberg", "write_report"]
