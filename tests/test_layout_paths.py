"""Every path of a sweep's output_dir is a `SweepLayout`/`TrialLayout` property (records.py):
no other module spells one of its names, so a file moved or renamed there moves everywhere."""

from __future__ import annotations

import ast
from pathlib import Path

from cl_sweeps import records
from cl_sweeps.records import SweepLayout, TrialLayout

PACKAGE = Path(__file__).resolve().parents[1] / "cl_sweeps"
# records.py owns the layout; results.py the files of a run, which a trial's folder holds too
OWNERS = {PACKAGE / "records.py", PACKAGE / "results.py"}


def layout_names() -> set[str]:
    """The names the layout gives its paths, read from the layout itself."""
    sweep, trial = SweepLayout(Path("/s")), TrialLayout(Path("/s/t"))
    names = {getattr(sweep, p).name for p in vars(SweepLayout) if isinstance(
        getattr(SweepLayout, p), property)}
    names |= {getattr(trial, p).name for p in vars(TrialLayout) if isinstance(
        getattr(TrialLayout, p), property)}
    return names


def spelled_paths(source: str) -> list[tuple[int, str]]:
    """(line, name) where the code writes a layout name: a file name (it has a dot) anywhere as a
    whole string, and any layout name as the right side of `/` (a folder such as trials)."""
    names = layout_names()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in names:
                found.append((node.lineno, right.value))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and "." in node.value and node.value in names):
            found.append((node.lineno, node.value))
    return sorted(set(found))


def test_the_layout_names_its_files() -> None:
    assert {"params.json", "status.json", "events.jsonl", "sweep_state.json", "trials",
            "mlflow_spool.jsonl", "budget.json"} <= layout_names()
    assert TrialLayout(Path("t")).metrics_jsonl.name == records.METRICS_JSONL


def test_no_module_but_the_layout_spells_a_sweep_path() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}"
        for path in sorted(PACKAGE.rglob("*.py")) if path not in OWNERS
        for line, name in spelled_paths(path.read_text())
    ]
    assert not offenders, (
        "sweep paths built by hand; use a SweepLayout/TrialLayout property:\n"
        + "\n".join(offenders))


def test_the_check_sees_a_hand_built_path() -> None:
    source = 'root / "trials"\nname = "params.json"\nkey = "trials"\n'
    assert spelled_paths(source) == [(1, "trials"), (2, "params.json")]
