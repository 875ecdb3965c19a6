"""The package's import graph, read from the source: no cycle, no import that points up the
layers, and the config core (what validates a run or sweep file) imports no heavy package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cl_sweeps"
HEAVY = {"torch", "torchvision", "diffusers", "ray", "mlflow", "optuna", "pyarrow", "numpy"}

# Lowest first; a module may import its own layer and the layers below (README "How it is
# built"). The first matching prefix decides.
LAYERS: list[tuple[str, ...]] = [
    ("cl_sweeps.metrics", "cl_sweeps.credentials", "cl_sweeps.formatting", "cl_sweeps.results",
     "cl_sweeps.strategies.catalog", "cl_sweeps.data.catalog", "cl_sweeps.errors",
     "cl_sweeps.documents", "cl_sweeps.checkpoint_files", "cl_sweeps.prefix_store",
     "cl_sweeps.integrity", "cl_sweeps.hashing"),
    ("cl_sweeps.config", "cl_sweeps.constraints"),
    ("cl_sweeps.data", "cl_sweeps.diffusion", "cl_sweeps.evaluation", "cl_sweeps.checkpoint",
     "cl_sweeps.strategies", "cl_sweeps.throughput", "cl_sweeps.numerics",
     "cl_sweeps.classifier_replay"),
    ("cl_sweeps.sequence", "cl_sweeps.prefix", "cl_sweeps.bench", "cl_sweeps.doctor"),
    ("cl_sweeps.records",),
    ("cl_sweeps.frontier",),
    ("cl_sweeps.sweep",),
    ("cl_sweeps.cli", "cl_sweeps.reference_docs"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> int:
    if module == "cl_sweeps":
        return 0  # the package's __init__: its version only
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} is in no layer; add it to LAYERS (and the README)")


def _walk(node: ast.AST, type_checking: bool = False):
    """Every node, except what `if TYPE_CHECKING:` guards (never run) unless `type_checking`."""
    yield node
    for child in ast.iter_child_nodes(node):
        guarded = isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING"
        if guarded and not type_checking:
            for other in child.orelse:
                yield from _walk(other)
            continue
        yield from _walk(child, type_checking)


def imports(
    module: str, top_level_only: bool, type_checking: bool = False
) -> tuple[set[str], set[str]]:
    """(package modules, third-party top-level names) that `module` imports; with
    `top_level_only`, only imports run when the module is imported (not inside functions or
    `if TYPE_CHECKING:`); with `type_checking`, also those only a type checker follows."""
    tree = ast.parse(MODULES[module].read_text())
    nodes = tree.body if top_level_only else list(_walk(tree, type_checking))
    ours, others = set(), set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "cl_sweeps":
                while name not in MODULES:
                    name = name.rpartition(".")[0]
                if name != module:
                    ours.add(name)
            else:
                others.add(name.split(".")[0])
    return ours, others


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    ours, _ = imports(module, top_level_only=False)
    upward = sorted(m for m in ours if layer(m) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports {upward} from above"


def test_no_import_cycle() -> None:
    """Imports under `if TYPE_CHECKING:` count: a cycle hidden there is still two modules that
    each need the other to be understood."""
    graph = {m: imports(m, top_level_only=False, type_checking=True)[0] for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_cycle_check_sees_type_checking_imports(tmp_path, monkeypatch) -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cl_sweeps.sequence import Engine\n"
    fake = tmp_path / "prefix.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "cl_sweeps.prefix", fake)
    assert "cl_sweeps.sequence" in imports("cl_sweeps.prefix", False, type_checking=True)[0]
    assert "cl_sweeps.sequence" not in imports("cl_sweeps.prefix", False)[0]


def loaded_with(module: str) -> tuple[set[str], set[str]]:
    """Package modules and third-party packages loaded by `import module` (parents included)."""
    todo = [module]
    parts = module.split(".")
    todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    seen: set[str] = set()
    third: set[str] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        ours, others = imports(current, top_level_only=True)
        third |= others
        for name in ours:
            todo.append(name)
            pieces = name.split(".")
            todo += [".".join(pieces[:i]) for i in range(1, len(pieces))]
    return seen, third


@pytest.mark.parametrize(
    "module", ["cl_sweeps.config", "cl_sweeps.sweep.schema", "cl_sweeps.records", "cl_sweeps.cli"]
)
def test_config_core_imports_no_heavy_package(module: str) -> None:
    _, third = loaded_with(module)
    assert not third & HEAVY, f"importing {module} imports {sorted(third & HEAVY)}"


def test_the_walk_sees_a_heavy_import_where_there_is_one() -> None:
    _, third = loaded_with("cl_sweeps.sequence")
    assert {"torch", "diffusers"} <= third


TRAINING_STACK = {"torch", "torchvision", "diffusers"}


@pytest.mark.parametrize(
    "module", ["cl_sweeps.sweep.tuner", "cl_sweeps.sweep.tracking", "cl_sweeps.frontier.build"]
)
def test_the_sweep_driver_imports_no_training_stack(module: str) -> None:
    """Only the workers train: the driver (and the frontier it ends with) starts without
    torch or diffusers, seconds sooner."""
    _, third = loaded_with(module)
    assert not third & TRAINING_STACK, f"importing {module} imports {sorted(third & TRAINING_STACK)}"
