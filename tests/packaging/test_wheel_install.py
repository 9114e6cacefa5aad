"""The package outside an editable checkout: a wheel installed into a fresh virtual environment runs the demo and
``make-demo-dicom`` from another folder (the demo data is package data); dependency declarations match the imports."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

import pipeline

#: import name -> distribution name, where they differ
_DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "ignite": "pytorch-ignite", "cpuinfo": "py-cpuinfo"}


def _project(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(text).name.lower() for text in requirements if not text.startswith("medvp")}


def _imports(package: Path) -> tuple[set[str], set[str]]:
    """Top-level modules the package imports (``import``/``from``), and those it loads through ``require_extra``."""
    direct, optional = set(), set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                direct |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                direct.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require_extra" and node.args:
                optional.add(node.args[0].value.split(".")[0])
    third_party = {name for name in direct if name not in sys.stdlib_module_names and name != "pipeline"}
    return third_party, optional


def test_every_import_is_declared_and_optional_ones_are_extras(repo_root: Path) -> None:
    project = _project(repo_root)
    core = _names(project["dependencies"])
    extras = {name: _names(requirements) for name, requirements in project["optional-dependencies"].items()}
    direct, optional = _imports(repo_root / "pipeline")
    undeclared = {name for name in direct if _DISTRIBUTIONS.get(name, name).lower() not in core}
    assert not undeclared, f"imported but not in [project] dependencies: {sorted(undeclared)}"
    from pipeline.extras import EXTRAS

    for module in optional:
        assert module.lower() not in core, f"{module} is loaded as an extra but declared as a core dependency"
        assert module.lower() in extras[EXTRAS[module]], f"{module}: not in the extra medvp[{EXTRAS[module]}]"
    assert {"itk", "tune", "stats", "all", "dev"} <= set(extras)
    assert "torch" in core and "numpy" in core and "sqlalchemy" in extras["tune"]


def test_the_torch_lower_bound_is_one_monai_accepts(repo_root: Path) -> None:
    ours = next(Requirement(text) for text in _project(repo_root)["dependencies"] if text.startswith("torch"))
    lowest = next(spec.version for spec in ours.specifier if spec.operator == ">=")
    monai_torch = next(Requirement(text) for text in importlib.metadata.requires("monai")
                       if Requirement(text).name == "torch" and Requirement(text).marker is None)
    assert monai_torch.specifier.contains(lowest), f"medvp allows torch {lowest}; MONAI needs {monai_torch.specifier}"


def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, monkeypatch) -> None:
    from pipeline.data.readers import read_image
    from pipeline.errors import MedvpError

    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # import SimpleITK now raises ImportError
    image = tmp_path / "scan.mha"
    image.write_bytes(b"ObjectType = Image\n")
    with pytest.raises(MedvpError, match=r"scan.mha: reading .mha files needs SimpleITK.*pip install 'medvp\[itk\]'"):
        read_image(image)


@pytest.mark.slow
def test_the_wheel_runs_the_demo_and_make_demo_dicom_from_another_folder(repo_root: Path, tmp_path: Path) -> None:
    """``pip wheel`` of a copy of the sources, installed (not editable, no dependencies: the environment's torch and
    MONAI are reused) into a fresh venv; the run happens in an empty folder with no PYTHONPATH."""
    source = tmp_path / "source"
    shutil.copytree(repo_root / "pipeline", source / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(wheels), str(source)], check=True, timeout=300)
    wheel = next(wheels.glob("medvp-*.whl"))
    assert wheel.name.startswith(f"medvp-{pipeline.__version__}-")  # the version is written once, in the package
    environment = tmp_path / "venv"
    venv.create(environment, system_site_packages=True, with_pip=False)
    python = environment / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet",
                    str(wheel)], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    shutil.copy(repo_root / "configs" / "pneumoniamnist_demo.yaml", work / "demo.yaml")
    assert "pipeline.cli" in (environment / "bin" / "medvp").read_text()  # the console script the wheel installs
    # One process (start-up is most of the cost): where pipeline comes from, the demo for one epoch, make-demo-dicom.
    script = ("import sys, pipeline; from pipeline.cli import main; print('imported from', pipeline.__file__); "
              "sys.exit(main(['--quiet', 'train', 'demo.yaml', '--set', 'training.max_epochs=1', '--set', "
              "'data.batch_size=256', '--set', 'model.options.channels=[8,8,16,16]', '--set', "
              "'evaluation.bootstrap_samples=10']) or main(['make-demo-dicom', 'dicom', '--per-class', '2']))")
    result = subprocess.run([str(python), "-c", script], cwd=work, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    origin = Path(result.stdout.split("imported from ", 1)[1].splitlines()[0])
    assert origin.is_relative_to(environment), f"pipeline imported from {origin}, not from the wheel"
    summary = json.loads((work / "runs" / "demo" / "train_summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["items"]["train"] == 4708  # the whole packaged PneumoniaMNIST
    assert len(list((work / "dicom").rglob("*.dcm"))) == 4
