"""The design's lines, read from the source: who may import whom, and no import cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "synthaug"


def module_name(path: Path) -> str:
    """synthaug/data/dataset.py -> synthaug.data.dataset (packages by their __init__)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every synthaug / synthaug_cli module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from synthaug import plots` imports a submodule, `from synthaug import fit` the package root
            found.add(node.module if node.module != "synthaug" else "synthaug.<from>")
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] in ("synthaug", "synthaug_cli")}


MODULES = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
EXISTING = set(MODULES)


def resolved(imports: set[str]) -> set[str]:
    """Imports narrowed to module names (drop the function and class names of `from m import f`)."""
    return {m for m in imports if m in EXISTING}


def test_the_library_never_imports_the_cli_or_the_package_root():
    for name, imports in MODULES.items():
        assert not {m for m in imports if m.startswith("synthaug_cli")}, name
        if name != "synthaug":
            root_names = {m for m in imports if m.startswith("synthaug.") and m.count(".") == 1} - EXISTING
            assert "synthaug" not in imports and not root_names - {"synthaug.<from>"}, \
                f"{name} imports the package root ({sorted(root_names)})"


def test_models_know_nothing_of_data_training_or_files():
    banned = ("synthaug.data", "synthaug.train", "synthaug.runs", "synthaug.export", "synthaug.fsutil",
              "synthaug.benchmark", "synthaug.metrics")
    for name, imports in MODULES.items():
        if name.startswith("synthaug.models"):
            assert not [m for m in imports if m.startswith(banned)], name


@pytest.mark.parametrize("name", ["synthaug.generate", "synthaug.export", "synthaug.metrics", "synthaug.benchmark",
                                  "synthaug.tune", "synthaug.classify", "synthaug.report", "synthaug.data.dataset",
                                  "synthaug.data.fresh", "synthaug.runs"])
def test_generation_and_evaluation_never_import_the_training_loop(name):
    assert "synthaug.train" not in MODULES[name]


def test_no_import_cycle():
    graph = {name: resolved(imports) - {name} for name, imports in MODULES.items() if name != "synthaug"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt == "synthaug" or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path + [nxt]))
            if not state.get(nxt):
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [node])
