"""Package index client: PEP 691 JSON / PEP 503 HTML simple API, cached (``indexcache.py``).

Answers which versions of a project exist on ``PYPI_INDEX``, which of them a given Python
may install and which are yanked, from the pages as ``pages.py`` reads them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import requests
import requests.auth
import urllib3.exceptions
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from requests.adapters import HTTPAdapter

from . import remote
from .errors import RemoteError, WheelTasksError
from .files import atomic_writer, write_atomic
from .indexcache import PIP_DEFAULT_FILE, Clock, PageCache, ParsedPages, cache_path, clear_cache, parsed_path, utc_now
from .pages import ACCEPT, DistFile, Release, UnreadablePage, group_releases, newest_installable, parse_page
from .settings import Settings
from .urls import redact, split_credentials

if TYPE_CHECKING:
    from requests_cache.models.response import CachedResponse

log = logging.getLogger("wheeltasks.index")

DEFAULT_EXPIRY = timedelta(hours=24)
MAX_WORKERS = 8
TRIES = 3
BACKOFF = 0.2  # seconds before the first retry; doubled for each next one
RETRY_STATUSES = frozenset({500, 502, 503, 504})


# ---- which index -----------------------------------------------------------------------


@functools.cache
def pip_default_index(cache_dir: Path | None = None) -> str:
    """The index pip uses when none is configured, as pip's own ``--help`` states it.

    Asked from pip's command line (its only public interface) rather than written
    here, so the default follows pip. Only called when PYPI_INDEX and PIP_INDEX_URL
    are both unset. The answer is kept in ``cache_dir`` for this Python and pip version:
    starting pip is a quarter of a second of every plan.
    """
    key = f"{sys.executable} pip {_pip_version()}"
    stored = cache_dir / PIP_DEFAULT_FILE if cache_dir is not None else None
    try:
        known = json.loads(stored.read_text(encoding="utf-8")) if stored is not None else None
        if isinstance(known, dict) and known.get("for") == key and isinstance(known.get("index"), str):
            return str(known["index"])
    except (OSError, ValueError):
        pass  # none kept, or unreadable: ask pip
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
    if stored is not None:
        with contextlib.suppress(OSError):  # only a cache
            stored.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the index cache's folder
            write_atomic(stored, json.dumps({"for": key, "index": m[1]}).encode())
    return m[1]


def _pip_version() -> str:
    try:
        return importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def index_url(settings: Settings) -> str:
    """The index of look-ups and builds: PYPI_INDEX (or PIP_INDEX_URL), else pip's default."""
    return settings.pypi_index or pip_default_index(settings.cache_dir)


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

    def __init__(
        self,
        settings: Settings,
        expire_after: timedelta | int | None = None,
        *,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` (UTC now) decides what in the cache has expired, and ``sleep`` waits
        before a retry: tests give their own, so no test waits out an expiry or a backoff."""
        configured = index_url(settings).rstrip("/") + "/"
        self.index_url, auth = split_credentials(configured)
        self.index_display = redact(configured)
        self.timeout = settings.remote_timeout
        self.max_page_bytes = settings.max_index_page_bytes
        if settings.clean_cache:
            clear_cache(settings)
        expiry = DEFAULT_EXPIRY if expire_after is None else expire_after
        self._cache = PageCache(
            cache_path(settings), expiry if isinstance(expiry, timedelta) else timedelta(seconds=expiry), clock
        )
        self._parsed = ParsedPages(parsed_path(settings), clock, pages_path=cache_path(settings))
        self._sleep = sleep
        self._session = remote.Session()
        self._session.auth = auth
        self._session.headers["Accept"] = ACCEPT
        if settings.ca_bundle:
            self._session.verify = settings.ca_bundle
        # Each project page parsed once per run, whatever asks for it (every Python of
        # -pyall, check_version, the wheels the plan takes): a page of 100k links takes
        # seconds to parse.
        self._files: dict[str, list[DistFile]] = {}
        self._releases: dict[str, list[Release]] = {}
        self.max_wheel_bytes = settings.max_layer_bytes
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
        self._parsed.close()

    # ---- look-ups -------------------------------------------------------------------

    def project_url(self, project: str) -> str:
        return f"{self.index_url}{canonicalize_name(project)}/"

    def files(self, project: str) -> list[DistFile]:
        """Every file of the project page (fetched and parsed once per client), each with its
        absolute URL and the index's sha256."""
        url = self.project_url(project)
        with self._parsed_lock:
            known = self._files.get(url)
        if known is None:
            known = self._fetch_files(project, url)
            with self._parsed_lock:
                known = self._files.setdefault(url, known)
        return known

    def known_files(self, project: str) -> list[DistFile] | None:
        """The project's files when this run or the cache has its page (fresh), else None:
        nothing is asked of the network."""
        url = self.project_url(project)
        with self._parsed_lock:
            known = self._files.get(url)
        if known is not None:
            return known
        _, files = self._from_cache(project, url)
        if files is None:
            return None
        with self._parsed_lock:
            return self._files.setdefault(url, files)

    def _from_cache(self, project: str, url: str) -> tuple[CachedResponse | None, list[DistFile] | None]:
        """The files of a fresh cached page (as parsed before, or parsed now), else None and
        the cached page, fresh or not, when there is one."""
        files = self._parsed.get(url)
        if files is not None:
            return None, files
        cached = self._cache.get(url)
        if cached is None or not self._cache.fresh(cached):
            return cached, None
        files = _parse_cached(project, cached, url)
        if files is not None:
            self._parsed.put(url, files, cached.expires)
        return cached, files

    def _fetch_files(self, project: str, url: str) -> list[DistFile]:
        cached, files = self._from_cache(project, url)
        if files is not None:
            return files
        try:
            answer = self._download(project, url)
            files = parse_page(project, answer.content_type, answer.body, url)
        except UnreadablePage as exc:
            return self._stale_or_fail(project, url, cached, _NoAnswer(str(exc), unusable=True))
        except _NoAnswer as exc:
            return self._stale_or_fail(project, url, cached, exc)
        self._parsed.put(url, files, self._cache.put(url, answer.content_type, answer.body))
        return files

    def download(self, file: DistFile, dest: Path) -> Path:
        """A file of the index into ``dest`` (a folder), whole or not at all, within the
        deadline and MAX_LAYER_MB, its sha256 checked against the index's. The index's
        credentials go only to the index itself, never to another host a link names."""
        if not file.url or not file.sha256:
            raise WheelTasksError(f"{file.filename} has no URL and sha256 on {self.index_display}: it cannot be taken")
        target = dest / file.filename
        deadline = remote.Deadline(self.timeout)
        same_origin = urlsplit(file.url)[:2] == urlsplit(self.index_url)[:2]
        try:
            remote.call(lambda: self._fetch(file, target, deadline, same_origin), deadline)
        except remote.DeadlineExceeded:
            raise RemoteError(
                f"{file.filename} did not arrive from {self.index_display} within {self.timeout:g} s (REMOTE_TIMEOUT)"
            ) from None
        except remote.TooLarge as exc:
            raise RemoteError(f"{file.filename} is larger than {remote.mib(exc.limit)} (MAX_LAYER_MB)") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, remote.BadRedirect) as exc:
            raise RemoteError(f"could not download {file.filename} from {self.index_display} ({type(exc).__name__})") from None
        return target

    def _fetch(self, file: DistFile, target: Path, deadline: remote.Deadline, same_origin: bool) -> None:
        auth = None if same_origin else _NO_AUTH
        with self._session.get(file.url, stream=True, timeout=deadline.timeout(), auth=auth) as response:
            if response.status_code != 200:
                raise RemoteError(f"{self.index_display} answered HTTP {response.status_code} for {file.filename}")
            with atomic_writer(target) as out:
                hasher = _Sha256Sink(out)
                remote.read_body(response, deadline, self.max_wheel_bytes, hasher)
                if hasher.hexdigest() != file.sha256:
                    raise RemoteError(
                        f"{file.filename} from {self.index_display} does not match the index's sha256: not taking it"
                    )

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
        # What this run or the cache already has is answered here: threads would only wait
        # on each other for the parse (a warm plan of `all` asks nothing of the network).
        asked = [name for name in names if self.known_files(name) is None]
        found = dict(zip(asked, remote.call_all([functools.partial(self.latest, n, python) for n in asked], MAX_WORKERS),
                         strict=True))
        return {name: found[name] if name in found else self.latest(name, python) for name in names}

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
            self._sleep(min(BACKOFF * 2 ** (attempt - 1), max(deadline.remaining(), 0.0)))
            attempt += 1

    def _get_once(self, url: str, deadline: remote.Deadline) -> _Answer:
        with self._session.get(url, stream=True, timeout=deadline.timeout()) as response:
            if response.status_code != 200:
                return _Answer(response.status_code)
            body = remote.read_body(response, deadline, self.max_page_bytes)
            return _Answer(200, response.headers.get("Content-Type", ""), body)

    def _stale_or_fail(
        self, project: str, url: str, cached: CachedResponse | None, problem: _NoAnswer
    ) -> list[DistFile]:
        files = _parse_cached(project, cached, url) if cached is not None else None
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


def _parse_cached(project: str, cached: CachedResponse, url: str) -> list[DistFile] | None:
    """A cached page's files; None when it does not parse (a page an older version cached)."""
    try:
        return parse_page(project, cached.headers.get("Content-Type", ""), cached.content or b"", url)
    except UnreadablePage:
        return None


class _NoAuthClass(requests.auth.AuthBase):
    """No Authorization header (an auth object keeps the session's and ~/.netrc's out)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


_NO_AUTH = _NoAuthClass()


class _Sha256Sink:
    """A file that hashes what is written to it."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self._out.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _as_version(version: Version | str) -> Version:
    if isinstance(version, Version):
        return version
    try:
        return Version(version)
    except InvalidVersion as exc:
        raise WheelTasksError(f"{version!r} is not a PEP 440 version (like 1.2.3)") from exc


def _specifiers_text(release: Release) -> str:
    return " or ".join(str(s) for s in release.specifiers)
