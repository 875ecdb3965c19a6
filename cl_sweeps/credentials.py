"""Credentials never travel in config files, logs or error messages: detect and redact them.

Tracking and study URIs may carry a password (user:pass@host, ?password=...); sweep files refuse
them and every URI that is printed or logged goes through `redact_uri` first.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

# A query key holding any of these (case-insensitive) is a secret: password, sslpassword,
# token, access_token, api_key, apikey, client_secret, ...
_SECRET_QUERY_WORDS = ("password", "passwd", "pwd", "token", "secret", "api_key", "apikey",
                       "credential")
MALFORMED = "<malformed URI>"


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


def uri_has_secret(uri: str) -> bool:
    """True if a URI embeds a password (user:pass@) or a password-like query parameter; a URI
    too malformed to take apart counts as secret if it holds user info (never echoed)."""
    if not is_well_formed(uri):
        return "@" in uri
    parts = urlsplit(uri)
    if parts.password:
        return True
    return any(_is_secret_key(k) for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def redact_uri(uri: str) -> str:
    """The URI with any password and secret query values replaced by ***: safe to log."""
    if not uri_has_secret(uri):
        return uri
    if not is_well_formed(uri):
        return MALFORMED
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = "&".join(
        f"{k}={'***' if _is_secret_key(k) else v}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
