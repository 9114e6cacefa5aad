"""Experiments: multi-seed comparisons of the variance penalty against cross-entropy and standard regularizers."""

from pipeline.experiments.report import load_results, paired_difference, render_report, summarize, write_report
from pipeline.experiments.runner import run_benchmark, run_one
from pipeline.experiments.spec import ARMS, BenchmarkSpec, arm_overrides, load_spec

__all__ = ["ARMS", "BenchmarkSpec", "arm_overrides", "load_spec", "run_benchmark", "run_one", "load_results",
           "paired_difference", "render_report", "summarize", "write_report"]
