"""The package's floors: every kanime import points down, and none hides inside a function.

docs/architecture.md draws the same floors; a new module takes the floor of what it imports.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kanime"

# Lower floors never import higher ones; a unit may import itself (its own modules).
FLOORS = {
    "atomic": 0, "progress": 0, "tags": 0,
    "images": 1, "interpolation": 1, "recipe": 1,
    "models": 2, "data": 2, "run": 2,
    "tagger": 3, "inference": 3,
    "evaluation": 4,
    "training": 5, "viz": 5,
    "sweep": 6, "serve": 6,
    "cli": 7,
}  # fmt: skip


# Imports inside a function that are allowed: kanime modules that need an optional
# dependency, imported only when used.
OPTIONAL = {
    # the TFDS builder imports TensorFlow Datasets, and so TensorFlow
    ("kanime.data.tfds.source", "kanime.data.tfds.kanime_faces"),
}


def unit(module: str) -> str:
    """The floor unit of a dotted module name: `kanime.data.prepare` -> `data`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kanime"


def kanime_imports():
    """`(module, imported module, inside a function)` for every kanime import in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {
            id(node)
            for function in ast.walk(tree)
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for node in ast.walk(function)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kanime"):
                yield module, node.module, id(node) in inner
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("kanime"):
                        yield module, alias.name, id(node) in inner


def test_every_unit_has_a_floor():
    units = {unit(m) for m, _, _ in kanime_imports()} | {unit(t) for _, t, _ in kanime_imports()}
    assert units - {"kanime", "__init__"} <= set(FLOORS), units - set(FLOORS)


def test_imports_point_down():
    upward = [
        f"{module} imports {target} (floor {FLOORS[unit(module)]} -> {FLOORS[unit(target)]})"
        for module, target, _ in kanime_imports()
        if unit(target) in FLOORS and unit(module) in FLOORS and unit(module) != unit(target)
        and FLOORS[unit(target)] >= FLOORS[unit(module)]
    ]  # fmt: skip
    assert not upward, "\n".join(upward)


def test_no_kanime_import_inside_a_function():
    hidden = [
        f"{module} imports {target}"
        for module, target, inner in kanime_imports()
        if inner and (module, target) not in OPTIONAL
    ]
    assert not hidden, "\n".join(hidden)


@pytest.mark.parametrize("module", ["kanime.data.prepare", "kanime.tagger.fit"])
def test_a_planted_upward_import_is_found(module, tmp_path, monkeypatch):
    # The check itself can fail: an import from a higher floor is reported.
    assert FLOORS[unit(module)] < FLOORS["training"]
    edges = [(module, "kanime.training.fit", False)]
    monkeypatch.setattr(sys.modules[__name__], "kanime_imports", lambda: iter(edges))
    with pytest.raises(AssertionError, match="imports kanime.training.fit"):
        test_imports_point_down()
