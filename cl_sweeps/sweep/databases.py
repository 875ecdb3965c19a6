"""A sweep's databases (the Optuna study, MLflow's SQLite store) that cannot be used: corrupt,
locked by another process, read-only or missing. One line naming the database, the reason and
what to do (UsageError: exit code 2), instead of an SQLAlchemy traceback.

An existing SQLite file is probed for writing first (a write transaction, rolled back): a
read-only file or directory and a lock held by another process are found before any compute,
not by the first trial that writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import sqlalchemy.exc

from cl_sweeps.credentials import redact_uri
from cl_sweeps.errors import UsageError

# (words in the driver's message, what to do)
_ADVICE = (
    (("locked", "busy"), ("another process holds it: end that process (another sweep, an "
     "optuna-dashboard or mlflow ui writing to it) and start again")),
    (("readonly", "read-only", "permission"), ("make the file and its directory writable "
     "for this user")),
    (("not a database", "malformed", "corrupt"), ("it is damaged: move it aside (keep it to "
     "inspect) and start again; the trial records in trials/ are not affected")),
    (("unable to open",), "check that its directory exists and can be written"),
)


LOCK_WAIT_S = 5.0  # how long the probe waits for another process's lock (SQLite's default)


def advice(reason: str) -> str:
    lowered = reason.lower()
    for words, what in _ADVICE:
        if any(word in lowered for word in words):
            return what
    return "check that the database server answers and the URL is right"


@contextmanager
def database_errors(field: str, uri: str) -> Iterator[None]:
    """Probe an SQLite file for writing, then turn an SQLAlchemy error raised in the block into
    a one-line UsageError for `field`."""
    try:
        probe_sqlite(uri)
        yield
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as error:
        original = getattr(error, "orig", None) or error
        reason = (str(original).splitlines() or [type(original).__name__])[0][:200]
        raise UsageError(
            f"{field}: the database {redact_uri(uri)} cannot be used ({reason}); {advice(reason)}"
        ) from None


def sqlite_file(uri: str) -> Path | None:
    """The file of an `sqlite:///` URI (relative or absolute), None for other databases."""
    path = uri.removeprefix("sqlite:///")
    return Path(path.split("?", 1)[0]) if path != uri and path else None


def probe_sqlite(uri: str) -> None:
    """Open a write transaction on an existing SQLite file and roll it back: raises
    sqlite3.Error if the file or its directory is read-only, or another process holds a lock
    for longer than LOCK_WAIT_S. New files are left to the client that creates them."""
    path = sqlite_file(uri)
    if path is None or not path.is_file():
        return
    with closing(sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute(f"PRAGMA user_version = {version}")  # a write: the journal is created
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
