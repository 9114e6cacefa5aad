"""Benchmarks: multi-seed comparisons of the variance penalty against cross-entropy and standard regularizers."""

from pipeline.benchmark.report import load_results, paired_difference, render_report, summarize, write_report
from pipeline.benchmark.runner import run_benchmark, run_one
from pipeline.benchmark.spec import ARMS, BenchmarkSpec, arm_overrides, load_spec

__all__ = ["ARMS", "BenchmarkSpec", "arm_overrides", "load_spec", "run_benchmark", "run_one", "load_results",
           "paired_difference", "render_report", "summarize", "write_report"]
