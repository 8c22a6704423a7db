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
    banned = ("synthaug.data", "synthaug.train", "synthaug.runs", "synthaug.exporting", "synthaug.fsutil",
              "synthaug.benchmarking", "synthaug.metrics")
    for name, imports in MODULES.items():
        if name.startswith("synthaug.models"):
            assert not [m for m in imports if m.startswith(banned)], name


# The floors of the package, lowest first: a module imports only from floors below its own (and, inside data/ and
# models/, from its own package). Nothing runs back up: data/ and the engine know no exports or classifiers.
FLOORS = [
    ["synthaug._version", "synthaug.errors"],
    ["synthaug.fsutil", "synthaug.config", "synthaug.registry", "synthaug.device", "synthaug.pretrained",
     "synthaug.inception", "synthaug.recovery"],
    ["synthaug.plots", "synthaug.distributed", "synthaug.models", "synthaug.data", "synthaug.losses",
     "synthaug.augment"],
    ["synthaug.runs", "synthaug.engine", "synthaug.recipes", "synthaug.monitor", "synthaug.report"],
    ["synthaug.classify", "synthaug.sources", "synthaug.train"],
    ["synthaug.sampler"],
    ["synthaug.fresh", "synthaug.exporting", "synthaug.metrics"],
    ["synthaug.conditions"],
    ["synthaug.selection"],
    ["synthaug.benchmarking", "synthaug.topup", "synthaug.translate", "synthaug.dagan",
     "synthaug.bagan"],
    ["synthaug.tuning", "synthaug.protocols"],
]


def floor_of(module: str) -> tuple[int, str]:
    """(floor, the floor entry it belongs to) of a module: packages hold their submodules."""
    for i, names in enumerate(FLOORS):
        for entry in names:
            if module == entry or module.startswith(entry + "."):
                return i, entry
    raise AssertionError(f"{module} has no floor in tests/test_design.py: place it")


@pytest.mark.parametrize("name", sorted(m for m in EXISTING if m != "synthaug"))
def test_imports_only_run_down_the_floors(name):
    floor, entry = floor_of(name)
    for target in resolved(MODULES[name]) - {name, "synthaug"}:
        t_floor, t_entry = floor_of(target)
        assert t_floor < floor or (t_entry == entry and entry in ("synthaug.data", "synthaug.models")), \
            f"{name} (floor {floor}) imports {target} (floor {t_floor})"


def test_data_and_the_engine_import_neither_exports_nor_classifiers():
    for name, imports in MODULES.items():
        if name.startswith("synthaug.data") or name == "synthaug.engine":
            assert not resolved(imports) & {"synthaug.exporting", "synthaug.classify", "synthaug.sampler"}, name


def _files_using(word: str) -> set[str]:
    """Library files (the package root's re-exports aside) whose code names `word`."""
    return {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
            if p.name != "__init__.py" and word in p.read_text(encoding="utf-8")}


def test_one_sampler_loads_generators_and_builds_teachers():
    assert _files_using("load_generator(") == {"runs.py", "sampler.py"}
    assert _files_using("generator_files(") == {"runs.py", "sampler.py"}
    assert _files_using("teacher_recipe(") == {"classify.py", "sampler.py"}
    assert _files_using("SampleFilter(") == {"sampler.py"}


def test_run_folder_names_live_in_runs_only():
    for name in ('"generator.pt"', '"checkpoint.pt"', '"generators"', '"sampling.json"', '"selection.json"',
                 '"generator-last.pt"', '".done"'):
        assert _files_using(name) <= {"runs.py"}, name


@pytest.mark.parametrize("name", ["synthaug.engine", "synthaug.exporting", "synthaug.metrics", "synthaug.benchmarking",
                                  "synthaug.tuning", "synthaug.classify", "synthaug.report", "synthaug.data.dataset",
                                  "synthaug.fresh", "synthaug.sampler", "synthaug.conditions", "synthaug.runs"])
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
