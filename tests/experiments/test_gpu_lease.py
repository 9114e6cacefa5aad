"""benchmarks/gpu_lease.sh prepare: what a GPU machine is sent names the commit only when the files are that
commit's, and the hashes it carries catch a file that differs."""

import subprocess
from pathlib import Path

import pytest


def _prepare(checkout: Path, wheels: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "benchmarks/gpu_lease.sh", "prepare", str(wheels)], cwd=checkout,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def checkout(repo_root: Path, tmp_path: Path) -> Path:
    if not (repo_root / ".git").exists():
        pytest.skip("needs the git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(repo_root), str(clone)], check=True, timeout=120)
    return clone


def test_prepare_records_the_commit_and_hashes_that_catch_a_changed_file(checkout: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"not a real wheel")
    prepared = _prepare(checkout, wheels)
    assert prepared.returncode == 0, prepared.stderr
    carried = checkout / ".gpu-wheels"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True).stdout
    assert (carried / "commit").read_text() == head and (carried / "demo-1.0-py3-none-any.whl").is_file()
    listed = {line.split(maxsplit=1)[1] for line in (carried / "manifest.sha256").read_text().splitlines()}
    assert {"pipeline/experiments/provenance.py", "configs/pneumoniamnist_demo.yaml"} <= listed
    check = ["sha256sum", "-c", "--quiet", ".gpu-wheels/manifest.sha256"]
    assert subprocess.run(check, cwd=checkout, capture_output=True).returncode == 0
    changed = checkout / "pipeline" / "experiments" / "provenance.py"
    changed.write_text(changed.read_text() + "\n# changed after prepare\n")
    assert subprocess.run(check, cwd=checkout, capture_output=True).returncode != 0
    refused = _prepare(checkout, wheels)  # and a tree with uncommitted changes is not prepared at all
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr
