"""The package's layers: every import points down (or stays in its own room), and no modules import each
other in a circle, in handler/, bench/ and testing/ alike (imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# handler's rooms from the top down; a module may import its own room and the rooms below it.
LAYERS = (("__main__",), ("entry",), ("api",), ("notify",), ("registry",), ("catalog",), ("stores",), ("rules",),
          ("errors", "config", "logs", "memory"))


def modules(root: str) -> dict[str, Path]:
    found = {}
    for path in sorted((REPO / root).rglob("*.py")):
        if "vendor" in path.parts or any(part.startswith(".") for part in path.relative_to(REPO).parts):
            continue  # shipped dependencies, and virtualenvs such as bench/.mlflow-venv
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that a module imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = {**modules("handler"), **modules("bench"), **modules("testing")}
    return {name: imports(name, path, known) for name, path in known.items()}


def room(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for floor, names in enumerate(LAYERS):
        if top in names:
            return floor
    raise AssertionError(f"{module} is in no layer: add its room to LAYERS")


def test_every_import_of_the_handler_package_points_down() -> None:
    edges = graph()
    upward = [f"{source} -> {target}" for source, targets in edges.items() if source.startswith("handler.")
              for target in targets if target.startswith("handler.") and target != "handler" and room(target) < room(source)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_a_layer_that_imports_upward_is_detected(tmp_path: Path) -> None:
    """The check itself can fail: a catalog module importing the registry is an upward import."""
    assert room("handler.catalog.workspace") > room("handler.registry.models")
    source = tmp_path / "m.py"
    source.write_text("from ..registry import models\n")
    assert imports("handler.catalog.m", source, {"handler.registry.models": source, "handler.registry": source}) == {
        "handler.registry.models"}
