"""Package index client: PEP 691 JSON / PEP 503 HTML simple API, cached with requests-cache.

Answers which versions of a project exist on ``PYPI_INDEX``, which of them a given Python
may install (Requires-Python, PEP 345/503) and which are yanked (PEP 592).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3.exceptions
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests_cache.backends.sqlite import SQLiteCache
from requests_cache.models.request import CachedRequest
from requests_cache.models.response import CachedResponse

from . import remote
from .errors import RemoteError, WheelTasksError
from .settings import Settings
from .urls import redact, split_credentials

log = logging.getLogger("wheeltasks.index")

CACHE_FILE = "index-cache.sqlite"
CORRUPT_SUFFIX = ".corrupt"
DEFAULT_EXPIRY = timedelta(hours=24)
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# PEP 691: prefer JSON, accept the HTML forms (the versioned one, then plain text/html).
ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01"
MAX_WORKERS = 8
TRIES = 3
BACKOFF = 0.2  # seconds before the first retry; doubled for each next one
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# A Python like "3.12" stands for the newest 3.12.x, which is what a `python:3.12-alpine`
# builder runs; a large patch number stands in for it (see `python_admitted`).
NEWEST_PATCH = 999


# ---- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistFile:
    """One file listed on a project page."""

    filename: str
    version: Version
    requires_python: SpecifierSet | None
    yanked: bool
    yanked_reason: str = ""


@dataclass(frozen=True)
class Release:
    """One version of a project, as the index lists it.

    ``requires_python`` is the restriction of the usable files (the non-yanked ones, or all
    of them when every file is yanked); None when one of them states no restriction.
    When files disagree, a Python is admitted when any one of them admits it, so the other
    distinct restrictions are kept in ``other_requires_python``.
    """

    version: Version
    requires_python: SpecifierSet | None
    yanked: bool
    other_requires_python: tuple[SpecifierSet, ...] = ()
    yanked_reason: str = ""

    def admits(self, python: str | None) -> bool:
        if python is None or self.requires_python is None:
            return True
        candidate = python_candidate(python)
        return any(spec.contains(candidate, prereleases=True) for spec in self.specifiers)

    @property
    def specifiers(self) -> tuple[SpecifierSet, ...]:
        first = () if self.requires_python is None else (self.requires_python,)
        return first + self.other_requires_python


def python_candidate(python: str) -> Version:
    """The Python version a Requires-Python check is made against.

    "3.12" means whatever 3.12.x the builder image has, normally the newest patch release.
    Testing a high patch number (3.12.999) admits `>=3.12.1` (installs on the builder)
    and rejects `<3.12` and `!=3.12.*`; it wrongly admits the rare `<3.12.4`, which errs
    toward a version that installs on the newest patch release. A full "3.12.3" is exact.
    """
    try:
        version = Version(python)
    except InvalidVersion as exc:
        raise WheelTasksError(f"Python version {python!r} is not a version like 3.12") from exc
    if len(version.release) >= 3:
        return version
    major, minor = (*version.release, 0)[:2]
    return Version(f"{major}.{minor}.{NEWEST_PATCH}")


# ---- parsing ---------------------------------------------------------------------------


# A project page lists thousands of files but few distinct versions and Requires-Python
# strings; both parsed objects are immutable, so each distinct string is parsed once.
_version = functools.lru_cache(maxsize=65536)(Version)


def file_version(project: str, filename: str) -> Version | None:
    """The version in a wheel or sdist filename of `project`; None for anything else."""
    try:
        if filename.endswith(".whl"):
            # The wheel spec fixes name and version as the first two fields, so the tags
            # (the costly part of parse_wheel_filename) need no parsing to find the version.
            parts = filename[:-4].split("-")
            if len(parts) not in (5, 6):
                return None
            name, version = parts[0], _version(parts[1])
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return None
    # A name mismatch means a legacy filename split at the wrong dash (or a stray file).
    return version if canonicalize_name(name) == canonicalize_name(project) else None


@functools.lru_cache(maxsize=4096)
def parse_requires_python(text: str | None) -> SpecifierSet | None:
    if not text or not text.strip():
        return None
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        # pip ignores an invalid Requires-Python too; the file is then unrestricted.
        log.debug("ignoring invalid Requires-Python %r", text)
        return None


def make_file(project: str, filename: str, requires_python: object, yanked: object) -> DistFile | None:
    """A DistFile of `project` from one listed file; None for another project's file or
    a filename that is not a distribution. Values of the wrong type count as absent:
    PEP 691 (and PEP 592) yank a file by ``true`` or a non-empty reason, so ``[]``, ``{}``,
    ``0`` or ``""`` leave it installable."""
    version = file_version(project, filename)
    if version is None:
        return None
    spec = parse_requires_python(requires_python if isinstance(requires_python, str) else None)
    reason = yanked if isinstance(yanked, str) else ""
    return DistFile(filename, version, spec, yanked is True or bool(reason), reason)


class UnreadablePage(ValueError):
    """A page that is not a simple-API project page (garbage, a proxy's page, another format)."""


def parse_json_page(project: str, text: str | bytes) -> list[DistFile]:
    """A PEP 691 JSON project page: ``{"meta": ..., "files": [{"filename", "yanked", ...}]}``.

    UnreadablePage when the page is not such an object; a file entry that is not an
    object with a filename is skipped (one odd entry should not hide the others).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise UnreadablePage(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadablePage(f"JSON {type(data).__name__}, not an object")
    meta = data.get("meta", {})
    api_version = str(meta.get("api-version", "1.0")) if isinstance(meta, dict) else "?"
    if not api_version.startswith("1."):
        raise UnreadablePage(f"simple API version {api_version}; only 1.x is understood")
    entries = data.get("files", [])
    if not isinstance(entries, list):
        raise UnreadablePage(f"'files' is a JSON {type(entries).__name__}, not a list")
    files = (
        make_file(project, entry["filename"], entry.get("requires-python"), entry.get("yanked", False))
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("filename"), str)
    )
    return [f for f in files if f is not None]


class _AnchorParser(HTMLParser):
    """Collects (filename, attributes) of the anchors of a PEP 503 page.

    HTMLParser already unescapes attribute values (``&gt;=3.8`` becomes ``>=3.8``).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, dict[str, str | None]]] = []
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((_anchor_filename(self._current, "".join(self._text)), self._current))
            self._current = None


def _anchor_filename(attrs: Mapping[str, str | None], text: str) -> str:
    # PEP 503: the filename is the last path segment of the URL (the text should match it).
    path = urlsplit(attrs.get("href") or "").path
    return unquote(path.rsplit("/", 1)[-1]) or text.strip()


def parse_html_page(project: str, text: str) -> list[DistFile]:
    """A PEP 503 HTML project page (``data-requires-python``, ``data-yanked``)."""
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    files = (
        make_file(project, name, attrs.get("data-requires-python"), _html_yanked(attrs))
        for name, attrs in parser.anchors
    )
    return [f for f in files if f is not None]


def parse_page(project: str, content_type: str, body: bytes) -> list[DistFile]:
    """The files of a project page in either format, by its Content-Type.

    HTML has no structure to check, so an HTML page that lists no file of the project
    (a proxy's login page, an error page sent with 200) is unreadable too: caching it
    would hide every version until the cache expires.
    """
    media_type = content_type.split(";")[0].strip().lower()
    if media_type.endswith("json"):
        return parse_json_page(project, body)
    files = parse_html_page(project, _decode(content_type, body))
    if not files:
        raise UnreadablePage(f"an HTML page listing no file of {project}")
    return files


def _decode(content_type: str, body: bytes) -> str:
    # Index pages are UTF-8 unless they say otherwise (requests would assume ISO-8859-1).
    header = Message()
    header["Content-Type"] = content_type or "text/html"
    charset = header.get_content_charset() or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _html_yanked(attrs: Mapping[str, str | None]) -> bool | str:
    # PEP 592: in HTML the attribute's presence yanks; its value is the reason, if any.
    if "data-yanked" not in attrs:
        return False
    return attrs["data-yanked"] or True  # a bare attribute or an empty reason still yanks


def group_releases(files: Iterable[DistFile]) -> list[Release]:
    by_version: dict[Version, list[DistFile]] = {}
    for f in files:
        by_version.setdefault(f.version, []).append(f)
    return sorted((_release(v, fs) for v, fs in by_version.items()), key=lambda r: r.version)


def _release(version: Version, files: list[DistFile]) -> Release:
    usable = [f for f in files if not f.yanked]
    yanked = not usable
    considered = files if yanked else usable
    specs = [f.requires_python for f in considered]
    reason = next((f.yanked_reason for f in files if f.yanked_reason), "") if yanked else ""
    if any(s is None for s in specs):
        return Release(version, None, yanked, yanked_reason=reason)
    distinct = list(dict.fromkeys(s for s in specs if s is not None))
    return Release(version, distinct[0], yanked, tuple(distinct[1:]), reason)


def newest_installable(releases: Iterable[Release], python: str | None) -> Version | None:
    """Newest final (not pre-release), non-yanked version whose Requires-Python admits python."""
    candidates = [r.version for r in releases if not r.version.is_prerelease and not r.yanked and r.admits(python)]
    return max(candidates, default=None)


# ---- which index -----------------------------------------------------------------------


@functools.cache
def pip_default_index() -> str:
    """The index pip uses when none is configured, as pip's own ``--help`` states it.

    Asked from pip's command line (its only public interface) rather than written
    here, so the default follows pip. Only called when PYPI_INDEX and PIP_INDEX_URL
    are both unset.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--isolated", "install", "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelTasksError(f"PYPI_INDEX is not set and pip could not tell its default index ({exc})") from None
    flat = " ".join(done.stdout.split())
    m = re.search(r"--index-url <url> .*?\(default (\S+?)\)", flat)
    if done.returncode != 0 or m is None:
        raise WheelTasksError("PYPI_INDEX is not set and pip could not tell its default index: set PYPI_INDEX")
    return m[1]


def index_url(settings: Settings) -> str:
    """The index of look-ups and builds: PYPI_INDEX (or PIP_INDEX_URL), else pip's default."""
    return settings.pypi_index or pip_default_index()


# ---- the cache -------------------------------------------------------------------------


def cache_path(settings: Settings) -> Path:
    return settings.cache_dir / CACHE_FILE


def _cache_files(base: Path) -> tuple[Path, ...]:
    """The SQLite file, its WAL companions, and a corrupt copy moved aside."""
    return tuple(base.with_name(base.name + suffix) for suffix in ("", "-wal", "-shm", CORRUPT_SUFFIX))


def clear_cache(settings: Settings) -> list[Path]:
    """Delete the index cache (the SQLite file and its companions); return what was removed."""
    removed = []
    for path in _cache_files(cache_path(settings)):
        try:
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(path)
        except OSError as exc:
            raise WheelTasksError(f"cannot remove the index cache file {path} ({exc.strerror}): remove it by hand") from None
    return removed


class PageCache:
    """Project pages that parsed, kept in requests-cache's SQLite backend.

    Only what the client stores explicitly is written: a page that parsed, with its URL and
    Content-Type and nothing else. No request headers (credentials), no redirect history
    (requests-cache keeps a redirect's original request, headers included), no answer that
    failed to parse. The folder is created private (0700) and the file is private (0600):
    SQLite gives its -wal and -shm files the mode of the database file.
    """

    def __init__(self, path: Path, expiry: timedelta) -> None:
        self.path = path
        self.expiry = expiry
        # Opened on first need, so a run that stops before any look-up (a rejected
        # target) writes nothing at all; a read where no file is creates none either.
        self._backend: SQLiteCache | None = None
        self._lock = threading.Lock()

    def _opened(self, create: bool) -> SQLiteCache | None:
        with self._lock:
            if self._backend is None and (create or os.path.lexists(self.path)):
                self._backend = _open_backend(self.path)
            return self._backend

    def get(self, url: str) -> CachedResponse | None:
        backend = self._opened(create=False)
        if backend is None:
            return None
        try:
            return backend.get_response(self._key(backend, url))
        except sqlite3.Error as exc:
            log.warning("could not read the index cache %s (%s); asking the index", self.path, exc)
            return None

    def put(self, url: str, content_type: str, body: bytes) -> None:
        stored = CachedResponse(
            content=body,
            headers=CaseInsensitiveDict({"Content-Type": content_type}),
            request=CachedRequest(method="GET", url=url),
            status_code=200,
            reason="OK",
            url=url,
        )
        backend = self._opened(create=True)
        assert backend is not None
        try:
            backend.save_response(stored, self._key(backend, url), datetime.now(timezone.utc) + self.expiry)
        except sqlite3.Error as exc:
            log.warning("could not write the index cache %s (%s); run `inv clean-cache` if it persists", self.path, exc)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()  # type: ignore[no-untyped-call]  # unannotated in requests-cache

    @staticmethod
    def _key(backend: SQLiteCache, url: str) -> str:
        return backend.create_key(requests.Request("GET", url).prepare())


def _open_backend(path: Path, *, again: bool = False) -> SQLiteCache:
    """The SQLite backend at `path`; a file that is not a database is moved aside (with a
    warning), a cache written by an older wheeltasks (which kept redirect histories, and so
    request headers) is dropped, and an unusable folder is one clear error."""
    _make_private(path)
    try:
        backend = SQLiteCache(path, wal=True, busy_timeout=10_000)
        if len(backend.redirects) and not again:
            backend.close()  # type: ignore[no-untyped-call]
            for old in _cache_files(path)[:3]:
                old.unlink(missing_ok=True)
            log.warning("dropped the index cache %s: it was written by an older wheeltasks", path)
            return _open_backend(path, again=True)
        return backend
    except sqlite3.OperationalError as exc:
        raise WheelTasksError(
            f"cannot use the index cache {path} ({exc}): make {path.parent} writable, "
            "or set WHEELTASKS_CACHE_DIR to another folder"
        ) from None
    except sqlite3.DatabaseError as exc:
        if again:
            raise WheelTasksError(f"cannot use the index cache {path} ({exc}): run `inv clean-cache`") from None
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        try:
            os.replace(path, aside)
            for companion in _cache_files(path)[1:3]:
                companion.unlink(missing_ok=True)
        except OSError:
            raise WheelTasksError(
                f"the index cache {path} is not a SQLite database ({exc}): remove it, or run `inv clean-cache`"
            ) from None
        log.warning("the index cache %s was not a SQLite database (%s); moved it to %s and started anew", path, exc, aside)
        return _open_backend(path, again=True)


def _make_private(path: Path) -> None:
    """Create the cache folder (0700) and file (0600); tighten an existing file's mode."""
    folder = path.parent
    try:
        if not folder.is_dir():
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        if not regular:  # a FIFO or a device: SQLite would block on it, or worse
            raise WheelTasksError(
                f"the index cache {path} is not a regular file: remove it, or set WHEELTASKS_CACHE_DIR to another folder"
            )
        for existing in _cache_files(path)[:3]:
            if existing.exists() and existing.stat().st_mode & 0o077:
                existing.chmod(0o600)
    except (FileExistsError, NotADirectoryError):
        raise WheelTasksError(
            f"the cache folder {folder} is not a folder (a file is in the way): remove that file, "
            "or set WHEELTASKS_CACHE_DIR to a folder"
        ) from None
    except OSError as exc:
        raise WheelTasksError(
            f"cannot write the index cache {path} ({exc.strerror or exc}): make {folder} writable, "
            "remove what is in the way, or set WHEELTASKS_CACHE_DIR to another folder"
        ) from None


class _CountingAdapter(HTTPAdapter):
    """Counts the requests that really go to the network (cache hits never reach an adapter)."""

    def __init__(self, counter: _Counter) -> None:
        super().__init__()  # no urllib3 retries: they ignore the deadline (see IndexClient._get)
        self._counter = counter

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self._counter.add()
        return super().send(request, *args, **kwargs)


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


@dataclass(frozen=True)
class _Answer:
    """What one request to the index gave: the status, and for a 200 the page."""

    status: int
    content_type: str = ""
    body: bytes = b""


class _NoAnswer(Exception):
    """No usable answer this time: a cached copy may stand in. The message says why, in a
    few words; ``unusable`` when an answer came but could not be used (too large, garbage),
    else the index could not be reached (refused, timed out, 429, 5xx)."""

    def __init__(self, reason: str, *, unusable: bool = False) -> None:
        super().__init__(reason)
        self.unusable = unusable


# ---- the client ------------------------------------------------------------------------


class IndexClient:
    """Look-ups on one simple index (``settings.pypi_index``), cached for 24 h.

    Every look-up has a deadline (``remote_timeout``) and a size limit (``max_index_page_mb``).
    Only a page that parsed is cached; when the index fails (unreachable, timeout, 429, 5xx,
    a page too large or unreadable) the cached copy is used, however old, with a warning.
    """

    def __init__(self, settings: Settings, expire_after: timedelta | int | None = None) -> None:
        configured = index_url(settings).rstrip("/") + "/"
        self.index_url, auth = split_credentials(configured)
        self.index_display = redact(configured)
        self.timeout = settings.remote_timeout
        self.max_page_bytes = settings.max_index_page_bytes
        if settings.clean_cache:
            clear_cache(settings)
        expiry = DEFAULT_EXPIRY if expire_after is None else expire_after
        self._cache = PageCache(cache_path(settings), expiry if isinstance(expiry, timedelta) else timedelta(seconds=expiry))
        self._session = remote.Session()
        self._session.auth = auth
        self._session.headers["Accept"] = ACCEPT
        if settings.ca_bundle:
            self._session.verify = settings.ca_bundle
        # Each project page parsed once per run, whatever asks for it (every Python of
        # -pyall, check_version): a page of 100k links takes seconds to parse.
        self._releases: dict[str, list[Release]] = {}
        self._parsed_lock = threading.Lock()
        self._counter = _Counter()
        adapter = _CountingAdapter(self._counter)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def network_requests(self) -> int:
        """How many requests went to the network (not answered from the cache)."""
        return self._counter.value

    def close(self) -> None:
        self._session.close()
        self._cache.close()

    # ---- look-ups -------------------------------------------------------------------

    def project_url(self, project: str) -> str:
        return f"{self.index_url}{canonicalize_name(project)}/"

    def files(self, project: str) -> list[DistFile]:
        url = self.project_url(project)
        cached = self._cache.get(url)
        if cached is not None and not cached.is_expired:
            files = _parse_cached(project, cached)
            if files is not None:
                return files
        try:
            answer = self._download(project, url)
            files = parse_page(project, answer.content_type, answer.body)
        except UnreadablePage as exc:
            return self._stale_or_fail(project, cached, _NoAnswer(str(exc), unusable=True))
        except _NoAnswer as exc:
            return self._stale_or_fail(project, cached, exc)
        self._cache.put(url, answer.content_type, answer.body)
        return files

    def releases(self, project: str) -> list[Release]:
        """Every version on the index (yanked and pre-releases included), oldest first; the
        page is fetched and parsed once per client (one run)."""
        url = self.project_url(project)
        with self._parsed_lock:
            known = self._releases.get(url)
        if known is None:
            known = group_releases(self.files(project))
            with self._parsed_lock:
                self._releases.setdefault(url, known)
        return known

    def latest(self, project: str, python: str | None) -> Version:
        """The newest final, non-yanked version whose Requires-Python admits `python`."""
        version = newest_installable(self.releases(project), python)
        if version is None:
            for_python = f" for Python {python}" if python else ""
            raise WheelTasksError(
                f"{project} has no final, non-yanked release{for_python} on {self.index_display}; "
                "give a version explicitly or another Python"
            )
        return version

    def latest_many(self, projects: Iterable[str], python: str | None) -> dict[str, Version]:
        """`latest` for several projects at once, looked up concurrently; keys as given.

        The look-ups run on daemon threads, so Ctrl-C ends the process at once.
        """
        names = list(dict.fromkeys(projects))
        calls = [functools.partial(self.latest, name, python) for name in names]
        return dict(zip(names, remote.call_all(calls, MAX_WORKERS), strict=True))

    def check_version(self, project: str, version: Version | str, python: str | None) -> None:
        """A pinned version must be on the index and admit `python`; an error otherwise.

        A yanked version is allowed when pinned exactly (PEP 592), with a warning.
        """
        wanted = _as_version(version)
        releases = self.releases(project)
        release = next((r for r in releases if r.version == wanted), None)
        if release is None:
            newest = newest_installable(releases, python) or max((r.version for r in releases), default=None)
            raise WheelTasksError(
                f"{project} {wanted} is not on {self.index_display}; newest is {newest}; "
                "pick an existing version or leave the version out"
            )
        if release.yanked:
            why = f" ({release.yanked_reason})" if release.yanked_reason else ""
            log.warning("%s %s is yanked on the index%s; using it because it was pinned", project, wanted, why)
        if not release.admits(python):
            raise WheelTasksError(
                f"{project} {wanted} requires Python {_specifiers_text(release)}, not {python}; "
                "pick another Python or version"
            )

    # ---- HTTP -----------------------------------------------------------------------

    def _download(self, project: str, url: str) -> _Answer:
        """The project page, within the deadline and the size limit; errors the user must fix
        (unknown project, refused credentials, a bad URL) are raised, the rest are _NoAnswer."""
        deadline = remote.Deadline(self.timeout)
        try:
            answer = remote.call(lambda: self._get(url, deadline), deadline)
        except remote.DeadlineExceeded:
            raise _NoAnswer(f"no complete answer within {self.timeout:g} s (REMOTE_TIMEOUT)") from None
        except remote.TooLarge as exc:
            raise _NoAnswer(f"larger than {remote.mib(exc.limit)}, MAX_INDEX_PAGE_MB", unusable=True) from None
        except remote.BadRedirect as exc:  # the server's doing, not PYPI_INDEX's
            raise _NoAnswer(str(exc), unusable=True) from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise WheelTasksError(f"PYPI_INDEX={self.index_display!r} is not a usable http(s) URL") from None
        except requests.exceptions.SSLError:
            raise _NoAnswer("TLS verification failed: set CA_BUNDLE to the CA file that signs its certificate") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            # ValueError: what requests raises for values it cannot send (odd credentials).
            raise _NoAnswer(type(exc).__name__) from None
        status = answer.status
        if status == 404:
            raise WheelTasksError(f"project {project} not found on {self.index_display}; check the name or PYPI_INDEX")
        if status in (401, 403):
            raise WheelTasksError(
                f"{self.index_display} answered HTTP {status} for {project}: check the credentials in PYPI_INDEX"
            )
        if status == 429 or status >= 500:
            raise _NoAnswer(f"HTTP {status}")
        if status != 200:
            raise WheelTasksError(
                f"{self.index_display} answered HTTP {status} for {project}; check PYPI_INDEX and its credentials"
            )
        return answer

    def _get(self, url: str, deadline: remote.Deadline) -> _Answer:
        """Runs on a daemon thread (see remote.call), and stops by itself at the deadline.

        A refused connection or a 5xx is retried briefly, while the deadline allows; a 429
        is not (its Retry-After is often long, and a cached answer serves better).
        """
        attempt = 1
        while True:
            try:
                answer = self._get_once(url, deadline)
                if answer.status not in RETRY_STATUSES or attempt == TRIES:
                    return answer
            except requests.exceptions.SSLError:
                raise
            except requests.exceptions.ConnectionError:
                if attempt == TRIES:
                    raise
            time.sleep(min(BACKOFF * 2 ** (attempt - 1), max(deadline.remaining(), 0.0)))
            attempt += 1

    def _get_once(self, url: str, deadline: remote.Deadline) -> _Answer:
        with self._session.get(url, stream=True, timeout=deadline.timeout()) as response:
            if response.status_code != 200:
                return _Answer(response.status_code)
            body = remote.read_body(response, deadline, self.max_page_bytes)
            return _Answer(200, response.headers.get("Content-Type", ""), body)

    def _stale_or_fail(self, project: str, cached: CachedResponse | None, problem: _NoAnswer) -> list[DistFile]:
        files = _parse_cached(project, cached) if cached is not None else None
        if problem.unusable:
            what = f"the package index {self.index_display} sent an unusable page for {project} ({problem})"
            fix = "check that PYPI_INDEX is a PEP 503/691 simple index, or retry later"
        else:
            what = f"could not reach the package index {self.index_display} for {project} ({problem})"
            fix = "check PYPI_INDEX, the network, proxy settings and CA_BUNDLE, or retry later"
        if files is None or cached is None:
            raise RemoteError(f"{what} and nothing is cached: {fix}")
        log.warning("%s; using the cached answer from %s", what, f"{cached.created_at:%Y-%m-%d %H:%M} UTC")
        return files


def _parse_cached(project: str, cached: CachedResponse) -> list[DistFile] | None:
    """A cached page's files; None when it does not parse (a page an older version cached)."""
    try:
        return parse_page(project, cached.headers.get("Content-Type", ""), cached.content or b"")
    except UnreadablePage:
        return None


def _as_version(version: Version | str) -> Version:
    if isinstance(version, Version):
        return version
    try:
        return Version(version)
    except InvalidVersion as exc:
        raise WheelTasksError(f"{version!r} is not a PEP 440 version (like 1.2.3)") from exc


def _specifiers_text(release: Release) -> str:
    return " or ".join(str(s) for s in release.specifiers)
