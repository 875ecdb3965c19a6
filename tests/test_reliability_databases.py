"""Databases a sweep cannot write: an SQLite study or tracking store locked by another process
(`BEGIN EXCLUSIVE`) or read-only stops `cl-sweeps sweep` with one line naming the field and the
database (exit code 2, no traceback), before any compute."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tiny_sweep, write_yaml

from cl_sweeps.sweep import databases

# Root writes through file permissions; without these capabilities it obeys them as anyone does.
AS_ROOT_WITHOUT_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def sqlite_database(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (a)")
    return path


def test_a_locked_study_database_is_one_line_before_any_compute(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from cl_sweeps.cli import main

    db = sqlite_database(tmp_path / "optuna.db")
    out = tmp_path / "sweep"
    sweep = write_yaml(tmp_path / "s.yaml", tiny_sweep(
        "locked", out, optuna_storage=f"sqlite:///{db}"))
    monkeypatch.setattr(databases, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds it
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["sweep", str(sweep)]) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err.strip()
    assert err == (f"error: optuna_storage: the database sqlite:///{db} cannot be used (database "
                   f"is locked); {databases.advice('locked')}")
    assert not (out / "trials").exists() and not (out / "sweep_state.json").exists()


def test_a_locked_tracking_store_names_its_field(tmp_path: Path, monkeypatch) -> None:
    db = sqlite_database(tmp_path / "mlflow.db")
    monkeypatch.setattr(databases, "LOCK_WAIT_S", 0.1)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        expected = (r"^mlflow\.tracking_uri: the database "
                    rf"sqlite:///{db} cannot be used \(database is locked\); another ")
        with pytest.raises(databases.UsageError, match=expected), \
                databases.database_errors("mlflow.tracking_uri", f"sqlite:///{db}"):
            raise AssertionError("the block must not run on a locked database")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with databases.database_errors("mlflow.tracking_uri", f"sqlite:///{db}"):
        pass  # released: usable again, and the probe changed nothing
    with sqlite3.connect(db) as again:
        assert again.execute("PRAGMA user_version").fetchone()[0] == 0


def test_sqlite_files_of_uris() -> None:
    assert databases.sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert databases.sqlite_file("sqlite:///rel/x.db?timeout=3") == Path("rel/x.db")
    assert databases.sqlite_file("postgresql://db/x") is None
    assert databases.sqlite_file("sqlite://") is None  # in memory


def as_unprivileged_user() -> list[str]:
    """A command prefix under which a file's permissions hold: none for a normal user; for
    root, setpriv without the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: root writes read-only files, so a "
                    "read-only database cannot be produced here")
    return AS_ROOT_WITHOUT_OVERRIDE


PROBE = """
import sys
from cl_sweeps.errors import UsageError
from cl_sweeps.sweep.databases import database_errors
try:
    with database_errors(sys.argv[1], sys.argv[2]):
        print("usable")
except UsageError as error:
    print(error)
"""


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_read_only_database_is_one_line(tmp_path: Path, what: str) -> None:
    prefix = as_unprivileged_user()
    folder = tmp_path / "ro"
    folder.mkdir()
    db = sqlite_database(folder / "mlflow.db")
    uri = f"sqlite:///{db}"
    (db if what == "file" else folder).chmod(0o444 if what == "file" else 0o555)
    try:
        done = subprocess.run([*prefix, sys.executable, "-c", PROBE, "mlflow.tracking_uri", uri],
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    reason = "attempt to write a readonly database"
    assert done.stdout.splitlines() == [(
        f"mlflow.tracking_uri: the database {uri} cannot be used ({reason}); "
        "make the file and its directory writable for this user")]
