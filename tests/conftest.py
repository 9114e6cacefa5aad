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
