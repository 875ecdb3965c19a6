"""Credentials never travel in config files, logs or error messages: detect and redact them.

One rule for every URI the project prints, logs, saves or passes on: a secret is a password
(user:pass@host), a password-like query value (?token=...), or a user-info part without a
password on a URL whose scheme has no user accounts of its own (http://TOKEN@host: a token).
A database URL's user name (postgresql://user@host/db) is an account name, not a secret. Sweep
files refuse secrets; every URI that is shown goes through `redact_uri` first; a tracking URI
from the environment has its credentials moved into the client's own variables
(`split_credentials`, used by sweep/tracking.py), so no client prints or hands them on.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

# A query key holding any of these (case-insensitive) is a secret: password, sslpassword,
# token, access_token, api_key, apikey, client_secret, ...
_SECRET_QUERY_WORDS = ("password", "passwd", "pwd", "token", "secret", "api_key", "apikey",
                       "credential")
# Schemes whose user-info names an account (SQLAlchemy URLs, `+driver` suffixes included).
_ACCOUNT_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "sqlite")
MALFORMED = "<malformed URI>"
HIDDEN = "***"


def _is_secret_key(key: str) -> bool:
    key = key.lower().replace("-", "_")
    return any(word in key for word in _SECRET_QUERY_WORDS)


def is_well_formed(uri: str) -> bool:
    """False if the URI cannot be taken apart (e.g. an unclosed IPv6 bracket, a bad port)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return False
    return True


def _user_is_secret(scheme: str) -> bool:
    return scheme.lower().split("+", 1)[0] not in _ACCOUNT_SCHEMES


def uri_has_secret(uri: str) -> bool:
    """True if a URI embeds a password, a password-like query parameter, or a user-info part
    that is not an account name (see the module docstring); a URI too malformed to take apart
    counts as secret if it holds user info (never echoed)."""
    if not is_well_formed(uri):
        return "@" in uri
    parts = urlsplit(uri)
    if parts.password or (parts.username and _user_is_secret(parts.scheme)):
        return True
    return any(_is_secret_key(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def redact_uri(uri: str) -> str:
    """The URI with its secrets (password, a secret user-info part, secret query values)
    replaced by ***: safe to print, log and save."""
    if not uri_has_secret(uri):
        return uri
    if not is_well_formed(uri):
        return MALFORMED
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        if parts.password is not None and not _user_is_secret(parts.scheme):
            user_info = f"{user_info.split(':', 1)[0]}:{HIDDEN}"
        elif parts.password is not None or _user_is_secret(parts.scheme):
            user_info = HIDDEN
        netloc = f"{user_info}@{host}"
    query = "&".join(
        f"{k}={HIDDEN if _is_secret_key(k) else v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without its user-info part, user name, password): for clients that take the
    credentials separately (MLflow's REST client reads MLFLOW_TRACKING_USERNAME/PASSWORD)."""
    if not is_well_formed(uri):
        return uri, None, None
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password
