"""The index client's cache: project pages that parsed, in requests-cache's SQLite backend,
in a private file of the user's cache folder (``WHEELTASKS_CACHE_DIR``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from requests.structures import CaseInsensitiveDict

from .errors import WheelTasksError
from .settings import Settings

if TYPE_CHECKING:  # requests-cache (and the backends it loads) is imported on first use:
    # a fifth of a second that `--help`, and a plan whose pages are not cached, do not need.
    from requests_cache.backends.sqlite import SQLiteCache
    from requests_cache.models.response import CachedResponse

log = logging.getLogger("wheeltasks.index")

# requests-cache imports every backend and serializer whose driver is installed (boto3 for
# DynamoDB alone is a sixth of a second); this cache uses only its SQLite backend and the
# default (pickle) serializer, so those drivers are hidden while it is imported.
_OTHER_DRIVERS = ("boto3", "botocore", "pymongo", "gridfs", "bson", "redis", "ujson", "orjson", "yaml", "itsdangerous")
_IMPORTING = threading.Lock()  # the index's look-up threads may be first at once

CACHE_FILE = "index-cache.sqlite"
PIP_DEFAULT_FILE = "pip-default-index.json"  # pip's default index, as index.pip_default_index keeps it
CORRUPT_SUFFIX = ".corrupt"
Clock = Callable[[], datetime]  # the time now, in UTC (aware)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def cache_path(settings: Settings) -> Path:
    return settings.cache_dir / CACHE_FILE


def _cache_files(base: Path) -> tuple[Path, ...]:
    """The SQLite file, its WAL companions, and a corrupt copy moved aside."""
    return tuple(base.with_name(base.name + suffix) for suffix in ("", "-wal", "-shm", CORRUPT_SUFFIX))


def clear_cache(settings: Settings) -> list[Path]:
    """Delete the index cache (the SQLite file and its companions, and pip's default index as
    ``index.pip_default_index`` keeps it); return what was removed."""
    removed = []
    for path in (*_cache_files(cache_path(settings)), settings.cache_dir / PIP_DEFAULT_FILE):
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

    def __init__(self, path: Path, expiry: timedelta, clock: Clock = utc_now) -> None:
        self.path = path
        self.expiry = expiry
        self._clock = clock
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
        _import_requests_cache()
        from requests_cache.models.request import CachedRequest
        from requests_cache.models.response import CachedResponse

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
            backend.save_response(stored, self._key(backend, url), self._clock() + self.expiry)
        except sqlite3.Error as exc:
            log.warning("could not write the index cache %s (%s); run `inv clean-cache` if it persists", self.path, exc)

    def fresh(self, cached: CachedResponse) -> bool:
        """Whether a stored page is still within the expiry it was stored with."""
        return cached.expires is None or self._clock() < cached.expires

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()  # type: ignore[no-untyped-call]  # unannotated in requests-cache

    @staticmethod
    def _key(backend: SQLiteCache, url: str) -> str:
        return backend.create_key(requests.Request("GET", url).prepare())


def _import_requests_cache() -> None:
    """Import requests-cache without the drivers of the backends this cache does not use (a
    driver already imported stays as it is, and later imports of the others work)."""
    with _IMPORTING:
        if "requests_cache" in sys.modules:
            return
        hidden = [name for name in _OTHER_DRIVERS if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # None in sys.modules: "not installed"
        try:
            import requests_cache  # noqa: F401
        finally:
            for name in hidden:
                if sys.modules.get(name, False) is None:
                    del sys.modules[name]


def _open_backend(path: Path, *, again: bool = False) -> SQLiteCache:
    """The SQLite backend at `path`; a file that is not a database is moved aside (with a
    warning), a cache written by an older wheeltasks (which kept redirect histories, and so
    request headers) is dropped, and an unusable folder is one clear error."""
    _import_requests_cache()
    from requests_cache.backends.sqlite import SQLiteCache

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
