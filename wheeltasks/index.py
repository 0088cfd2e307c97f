"""Package index client: PEP 691 JSON / PEP 503 HTML simple API, cached with requests-cache.

Answers which versions of a project exist on ``PYPI_INDEX``, which of them a given Python
may install (Requires-Python, PEP 345/503) and which are yanked (PEP 592).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import requests_cache
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version
from requests.adapters import HTTPAdapter
from requests_cache.backends.sqlite import SQLiteCache
from urllib3.util.retry import Retry

from .errors import WheelTasksError
from .settings import Settings
from .urls import redact, split_credentials

log = logging.getLogger("wheeltasks.index")

CACHE_FILE = "index-cache.sqlite"
DEFAULT_EXPIRY = timedelta(hours=24)
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# PEP 691: prefer JSON, accept the HTML forms (the versioned one, then plain text/html).
ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01"
STALE_OK = {"Cache-Control": f"only-if-cached,max-stale={10 * 365 * 24 * 3600}"}
TIMEOUT = (10, 60)  # seconds: connect, read
MAX_WORKERS = 8
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


def make_file(
    project: str, filename: str, requires_python: str | None, yanked: bool | str | None
) -> DistFile | None:
    version = file_version(project, filename)
    if version is None:
        return None
    reason = yanked if isinstance(yanked, str) else ""
    return DistFile(filename, version, parse_requires_python(requires_python), yanked not in (None, False), reason)


def parse_json_page(project: str, text: str) -> list[DistFile]:
    """A PEP 691 JSON project page: ``{"meta": ..., "files": [{"filename", "yanked", ...}]}``."""
    data = json.loads(text)
    api_version = str(data.get("meta", {}).get("api-version", "1.0"))
    if not api_version.startswith("1."):
        raise WheelTasksError(f"the index answered simple API version {api_version}; only 1.x is understood")
    files = (
        make_file(project, entry["filename"], entry.get("requires-python"), entry.get("yanked", False))
        for entry in data.get("files", [])
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


def _html_yanked(attrs: Mapping[str, str | None]) -> bool | str:
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


def clear_cache(settings: Settings) -> list[Path]:
    """Delete the index cache (the SQLite file and its WAL companions); return what was removed."""
    base = cache_path(settings)
    removed = []
    for path in (base, base.with_name(base.name + "-wal"), base.with_name(base.name + "-shm")):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


class _CountingAdapter(HTTPAdapter):
    """Counts the requests that really go to the network (cache hits never reach an adapter)."""

    def __init__(self, counter: _Counter) -> None:
        # Retry connection hiccups and 5xx briefly; then report, so a stale answer can be used.
        retry = Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504), raise_on_status=False)
        super().__init__(max_retries=retry)
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


# ---- the client ------------------------------------------------------------------------


class IndexClient:
    """Look-ups on one simple index (``settings.pypi_index``), cached for 24 h.

    One CachedSession is shared by all threads: requests-cache's SQLite backend shares one
    connection and serialises writes with a lock (requests-cache PRs #796, #839); WAL mode
    and a busy timeout keep two wheeltasks processes from failing on a locked database.
    """

    def __init__(self, settings: Settings, expire_after: timedelta | int | None = None) -> None:
        configured = index_url(settings).rstrip("/") + "/"
        self.index_url, auth = split_credentials(configured)
        self.index_display = redact(configured)
        if settings.clean_cache:
            clear_cache(settings)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        backend = SQLiteCache(cache_path(settings), wal=True, busy_timeout=10_000)
        expiry = DEFAULT_EXPIRY if expire_after is None else expire_after
        self._session = requests_cache.CachedSession(backend=backend, expire_after=expiry, allowable_codes=(200,))
        self._session.auth = auth
        self._session.headers["Accept"] = ACCEPT
        if settings.ca_bundle:
            self._session.verify = settings.ca_bundle
        self._counter = _Counter()
        adapter = _CountingAdapter(self._counter)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    @property
    def network_requests(self) -> int:
        """How many requests went to the network (not answered from the cache)."""
        return self._counter.value

    def close(self) -> None:
        # requests-cache leaves CachedSession.close unannotated; it also closes the database.
        self._session.close()  # type: ignore[no-untyped-call]

    # ---- look-ups -------------------------------------------------------------------

    def project_url(self, project: str) -> str:
        return f"{self.index_url}{canonicalize_name(project)}/"

    def files(self, project: str) -> list[DistFile]:
        response = self._fetch(project)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.endswith("json"):
            return parse_html_page(project, _html_text(response))
        try:
            return parse_json_page(project, response.text)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WheelTasksError(
                f"{self.index_display} answered an unreadable JSON page for {project} ({exc}); "
                "check that PYPI_INDEX is a PEP 503/691 simple index"
            ) from exc

    def releases(self, project: str) -> list[Release]:
        """Every version on the index (yanked and pre-releases included), oldest first."""
        return group_releases(self.files(project))

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
        """`latest` for several projects at once, looked up concurrently; keys as given."""
        names = list(dict.fromkeys(projects))
        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(names))) as pool:
            futures = {name: pool.submit(self.latest, name, python) for name in names}
            return {name: future.result() for name, future in futures.items()}

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

    def _fetch(self, project: str) -> requests.Response:
        url = self.project_url(project)
        try:
            response = self._session.get(url, timeout=TIMEOUT)
        except requests.RequestException as exc:
            return self._stale_or_fail(project, url, type(exc).__name__)
        if response.status_code == 404:
            raise WheelTasksError(
                f"project {project} not found on {self.index_display}; check the name or PYPI_INDEX"
            )
        if response.status_code >= 500:
            return self._stale_or_fail(project, url, f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise WheelTasksError(
                f"{self.index_display} answered HTTP {response.status_code} for {project}; "
                "check PYPI_INDEX and its credentials"
            )
        return response

    def _stale_or_fail(self, project: str, url: str, reason: str) -> requests.Response:
        # RFC 9111 request directives, honoured by requests-cache (no spaces: it splits on ","):
        # answer from the cache only, however old the answer is.
        cached = self._session.get(url, headers=STALE_OK, timeout=TIMEOUT)
        if cached.status_code != 200:  # requests-cache answers 504 when nothing is cached
            raise WheelTasksError(
                f"could not reach the package index {self.index_display} ({reason}) and nothing is cached "
                f"for {project}; check PYPI_INDEX, the network, proxy settings and CA_BUNDLE"
            )
        log.warning(
            "package index %s could not be reached (%s); using the cached answer for %s from %s",
            self.index_display, reason, project, getattr(cached, "created_at", "earlier"),
        )
        return cached


def _html_text(response: requests.Response) -> str:
    # requests assumes ISO-8859-1 for text/* without a charset; index pages are UTF-8.
    if "charset" in response.headers.get("Content-Type", "").lower():
        return response.text
    return response.content.decode("utf-8", errors="replace")


def _as_version(version: Version | str) -> Version:
    if isinstance(version, Version):
        return version
    try:
        return Version(version)
    except InvalidVersion as exc:
        raise WheelTasksError(f"{version!r} is not a PEP 440 version (like 1.2.3)") from exc


def _specifiers_text(release: Release) -> str:
    return " or ".join(str(s) for s in release.specifiers)
