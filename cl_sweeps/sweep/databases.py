"""A sweep's databases (the Optuna study, MLflow's SQLite store) that cannot be used: corrupt,
locked by another process, read-only or missing. One line naming the database, the reason and
what to do (UsageError: exit code 2), instead of an SQLAlchemy traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


def advice(reason: str) -> str:
    lowered = reason.lower()
    for words, what in _ADVICE:
        if any(word in lowered for word in words):
            return what
    return "check that the database server answers and the URL is right"


@contextmanager
def database_errors(field: str, uri: str) -> Iterator[None]:
    """Turn an SQLAlchemy error raised in the block into a one-line UsageError for `field`."""
    try:
        yield
    except sqlalchemy.exc.SQLAlchemyError as error:
        original = getattr(error, "orig", None) or error
        reason = (str(original).splitlines() or [type(original).__name__])[0][:200]
        raise UsageError(
            f"{field}: the database {redact_uri(uri)} cannot be used ({reason}); {advice(reason)}"
        ) from None
