from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_data() -> Path:
    """The embedded PneumoniaMNIST file (real chest X-rays, official splits)."""
    return REPO / "data" / "pneumoniamnist.npz"


@pytest.fixture(scope="session")
def small_demo_data(tmp_path_factory) -> Path:
    """The first 512 training and 128 validation and test items of the embedded PneumoniaMNIST file."""
    import numpy as np

    path = tmp_path_factory.mktemp("data") / "pneumoniamnist_small.npz"
    sizes = {"train": 512, "val": 128, "test": 128}
    with np.load(REPO / "data" / "pneumoniamnist.npz") as archive:
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
