"""URLs that may carry secrets, and the one way to show them.

Secrets travel in URLs in two places: the userinfo (``https://user:token@host/simple/``)
and parameters of the query or fragment (``?token=…``, signed storage URLs' ``sig=…``).
:func:`redact` hides both, for every message that shows a URL; :func:`split_credentials`
takes the userinfo off for HTTP Basic auth.

The URL is split as ``urllib.parse`` and requests (urllib3) split it: the authority ends
at the first ``/``, ``?`` or ``#`` after ``//``, and the userinfo is what comes before the
authority's *last* ``@`` (so ``p@ss`` as a password means what it seems to). A password
with an unencoded ``/``, ``?`` or ``#`` ends the authority early: the host those parsers
see is then a piece of the password. :func:`ambiguity` says so, and :func:`redact` hides
everything up to the last ``@`` of such a URL.

A query or fragment parameter is a secret when a word of its name (the name split at
``-``, ``_`` and ``.``, any case) is one of :data:`SECRET_WORDS`: ``token``,
``access_token``, ``X-Amz-Signature``, ``sig``, ``api-key``, ``client_secret``...
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

SECRET_WORDS = frozenset({
    "token", "auth", "authorization", "password", "passwd", "pwd", "pass", "secret", "key", "apikey",
    "sig", "signature", "credential", "credentials", "session", "sessionid",
})  # fmt: skip
HIDDEN = "***"
NOT_HTTP = "it is not an http(s) URL with a host"
_AUTHORITY_END = re.compile(r"[/?#]")
_NAME_WORDS = re.compile(r"[-_.]")


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@``, and those credentials (for HTTP Basic auth).

    ValueError for what ``urllib.parse`` cannot split (``http://[::1/``); settings refuse
    such URLs before any step sees them.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, (unquote(parts.username or ""), unquote(parts.password or ""))


def ambiguity(url: str) -> str:
    """Why the URL's credentials cannot be told from the rest, or "" when they can.

    ``http://me:sec/ret@host/`` is host ``me`` with a bad port to urllib and requests,
    and so would be a password sent to another host, or half of it shown in a message.
    """
    _, _, rest = url.partition("://")
    authority, tail = _authority(rest)
    if "@" not in authority and "@" in tail:
        return (
            "an '@' comes after the host: if it ends credentials (user:password@host), percent-encode "
            "'/', '?', '#' and '@' in them (%2F, %3F, %23, %40)"
        )
    return ""


def http_url_problem(url: str) -> str:
    """Why ``url`` is not an http(s) URL that urllib and requests read alike; "" when it is.

    The reason never quotes the URL (it may hold secrets); :data:`NOT_HTTP` for a URL
    of another scheme or without a host.
    """
    if any(unicodedata.category(c) == "Cc" or c.isspace() for c in url):
        return "it holds a control character or a space"
    reason = ambiguity(url)
    if reason:
        return reason
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": the URL's own text is not in it
        return f"it cannot be parsed ({exc})"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "it has an invalid port (not a number from 0 to 65535)"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return NOT_HTTP
    import requests  # here, not at the top: `--help` (which imports settings) needs no requests

    try:
        requests.models.PreparedRequest().prepare_url(url, None)
    except (requests.RequestException, ValueError, UnicodeError) as exc:
        return f"requests cannot send a request to it ({type(exc).__name__})"
    return ""


def join(base: str, reference: str) -> str:
    """``reference`` (a Location or Link a server sent) resolved against ``base``; ValueError
    with the reason when the result is not an http(s) URL urllib and requests read alike."""
    try:
        url = urljoin(base, reference)
    except ValueError as exc:
        raise ValueError(f"it cannot be parsed ({exc})") from None
    problem = http_url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


def secret_parameters(url: str) -> list[str]:
    """The names of the query and fragment parameters that are secrets."""
    _, _, rest = url.partition("://")
    _, tail = _authority(rest)
    _, query, fragment = _path_query_fragment(tail)
    return [name for part in (query, fragment) for name, _ in _params(part) if is_secret_name(name)]


def is_secret_name(name: str) -> bool:
    return not SECRET_WORDS.isdisjoint(_NAME_WORDS.split(unquote(name).lower()))


def redact(url: str) -> str:
    """The URL as it may appear in messages: userinfo and secret parameters become ``***``.

    Text only (it never raises, whatever the URL): the userinfo is what precedes the
    authority's last ``@`` or, for a URL whose credentials run past the host (see
    :func:`ambiguity`), everything before the URL's last ``@``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, tail = _authority(rest)
    if "@" in authority:
        authority = f"{HIDDEN}@{authority.rpartition('@')[2]}"
    elif "@" in tail:
        authority, tail = _authority(tail.rpartition("@")[2])
        authority = f"{HIDDEN}@{authority}"
    path, query, fragment = _path_query_fragment(tail)
    text = f"{scheme}{sep}{authority}{path}"
    if query is not None:
        text += "?" + _redact_params(query)
    if fragment is not None:
        text += "#" + _redact_params(fragment)
    return text


def _authority(rest: str) -> tuple[str, str]:
    m = _AUTHORITY_END.search(rest)
    return (rest, "") if m is None else (rest[: m.start()], rest[m.start() :])


def _path_query_fragment(tail: str) -> tuple[str, str | None, str | None]:
    before, hash_, fragment = tail.partition("#")
    path, mark, query = before.partition("?")
    return path, (query if mark else None), (fragment if hash_ else None)


def _params(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    return [(name, value) for name, _, value in (item.partition("=") for item in re.split(r"[&;]", text))]


def _redact_params(text: str) -> str:
    def hide(item: str) -> str:
        name, eq, _ = item.partition("=")
        return f"{name}={HIDDEN}" if eq and is_secret_name(name) else item

    return re.sub(r"[^&;]+", lambda m: hide(m[0]), text)
