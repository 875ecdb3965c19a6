"""`cl-sweeps fid-vs-steps`: bad input is named before any model or data is loaded (the run on a
real checkpoint is in tests/test_cli.py, beside the run that writes it)."""

from __future__ import annotations

import json
from pathlib import Path

from cl_sweeps.cli import main


def _checkpoint(root: Path) -> Path:
    """A folder with a checkpoint's state.json (enough to pass the first check)."""
    path = root / "checkpoints" / "task_0"
    path.mkdir(parents=True)
    (path / "state.json").write_text(json.dumps({"task_index": 0, "history": []}))
    return path


def test_a_folder_that_is_not_a_checkpoint_is_named(tmp_path: Path, capsys) -> None:
    assert main(["fid-vs-steps", str(tmp_path)]) == 2
    assert f"{tmp_path}: not a task checkpoint" in capsys.readouterr().err


def test_bad_step_counts_are_refused(tmp_path: Path, capsys) -> None:
    for steps in ("1,x", "0,2", ""):
        assert main(["fid-vs-steps", str(_checkpoint(tmp_path / steps.replace(",", "_"))),
                     "--steps", steps]) == 2
        assert f"--steps {steps!r}: allowed: comma-separated integers 1..1000" in \
            capsys.readouterr().err


def test_a_checkpoint_outside_a_sweep_needs_its_run_file(tmp_path: Path, capsys) -> None:
    assert main(["fid-vs-steps", str(_checkpoint(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "not a sweep trial's checkpoint" in err and "give --config RUN_FILE" in err
