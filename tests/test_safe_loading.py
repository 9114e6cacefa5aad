"""Nothing in the package deserializes code: torch.load with weights_only=True, YAML with safe_load, numpy
without pickles."""

import ast
import importlib
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"


def _calls(name: str):
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.relative_to(PACKAGE.parent), node


def _keyword(node: ast.Call, name: str):
    return next((ast.literal_eval(item.value) for item in node.keywords if item.arg == name), None)


def test_every_torch_load_is_weights_only():
    calls = list(_calls("torch.load"))
    assert calls  # the check looks at real code
    assert [str(path) for path, node in calls if _keyword(node, "weights_only") is not True] == []


@pytest.mark.parametrize("unsafe", ["yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads"])
def test_no_unsafe_deserializer_is_called(unsafe):
    assert [str(path) for path, _ in _calls(unsafe)] == []


def _loader_class(path: Path, node: ast.Call) -> type:
    """The class a ``yaml.load(..., Loader=X)`` call passes, looked up in the calling module."""
    loader = next((item.value for item in node.keywords if item.arg == "Loader"), None)
    assert loader is not None, f"{path}:{node.lineno}: yaml.load without Loader="
    module = importlib.import_module(".".join(path.with_suffix("").parts))
    return eval(ast.unparse(loader), vars(module))  # a name or attribute in that module, e.g. yaml.SafeLoader


def test_every_yaml_load_uses_a_safe_loader():
    """``yaml.load`` only with ``yaml.SafeLoader`` or a subclass of it (the config loader's duplicate-key check)."""
    unsafe = [f"{path}:{node.lineno}" for path, node in _calls("yaml.load")
              if not issubclass(_loader_class(path, node), yaml.SafeLoader)]
    assert unsafe == []


def test_numpy_never_loads_pickles():
    calls = list(_calls("np.load"))
    assert calls
    assert [str(path) for path, node in calls if _keyword(node, "allow_pickle") is not False] == []
