import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The PneumoniaMNIST file shipped as package data (real chest X-rays, official splits)."""
    from pipeline.demo_data import packaged_file

    return packaged_file("pneumoniamnist.npz")


# --- a trained model, its bundle and PNG inputs: shared by tests/bundle and tests/inference ---


def _run_module(module: str, *args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m module args``; PYTHONPATH puts this checkout first (a SimpleCNN bundle imports medvp)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


@pytest.fixture(scope="session")
def run_module():
    """Run ``python -m MODULE ARGS...`` with this checkout importable: ``run_module(module, *args, cwd=None)``."""
    return _run_module


@pytest.fixture(scope="session")
def small_run(repo_root, tmp_path_factory) -> Path:
    """A 1-epoch demo model (small SimpleCNN), evaluated on the test split."""
    root = tmp_path_factory.mktemp("runs")
    result = _run_module("pipeline.cli", "train", repo_root / "configs" / "pneumoniamnist_demo.yaml",
                         "--set", "training.max_epochs=1", "--set", f"output.root={root}",
                         "--set", "evaluation.splits=[test]", "--set", "evaluation.bootstrap_samples=20",
                         "--set", "model.options.channels=[8,8,16,16]", cwd=repo_root)
    assert result.returncode == 0, result.stderr
    return root / "pneumoniamnist_demo"


@pytest.fixture(scope="session")
def bundle(small_run, repo_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "pneumonia_bundle"
    result = _run_module("pipeline.cli", "export-bundle", small_run, out, "--modality", "X-ray", cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert "metadata verified" in result.stdout
    assert " - INFO - " not in result.stdout + result.stderr  # MONAI's bundle tools are kept quiet
    return out


@pytest.fixture(scope="session")
def png_folder(demo_data, tmp_path_factory) -> Path:
    """The first 12 test images of the demo file, written as 8-bit PNGs (numpy (H, W) order)."""
    folder = tmp_path_factory.mktemp("pngs")
    with np.load(demo_data) as archive:
        images = archive["test_images"][:12]
    for index, image in enumerate(images):
        Image.fromarray(image).save(folder / f"test_{index:03d}.png")
    return folder


@pytest.fixture(scope="session")
def small_demo_data(demo_data, tmp_path_factory) -> Path:
    """The first 512 training and 128 validation and test items of the embedded PneumoniaMNIST file."""
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "pneumoniamnist_small.npz"
    sizes = {"train": 512, "val": 128, "test": 128}
    with np.load(demo_data) as archive:
        np.savez(path, **{f"{split}_{kind}": archive[f"{split}_{kind}"][:size] for split, size in sizes.items()
                          for kind in ("images", "labels")})
    return path


@pytest.fixture
def restore_logging():
    """For tests that call ``pipeline.cli.main`` in-process: it reconfigures the root logger."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@dataclass(frozen=True)
class CliResult:
    """What ``subprocess.run`` would give for a ``medvp`` command: exit code, stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def medvp_in_process(capsys, restore_logging):
    """``medvp_in_process(*args)`` runs ``medvp ARGS...`` in this process and returns a :class:`CliResult`.

    Same verbs, exit codes and output as the console script, without the seconds an interpreter spends importing
    PyTorch and MONAI; an unexpected exception propagates (the console script would print its traceback).
    """
    from pipeline.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


# --- spawned process groups (distributed tests) ---


def _spawn_processes(worker, args: tuple, processes: int, timeout: float = 300.0) -> None:
    """Run ``worker(rank, *args)`` in ``processes`` spawned processes; fail the test, not the CI job, on a hang."""
    context = mp.start_processes(worker, args=args, nprocs=processes, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):  # raises ProcessRaisedException if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{processes} spawned processes were still running after {timeout:.0f} s")


@pytest.fixture(scope="session")
def spawn_processes():
    """``spawn_processes(worker, args, processes)``: ``worker(rank, *args)`` in each process, with a deadline."""
    return _spawn_processes


# Fixtures that train a model for real: every test using one is slow (the fast lane, -m "not slow", skips it).
_TRAINING_FIXTURES = {"small_run", "bundle", "resnet_run", "demo_run", "runs"}


# The longest test files (measured with --durations on 2 cores) go first: with pytest-xdist's --dist loadfile each
# file runs on one worker in the order collected, so a long file started last would leave the other worker idle.
_LONGEST_FIRST = ("tests/cli/test_cli.py", "tests/config/test_config_fuzz.py", "tests/engine/test_resume.py",
                  "tests/bundle/test_export.py", "tests/engine/test_distributed.py", "tests/data/test_loader_fuzz.py",
                  "tests/bundle/test_bundle_workflows.py", "tests/engine/test_train.py")


def _start_rank(item) -> int:
    path = Path(str(item.fspath)).relative_to(REPO).as_posix()
    return _LONGEST_FIRST.index(path) if path in _LONGEST_FIRST else len(_LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=_start_rank)  # stable: within a file, and among the rest, the collected order stays


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist, each worker (and what it spawns) gets its share of the cores, so two workers on two
    cores do not run two threads each; tests that compare a run with a spawned process see one thread count."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()
