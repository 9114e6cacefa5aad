"""benchmarks/perf scripts: a tiny run writes well-formed JSON with the hardware and versions recorded.

No timing is asserted: the figures themselves belong in docs/performance.md, not in tests.
"""

from __future__ import annotations

import json
import mmap
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from throughput import PenaltyCase, peak_memory, penalty_overhead, subset_medmnist


def _run_script(repo_root: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(repo_root / "benchmarks" / "perf" / name), *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)


def _check_environment(record: dict, device: str) -> None:
    environment = record["environment"]
    assert environment["device"] == device
    assert len(environment["commit"]) == 40 and environment["commit_source"] == "git"  # a checkout
    assert environment["hardware"].startswith("CPU: ") and environment["cpu"]
    assert environment["torch_threads"] >= 1
    assert environment["versions"]["torch"] == torch.__version__
    assert {"python", "monai", "ignite"} <= set(environment["versions"])


def _check_memory(memory: dict) -> None:
    assert memory["method"].startswith("process ") and "resident set size" in memory["method"]
    assert memory["peak_mib"] >= memory["before_mib"] > 0


def test_a_case_formulation_is_the_estimator_of_that_case_only() -> None:
    calls: list[tuple[int, ...]] = []

    def counting(feature: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
        calls.append(tuple(feature.shape))
        return feature.float().var(dim=0, unbiased=False).mean()

    cases = (PenaltyCase("cross_entropy"), PenaltyCase("library", "last_conv", 0.2),
             PenaltyCase("swapped", "last_conv", 0.2, counting))
    measured = penalty_overhead(torch.device("cpu"), image_size=16, batch_size=2, steps=1, warmup=1, rounds=1,
                                cases=cases)
    assert len(calls) == 2  # one warm-up and one timed step of "swapped", none from "library"
    assert [case["formulation"] for case in measured["cases"]][2] == "counting"


@pytest.mark.slow
def test_penalty_overhead_writes_json_with_hardware(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "penalty.json"
    result = _run_script(repo_root, "penalty_overhead.py", "--device", "cpu", "--image-size", "32", "--batch-size",
                         "4", "--steps", "1", "--warmup", "1", "--rounds", "2", "--penalty-only-repeats", "1",
                         "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["benchmark"] == "penalty_overhead"
    _check_environment(record, "cpu")
    assert record["settings"]["image_size"] == 32 and record["settings"]["precision"] == "float32"
    cases = {case["name"]: case for case in record["cases"]}
    assert list(cases) == ["cross_entropy", "penalty_last_conv_0.2", "penalty_all_conv_0.2",
                           "penalty_last_conv_0.2_permutation", "penalty_all_conv_0.2_permutation"]
    assert cases["penalty_all_conv_0.2_permutation"]["formulation"] == "permutation_gather"
    assert cases["penalty_all_conv_0.2"]["formulation"].startswith("library")
    assert [alone["settings"]["memory_format"] for alone in record["penalty_only"]] == ["contiguous", "channels_last"]
    for alone in record["penalty_only"]:
        assert alone["settings"]["tapped_layers"] == cases["penalty_all_conv_0.2"]["tapped_layers"]
        assert set(alone["milliseconds_per_call"]) == {"library", "permutation_gather"}
        assert all(len(values) == 5 for values in alone["round_milliseconds_per_call"].values())
    assert cases["cross_entropy"]["ratio_to_cross_entropy"] == 1.0 and cases["cross_entropy"]["tapped_layers"] == 0
    assert cases["penalty_last_conv_0.2"]["tapped_layers"] == 1
    assert cases["penalty_all_conv_0.2"]["tapped_layers"] > 10  # ResNet-18: every conv, downsampling ones included
    for case in cases.values():
        assert len(case["round_images_per_second"]) == 2 and case["images_per_second"] > 0
        _check_memory(case["memory"])


@pytest.mark.slow
def test_engine_overhead_writes_json_with_hardware(repo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    result = _run_script(repo_root, "engine_overhead.py", "--device", "cpu", "--train-items", "24", "--val-items",
                         "8", "--batch-size", "8", "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["benchmark"] == "engine_overhead"
    _check_environment(record, "cpu")
    settings = record["settings"]
    assert (settings["train_items"], settings["val_items"], settings["batch_size"]) == (24, 8, 8)
    assert "model.name=resnet18" in settings["overrides"] and "loss.variance_weight=0" in settings["overrides"]
    for side in ("plain_loop", "medvp_engine"):
        assert record[side]["images_per_second"] > 0
        _check_memory(record[side]["memory"])
    ratio = record["medvp_engine"]["images_per_second"] / record["plain_loop"]["images_per_second"]
    assert record["engine_to_plain_ratio"] == pytest.approx(ratio, rel=0.02)  # figures are rounded


def test_subset_keeps_the_first_items_and_the_whole_test_split(demo_data: Path, tmp_path: Path) -> None:
    subset = subset_medmnist(demo_data, tmp_path / "subset.npz", train_items=10, val_items=5)
    with np.load(demo_data) as full, np.load(subset) as small:
        assert small["train_images"].shape == (10, 28, 28) and small["val_labels"].shape == (5, 1)
        assert np.array_equal(small["train_images"], full["train_images"][:10])
        assert np.array_equal(small["test_labels"], full["test_labels"])


def test_cpu_peak_memory_sees_an_allocation_inside_the_block() -> None:
    # Fresh pages from the kernel: an allocator could hand back memory that is already resident (freed earlier in
    # the test session), which would not raise the process's resident size at all.
    with peak_memory(torch.device("cpu")) as memory:
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        time.sleep(0.1)  # where the kernel peak cannot be reset, a sampler reads every 2 ms
        block.close()
    assert memory.peak_mib - memory.before_mib >= 48
