"""URLs that may carry credentials (``https://user:password@host/simple``)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and those credentials (for HTTP Basic auth)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, (unquote(parts.username or ""), unquote(parts.password or ""))


def redact(url: str) -> str:
    """The URL as it may appear in messages: credentials replaced with ``***``."""
    bare, credentials = split_credentials(url)
    if credentials is None:
        return url
    parts = urlsplit(bare)
    return urlunsplit(parts._replace(netloc=f"***@{parts.netloc}"))
