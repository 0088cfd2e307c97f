"""What a setting's text may be: how it becomes a value, and which values are refused.

Pure functions of text (and of the environment they are given), each raising
:class:`WheelTasksError` with a line that names the setting and what to write instead;
:mod:`wheeltasks.settings` applies them to its option table. Nothing here reads
``os.environ``.
"""

from __future__ import annotations

import enum
import math
import re
import stat
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from .errors import WheelTasksError
from .imagenames import DOCKER_HUB, split_host
from .urls import NOT_HTTP, ambiguity, http_url_problem, redact

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f", ""})

# The newest CPython minor a builder image can exist for (the one in development).
NEWEST_KNOWN_PYTHON = Version("3.16")
OLDEST_KNOWN_PYTHON = Version("3.6")


def parse_bool(value: object, name: str = "value", *, any_word: bool = False) -> bool:
    """The usual truthy spellings, any case; false for false/0/empty; an error otherwise.

    ``any_word``: a word that is no false spelling is true, for variables other programs set
    (CI systems set ``CI`` to their name: ``CI=woodpecker``).
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in FALSE_WORDS:
        return False
    if text in TRUE_WORDS or any_word:
        return True
    raise WheelTasksError(f"{name}={value!r} is neither true (1/true/yes/on) nor false (0/false/no/off/empty)")


def parse_list(value: object) -> tuple[str, ...]:
    """A list from config (a list) or from text (comma or whitespace separated)."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v for v in re.split(r"[\s,]+", str(value)) if v)


def coerce(value: Any, default: Any, label: str, *, maximum: float = math.inf, any_word: bool = False) -> Any:
    """A setting's value from config or text, of the type of its ``default`` (a ``bool`` is a
    switch, a ``tuple`` a list, a ``Path`` a folder, an enum one of its values, a number a
    finite one above 0 and at most ``maximum``); ``label`` names it in errors."""
    if isinstance(default, bool):
        return parse_bool(value, label, any_word=any_word)
    if isinstance(default, tuple):
        if isinstance(value, Mapping):
            raise WheelTasksError(f"{label} must be a list, not a mapping")
        return parse_list(value)
    if isinstance(value, (Mapping, list, tuple)):
        raise WheelTasksError(f"{label} must be a single value, not a {type(value).__name__}")
    if isinstance(default, Path):
        return Path(str(value))
    if isinstance(default, enum.Enum):
        try:
            return type(default)(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(str(m.value) for m in type(default))
            raise WheelTasksError(f"{label}={value!r} is not one of: {choices}") from None
    if isinstance(default, (int, float)):
        number = parse_number(value, type(default), label)
        if not math.isfinite(number) or number <= 0:
            raise WheelTasksError(f"{label}={value!r} must be a finite number greater than 0")
        if number > maximum:
            raise WheelTasksError(f"{label}={value!r} is more than {maximum:g}, the largest it may be")
        return number
    return str(value)


def parse_number(value: object, kind: type[int] | type[float], label: str) -> int | float:
    if isinstance(value, bool):
        raise WheelTasksError(f"{label}={value!r} is not a number")
    try:
        return kind(str(value).strip())
    except (ValueError, OverflowError):
        raise WheelTasksError(f"{label}={value!r} is not {'a whole number' if kind is int else 'a number'}") from None


def default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "wheeltasks"


def default_ca_bundle(env: Mapping[str, str]) -> str:
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if env.get(name):
            return env[name]
    return ""


_HOST_RE = re.compile(
    r"(?:localhost|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::(?P<port>\d{1,5}))?"
)
# What may stand in an image tag (Docker's tag grammar, which also allows an empty word here:
# the template python:{python}-alpine{alpine} then names python:3.12-alpine).
_TAG_WORD_RE = re.compile(r"[A-Za-z0-9_.-]{0,128}")
# A path component of a repository name (OCI distribution spec).
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def is_repository_path(path: str) -> bool:
    """Lower-case path components joined by ``/``, as the distribution spec names repositories."""
    return all(_PATH_COMPONENT_RE.fullmatch(part) for part in path.split("/"))


def parse_registry(text: str) -> tuple[str, str]:
    """``host[:port]/namespace`` (or a Docker Hub ``namespace``) -> (host, namespace).

    The first part is a host when it holds a ``.`` or ``:`` or is ``localhost``, as in
    Docker's image names. Credentials (``user:password@host``) are refused, and never
    echoed: they belong in REGISTRY_USERNAME/REGISTRY_PASSWORD or ``docker login``.
    """
    value = text.strip().strip("/")
    if "@" in value:
        raise WheelTasksError(
            "WHEELS_REGISTRY must not hold credentials (user:password@host): "
            "set REGISTRY_USERNAME and REGISTRY_PASSWORD, or run docker login"
        )
    shape = "host[:port]/namespace, e.g. ghcr.io/me or 127.0.0.1:5000/me"
    if "://" in value:
        raise WheelTasksError(f"WHEELS_REGISTRY={text!r} is a URL; write it as {shape} (no scheme)")
    host, namespace = split_host(value)
    if host != DOCKER_HUB or value.startswith(DOCKER_HUB + "/"):
        m = _HOST_RE.fullmatch(host)
        if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
            raise WheelTasksError(f"WHEELS_REGISTRY={text!r}: {host!r} is not a valid host[:port]; write {shape}")
    if not namespace or not is_repository_path(namespace):
        raise WheelTasksError(
            f"WHEELS_REGISTRY={text!r} is not {shape}: the namespace needs lower-case letters, digits and . _ -"
        )
    return host, namespace


def check_index_url(url: str) -> None:
    """An index must be an http(s) URL with a host (and a valid port) that urllib, requests and
    pip all read the same way, with no query: pip appends the project to the path.

    Every message shows the URL redacted (see :mod:`wheeltasks.urls`), never its secrets.
    """
    shown = redact(url)
    reason = ambiguity(url)
    if reason:
        raise WheelTasksError(f"PYPI_INDEX={shown!r} cannot be split into credentials and host: {reason}")
    problem = http_url_problem(url)
    if problem == NOT_HTTP:
        raise WheelTasksError(
            f"PYPI_INDEX={shown!r} is not an http(s) URL of a simple index (like https://host/simple/)"
        )
    if problem:
        raise WheelTasksError(f"PYPI_INDEX={shown!r} is not a usable URL: {problem}")
    if "?" in url or "#" in url:
        raise WheelTasksError(
            f"PYPI_INDEX={shown!r} has a query or fragment (?... or #...), which a simple index cannot have "
            "(pip appends the project to the path); put a token in the credentials instead "
            "(https://__token__:TOKEN@host/simple/)"
        )


def check_base_url(url: str) -> None:
    """INDEX_BASE_URL: an http(s) URL that the index pages can name files under, so no
    credentials (the pages are published), no query or fragment (a file name is appended)."""
    shown = redact(url)
    problem = http_url_problem(url)
    if problem == NOT_HTTP:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} is not an http(s) URL (like https://host/wheels) of where wheels/ is served"
        )
    if problem:
        raise WheelTasksError(f"INDEX_BASE_URL={shown!r} is not a usable URL: {problem}")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} holds credentials, which the index pages would publish: remove them"
        )
    if "?" in url or "#" in url:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} has a query or fragment (?... or #...): the index appends <arch>/<file> "
            "to its path, so give the folder's URL alone"
        )


def check_python(text: str, what: str) -> str:
    """A ``major.minor`` CPython version that a builder image can exist for."""
    try:
        version = Version(text)
    except InvalidVersion:
        version = None
    if version is None or len(version.release) != 2 or version.pre or version.post or version.dev or version.local:
        raise WheelTasksError(f"{what}: {text!r} is not a Python version like 3.12")
    if not OLDEST_KNOWN_PYTHON <= version <= NEWEST_KNOWN_PYTHON:
        raise WheelTasksError(
            f"{what}: there is no CPython {text} to build with (known: {OLDEST_KNOWN_PYTHON} to {NEWEST_KNOWN_PYTHON})"
        )
    return f"{version.major}.{version.minor}"


def check_alpine_version(alpine: str) -> None:
    if not _TAG_WORD_RE.fullmatch(alpine):
        raise WheelTasksError(
            f"ALPINE_VERSION={alpine!r} is not a word an image tag may hold "
            "(letters, digits and . _ -, at most 128), e.g. 3.22"
        )


def check_builder_image(template: str, alpine: str) -> None:
    try:
        image = template.format(python="3.12", alpine=alpine)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise WheelTasksError(
            f"BUILDER_IMAGE={template!r} is not a valid template ({type(exc).__name__}: {exc}); "
            "it may name only {python} and {alpine}, e.g. python:{python}-alpine{alpine}"
        ) from None
    if not image or any(c.isspace() for c in image) or "{python}" not in template:
        raise WheelTasksError(
            f"BUILDER_IMAGE={template!r} must be an image name that holds {{python}}, "
            "e.g. python:{python}-alpine{alpine}"
        )


def check_ca_bundle(path: Path) -> None:
    fix = "set CA_BUNDLE to a PEM file or to an empty value"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise WheelTasksError(f"CA bundle {path} does not exist: {fix}") from None
    except OSError as exc:
        raise WheelTasksError(f"CA bundle {path} cannot be read ({exc.strerror}): {fix}") from None
    if stat.S_ISDIR(mode):
        raise WheelTasksError(f"CA bundle {path} is a folder, not a file: {fix}")
    if not stat.S_ISREG(mode):
        raise WheelTasksError(f"CA bundle {path} is not a regular file (a FIFO or a device?): {fix}")


def check_no_control_character(label: str, text: str) -> None:
    """Text settings go into URLs, headers, image names and command lines, where a CR, LF or
    other control character would split or smuggle something: refuse them, and show only
    the character and its place (the value may be a secret)."""
    for at, char in enumerate(text):
        if unicodedata.category(char) == "Cc":
            raise WheelTasksError(f"{label} holds a control character ({char!r} at position {at}): remove it")
