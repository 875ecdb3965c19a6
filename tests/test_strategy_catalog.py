"""Strategies are found by their file's declarations (NAME, KNOBS) without importing torch; the
implementation imported by name agrees with its declaration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cl_sweeps.strategies import available_strategies, strategy_knobs
from cl_sweeps.strategies.catalog import GENERATION_KNOBS, read_catalog

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", available_strategies())
def test_implementation_matches_its_declaration(name: str) -> None:
    from cl_sweeps.strategies import strategy_class

    cls = strategy_class(name)
    assert cls.name == name
    assert tuple(cls.knobs) == strategy_knobs(name)


def test_a_new_strategy_is_one_file(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("import torch\nX = 1\n")
    (tmp_path / "my_replay.py").write_text(
        'import torch\n\nfrom x import GENERATION_KNOBS\n\nNAME = "my_replay"\n'
        'KNOBS = GENERATION_KNOBS + ("memory_size",)\n'
    )
    (tmp_path / "plain.py").write_text('NAME = "plain"\n')
    found = read_catalog(tmp_path, package="pkg")
    assert list(found) == ["my_replay", "plain"]
    assert found["my_replay"].knobs == (*GENERATION_KNOBS, "memory_size")
    assert found["my_replay"].module == "pkg.my_replay"
    assert found["plain"].knobs == ()


def test_declarations_must_be_literal(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text('NAME = "bad"\nKNOBS = compute_knobs()\n')
    with pytest.raises(ValueError, match="must be literals"):
        read_catalog(tmp_path)


def test_unknown_strategy_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="allowed: .*generative_distillation"):
        strategy_knobs("no_such_strategy")


def test_validating_configs_and_sweep_files_imports_no_heavy_package() -> None:
    code = (
        "import sys\n"
        "from cl_sweeps.config import load_trial_config\n"
        "from cl_sweeps.sweep.schema import load_sweep_config\n"
        "from cl_sweeps.strategies import unused_knobs\n"
        f"sweep = load_sweep_config({str(REPO / 'search_spaces' / 'quickstart.yaml')!r})\n"
        f"load_trial_config({str(REPO / 'search_spaces' / 'quickstart.yaml')!r})\n"
        "unused_knobs(sweep.base.strategy)\n"
        "heavy = ('torch', 'diffusers', 'ray', 'mlflow', 'optuna')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]"
