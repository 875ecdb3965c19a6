"""A sweep's output_dir before any trial runs: refuse a directory that holds something else
or another sweep, check that --resume continues the same sweep, write what every later reader
uses (sweep.yaml, the resolved config, search_space.json, sweep_state.json), and take it back
if the start fails; the Optuna study is checked the same way."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna

from cl_sweeps import __version__, records
from cl_sweeps.config import ConfigError
from cl_sweeps.credentials import redact_uri
from cl_sweeps.hashing import content_hash
from cl_sweeps.records import SweepLayout
from cl_sweeps.results import atomic_write
from cl_sweeps.sweep.databases import database_errors
from cl_sweeps.sweep.schema import SweepConfig, parse_sweep_config
from cl_sweeps.sweep.space import SearchSpace


def resolved_config(sweep: SweepConfig) -> dict[str, Any]:
    """The sweep as it runs (after --set, defaults filled, paths absolute), as plain data."""
    return sweep.model_dump(mode="json")


def as_read_now(saved: dict[str, Any]) -> dict[str, Any]:
    """A sweep_resolved.yaml as this release reads it: keys the schema gained after an earlier
    release wrote it are filled with their defaults (a new key's default keeps the earlier
    behaviour), so --resume, --extend and warm_start do not take them for changes. A file this
    release cannot read is returned as it is, and every difference counts."""
    try:
        return resolved_config(parse_sweep_config(saved))
    except ConfigError:
        return saved


def changed_keys(saved: dict[str, Any], resolved: dict[str, Any]) -> list[str]:
    """Top-level keys in which a resumed sweep differs from the saved one, read as this release
    reads it (a sweep started by an earlier release resumes)."""
    saved = as_read_now(saved)
    return [key for key in sorted({*saved, *resolved}) if saved.get(key) != resolved.get(key)]


def refuse_existing_sweep(layout: SweepLayout) -> None:
    """A fresh sweep never writes into another sweep's output_dir, nor into a directory that
    holds anything else (checked first, so this is the message a repeated start gets, before
    its Optuna study is looked at)."""
    if layout.state.is_file() or (layout.trials.is_dir() and any(layout.trials.iterdir())):
        raise ConfigError(
            f"output_dir: {layout.root} already holds a sweep; continue it with --resume, or "
            "choose another `name`/`output_dir` (or delete the directory)"
        )
    refuse_foreign_directory(layout)


def refuse_foreign_directory(layout: SweepLayout) -> None:
    """output_dir must be absent, empty or a cl-sweeps sweep: a sweep never writes among a
    user's other files (the driver's own lock and heartbeat do not count)."""
    own = {layout.lock.name, layout.driver.name}
    others = sorted(p.name for p in layout.root.iterdir() if p.name not in own) if (
        layout.root.is_dir() and not layout.state.is_file()) else []
    if others:
        shown = ", ".join(others[:5]) + (f", ... ({len(others)} entries)" if len(others) > 5 else "")
        raise ConfigError(
            f"output_dir: {layout.root} is not empty and holds no cl-sweeps sweep ({shown}); "
            "allowed: an empty or new directory, or a sweep's output_dir with --resume"
        )


def prepare_output(
    layout: SweepLayout,
    sweep: SweepConfig,
    space: SearchSpace,
    file_text: str,
    overrides: list[str],
    resume: bool,
) -> dict[str, Any]:
    """Check the output_dir against --resume; write sweep.yaml (as submitted), the resolved
    sweep config (what every later reader uses) and search_space.json; return the saved sweep
    state (the MLflow parent run id once known)."""
    resolved = resolved_config(sweep)
    digest = content_hash(resolved)
    if resume:
        if not layout.state.is_file():
            raise ConfigError(
                f"--resume: {layout.root} holds no sweep to resume (no {layout.state.name}); "
                "start it without --resume"
            )
        state = json.loads(layout.state.read_text())
        if state.get("config_hash") != digest:
            saved = records.read_yaml_mapping(layout.resolved) or {}
            changed = changed_keys(saved, resolved)
            if not changed:  # only keys newer than the saved sweep, at their defaults
                return state
            raise ConfigError(
                f"--resume: the sweep (file with --set overrides) differs from the one that "
                f"started it, saved in {layout.resolved}, in: {', '.join(changed) or '?'}; "
                "resume with the same file and --set options"
            )
        return state
    layout.root.mkdir(parents=True, exist_ok=True)  # refuse_existing_sweep ran under the lock
    text = file_text
    if overrides:
        text += "\n# applied with --set: " + " ".join(overrides) + "\n"
    atomic_write(layout.sweep_file, lambda tmp: tmp.write_text(text))
    records.write_yaml(layout.resolved, resolved)
    records.write_json(layout.search_space, space.describe())
    state = {"name": sweep.name, "config_hash": digest, "created": time.time(),
             "release": __version__, "parent_run_id": None}  # the release that started it
    records.write_json(layout.state, state)
    return state


@contextmanager
def undone_if_failed(layout: SweepLayout, fresh: bool) -> Iterator[None]:
    """A fresh start that fails before any trial ran (the tracking server does not answer)
    takes back what it wrote, so that starting again is not refused as 'already holds a
    sweep'. The directory held nothing else: refuse_existing_sweep checked it under the lock."""
    try:
        yield
    except BaseException:
        if fresh:
            for path in layout.root.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                elif path != layout.lock:
                    path.unlink(missing_ok=True)
        raise


def check_optuna_study(sweep: SweepConfig, resume: bool) -> None:
    """The study's database can be used (one line otherwise), and a fresh sweep does not
    silently continue an older study of the same name."""
    if sweep.optuna_storage is None:
        return
    sqlite = sweep.optuna_storage.removeprefix("sqlite:///")
    if sqlite != sweep.optuna_storage and not Path(sqlite).exists():
        return  # a new database: no study yet (and do not create it here)
    with database_errors("optuna_storage", sweep.optuna_storage):
        names = optuna.study.get_all_study_names(storage=sweep.optuna_storage)
    if not resume and sweep.name in names:
        raise ConfigError(
            f"optuna_storage: {redact_uri(sweep.optuna_storage)} already has a study named "
            f"{sweep.name!r}; resume the sweep with --resume, choose another `name`, or delete it "
            f"(optuna delete-study --study-name {sweep.name} --storage URL)"
        )
