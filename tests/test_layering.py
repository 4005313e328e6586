"""The floors of the project: no import runs from a lower floor up, no modules import in a circle.

Floors, lowest first: common < data, models, losses < engine < tools < the entry scripts and the
benchmarks (which build the stage scripts' own flags to time what a run does). A module may import
its own floor and the floors below it; imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {"common": 0, "data": 1, "models": 1, "losses": 1, "engine": 2, "tools": 3,
          "benchmarks": 4, "pretrain_qualiclip": 4, "train_swin": 4, "test_swin": 4}


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every project module outside tests."""
    modules = {}
    for top in FLOORS:
        if (ROOT / f"{top}.py").is_file():
            modules[top] = ROOT / f"{top}.py"
            continue
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a module, or the nearest package above it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _package_of(module: str, path: Path) -> str:
    """The package a relative import in `module` starts from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in its body)."""
    modules = _module_files()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = _package_of(module, path)
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}".strip(".")
                # `from pkg import submodule` imports the submodule
                names = [f"{base}.{alias.name}" for alias in node.names] or [base]
            else:
                continue
            for name in names:
                target = _resolve(name, modules)
                if target and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def _floor(module: str) -> int:
    """The floor of a module, from its top-level package or script."""
    return FLOORS[module.split(".")[0]]


def test_no_import_runs_up_a_floor() -> None:
    upward = sorted(f"{source} -> {target}" for source, targets in import_graph().items()
                    for target in targets if _floor(target) > _floor(source))
    assert not upward, "imports from a lower floor into a higher one:\n" + "\n".join(upward)


def test_ground_floor_imports_nothing_else_of_the_project() -> None:
    graph = import_graph()
    outside = sorted(f"{source} -> {target}" for source, targets in graph.items()
                     if source.startswith("common") for target in targets
                     if not target.startswith("common"))
    assert not outside, "\n".join(outside)


def test_no_import_circle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_graph_sees_the_packages() -> None:
    graph = import_graph()
    assert "common.checkpoint" in graph["models.swin_hyperiqa"]
    assert "engine.loop" in graph["engine.finetune"]
    assert {"common", "data", "models", "losses", "engine", "tools"} <= {
        module.split(".")[0] for module in graph}
