"""Imports point one way: the leaves (losses, networks, transforms, data) never import what sits above them
(config, engine, cli, experiments, bundle, inference), and the loss imports only torch, MONAI and the standard
library. Read from the source with ast, imports under TYPE_CHECKING and inside functions included."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
LEAVES = ("losses", "networks", "transforms", "data")
ABOVE = ("config", "engine", "cli", "experiments", "bundle", "inference")


def _imports(path: Path, package: str | None = None) -> set[str]:
    """Absolute module names imported by ``path`` (relative imports resolved against its package)."""
    names = set()
    package = package or ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
    return names


def _modules(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


@pytest.mark.parametrize("leaf", LEAVES)
def test_a_leaf_never_imports_the_layers_above_it(leaf):
    wrong = {f"{path.relative_to(PACKAGE)}: {name}" for path in _modules(leaf) for name in _imports(path)
             if any(name == f"pipeline.{above}" or name.startswith(f"pipeline.{above}.") for above in ABOVE)}
    assert not wrong, sorted(wrong)


def test_the_loss_imports_only_torch_monai_and_the_standard_library():
    allowed_roots = {"torch", "monai", "__future__", "pipeline"}
    found = {name for path in _modules("losses") for name in _imports(path)}
    outside = {name for name in found if name.split(".")[0] not in allowed_roots | sys.stdlib_module_names}
    inside = {name for name in found if name.startswith("pipeline.") and not name.startswith("pipeline.losses")}
    assert not outside and not inside, sorted(outside | inside)


def test_the_checker_sees_typing_only_relative_and_function_level_imports(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline.config.schema import X\n"
                      "from ..engine import train\n\ndef f():\n    import pipeline.cli\n")
    assert {"pipeline.config.schema", "pipeline.engine", "pipeline.cli"} <= _imports(module, "pipeline.data")
