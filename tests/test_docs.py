"""The docs a newcomer walks: the README stays short, the MkDocs site builds strictly with its
generated reference pages complete, and every `cl-sweeps` command in the README and docs/ is one
the CLI accepts (sweep and run files are validated with --dry-run)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cl_sweeps.cli import build_parser, main
from cl_sweeps.data.catalog import dataset_names
from cl_sweeps.metrics import METRICS, is_known_metric
from cl_sweeps.reference_docs import model_rows, render
from cl_sweeps.strategies import available_strategies

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```(?:bash|sh)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_commands(text: str) -> list[str]:
    """Each shell command of the text's code blocks: continuations joined, `&&` split."""
    commands = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


def cl_sweeps_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in [README, *PAGES]:
        for command in shell_commands(path.read_text(encoding="utf-8")):
            words = shlex.split(command)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                words = words[1:]
            if "--" in words:  # ray job submit ... -- cl-sweeps ...
                words = words[words.index("--") + 1:]
            if words and Path(words[0]).name == "cl-sweeps":
                found.append((f"{path.relative_to(ROOT)}: {command}", words[1:]))
    return found


COMMANDS = cl_sweeps_commands()


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    assert "cl-sweeps sweep search_spaces/quickstart.yaml" in text
    assert '.venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest' in text


def test_the_docs_name_commands_to_check() -> None:
    subcommands = {args[0] for _, args in COMMANDS}
    assert {"sweep", "run", "status", "frontier", "report", "bench", "sync"} <= subcommands


@pytest.mark.parametrize("where,args", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_documented_command_is_accepted(where: str, args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exit_:  # argparse's way of refusing
        pytest.fail(f"{where}: refused by the CLI (exit {exit_.code})")
    for arg in args:
        if arg.startswith("search_spaces/"):
            assert (ROOT / arg).exists(), f"{where}: {arg} does not exist"
    if args[0] in ("sweep", "run") and "--resume" not in args and "--help" not in args:
        assert main([*args, "--dry-run"]) == 0, where


def test_site_builds_strictly_with_complete_reference_pages(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    metrics_page = (tmp_path / "site" / "reference" / "metrics" / "index.html").read_text()
    for spec in METRICS:
        assert f"<code>{spec.name.replace('<', '&lt;').replace('>', '&gt;')}</code>" in metrics_page
    strategies_page = (tmp_path / "site" / "reference" / "strategies" / "index.html").read_text()
    for name in available_strategies():
        assert f"<code>{name}</code>" in strategies_page, name


def test_generated_reference_lists_every_key_and_strategy() -> None:
    from cl_sweeps.config import TrialConfig

    config_page = render("trial-config")
    for key, *_ in model_rows(TrialConfig):
        assert f"| `{key}` |" in config_page
    assert "| `train.batch_size` |" in config_page
    assert "| `num_samples` |" in render("sweep-file")
    for name in available_strategies():
        assert f"| `{name}` |" in render("strategies"), name


def test_strategies_and_datasets_have_their_hand_written_rows() -> None:
    strategies = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    for name in available_strategies():
        assert f"| `{name}` |" in strategies, name
    runs = (ROOT / "docs" / "runs.md").read_text(encoding="utf-8")
    for name in dataset_names():
        assert f"| `{name}` |" in runs, name


def test_metric_names_accept_per_task_forms() -> None:
    assert is_known_metric("fid_task_3") and is_known_metric("fid_final")
    assert not is_known_metric("fid_task_x") and not is_known_metric("fidd")
