"""Credentials never travel in config files, logs or error messages: detect and redact them.

Tracking and study URIs may carry a password (user:pass@host, ?password=...); sweep files refuse
them and every URI that is printed or logged goes through `redact_uri` first.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret")


def uri_has_secret(uri: str) -> bool:
    """True if a URI embeds a password (user:pass@) or a password-like query parameter."""
    parts = urlsplit(uri)
    if parts.password:
        return True
    query = {k.lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    return any(k in query for k in _SECRET_QUERY_KEYS)


def redact_uri(uri: str) -> str:
    """The URI with any password and secret query values replaced by ***: safe to log."""
    if not uri_has_secret(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        f"{k}={'***' if k.lower() in _SECRET_QUERY_KEYS else v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
