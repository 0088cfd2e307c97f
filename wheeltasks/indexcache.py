"""The index client's cache: project pages that parsed, in requests-cache's SQLite backend,
in a private file of the user's cache folder (``WHEELTASKS_CACHE_DIR``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from requests.structures import CaseInsensitiveDict

from . import pages
from .errors import WheelTasksError
from .pages import DistFile
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
PARSED_FILE = "index-parsed.sqlite"  # the cached pages' files as parsed (ParsedPages)
PIP_DEFAULT_FILE = "pip-default-index.json"  # pip's default index, as index.pip_default_index keeps it
CORRUPT_SUFFIX = ".corrupt"
Clock = Callable[[], datetime]  # the time now, in UTC (aware)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def cache_path(settings: Settings) -> Path:
    return settings.cache_dir / CACHE_FILE


def parsed_path(settings: Settings) -> Path:
    return settings.cache_dir / PARSED_FILE


def _cache_files(base: Path) -> tuple[Path, ...]:
    """The SQLite file, its WAL companions, and a corrupt copy moved aside."""
    return tuple(base.with_name(base.name + suffix) for suffix in ("", "-wal", "-shm", CORRUPT_SUFFIX))


def clear_cache(settings: Settings) -> list[Path]:
    """Delete the index cache (the SQLite files and their companions: the pages and the
    files parsed from them, and pip's default index as ``index.pip_default_index`` keeps
    it); return what was removed."""
    removed = []
    for path in (*_cache_files(cache_path(settings)), *_cache_files(parsed_path(settings)),
                 settings.cache_dir / PIP_DEFAULT_FILE):
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

    def put(self, url: str, content_type: str, body: bytes) -> datetime:
        """Store a page that parsed; return when it expires."""
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
        expires = self._clock() + self.expiry
        try:
            backend.save_response(stored, self._key(backend, url), expires)
        except sqlite3.Error as exc:
            log.warning("could not write the index cache %s (%s); run `inv clean-cache` if it persists", self.path, exc)
        return expires

    def fresh(self, cached: CachedResponse) -> bool:
        """Whether a stored page is still within the expiry it was stored with."""
        return cached.expires is None or self._clock() < cached.expires

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()  # type: ignore[no-untyped-call]  # unannotated in requests-cache

    @staticmethod
    def _key(backend: SQLiteCache, url: str) -> str:
        return backend.create_key(requests.Request("GET", url).prepare())


def _parser_key() -> str:
    """Which parser wrote a row: a hash of pages.py (its rules decide the files), so a
    wheeltasks that parses otherwise never reads an older one's rows."""
    try:
        return hashlib.sha256(Path(pages.__file__).read_bytes()).hexdigest()[:16]
    except OSError:
        return "unknown"


class ParsedPages:
    """The files of the cached pages as parsed, so a warm plan neither imports requests-cache
    nor parses a page (most of a warm `check`): a cache derived from PageCache, in plain
    sqlite3, one JSON row per page URL, holding until that page's own expiry and only for
    the parser that wrote it (``_parser_key``).

    Best effort: a file, row or value that does not read back is a miss (the page is read
    and parsed as before, and the row written again); nothing here raises. The file is
    private like the page cache's, made only beside a stored page, and `clean-cache`
    removes it.
    """

    def __init__(self, path: Path, clock: Clock = utc_now, *, pages_path: Path | None = None) -> None:
        """``pages_path``: the page cache's file, made private (0600) here too when this
        opens, as the page cache would (a warm run does not open it)."""
        self.path = path
        self._clock = clock
        self._also_private = _cache_files(pages_path)[:3] if pages_path is not None else ()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, shared by the look-up threads
        self._parser: str | None = None

    def get(self, url: str) -> list[DistFile] | None:
        with self._lock:
            db = self._connect(create=False)
            if db is None:
                return None
            try:
                row = db.execute("SELECT parser, expires, files FROM parsed WHERE url = ?", (url,)).fetchone()
            except sqlite3.Error as exc:
                log.debug("parsed index cache %s unreadable (%s)", self.path, exc)
                return None
            parser = self._parser_key()
        if row is None or row[0] != parser or (row[1] is not None and self._clock().timestamp() >= row[1]):
            return None
        try:
            return [pages.file_from_row(entry) for entry in json.loads(row[2])]
        except (ValueError, TypeError, RecursionError) as exc:
            log.debug("parsed index cache %s: the row of %s does not read back (%s)", self.path, url, exc)
            return None

    def put(self, url: str, files: Sequence[DistFile], expires: datetime | None) -> None:
        text = json.dumps([pages.file_row(f) for f in files], separators=(",", ":"))
        with self._lock:
            db = self._connect(create=True)
            if db is None:
                return
            try:
                db.execute("INSERT OR REPLACE INTO parsed VALUES (?, ?, ?, ?)",
                           (url, self._parser_key(), None if expires is None else expires.timestamp(), text))
            except sqlite3.Error as exc:
                log.debug("could not write the parsed index cache %s (%s)", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _parser_key(self) -> str:
        if self._parser is None:
            self._parser = _parser_key()
        return self._parser

    def _connect(self, create: bool) -> sqlite3.Connection | None:
        """The open database (under the lock); None where there is none to read, or it is
        not a regular file. One that is not a database is made anew when writing."""
        if self._db is not None:
            return self._db
        for again in (False, True):
            if not _private_regular_file(self.path, create):
                return None
            try:
                db = sqlite3.connect(self.path, timeout=2, isolation_level=None, check_same_thread=False)
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("CREATE TABLE IF NOT EXISTS parsed "
                               "(url TEXT PRIMARY KEY, parser TEXT NOT NULL, expires REAL, files TEXT NOT NULL)")
                except sqlite3.Error:
                    db.close()
                    raise
            except sqlite3.DatabaseError as exc:
                log.debug("parsed index cache %s unusable (%s)", self.path, exc)
                if not create or again or isinstance(exc, sqlite3.OperationalError):
                    return None
                for old in _cache_files(self.path)[:3]:
                    with contextlib.suppress(OSError):
                        old.unlink()
                continue
            self._db = db
            with contextlib.suppress(OSError):
                _tighten((*_cache_files(self.path)[1:3], *self._also_private))
            return db
        return None


def _private_regular_file(path: Path, create: bool) -> bool:
    """Whether `path` is a regular file (made, 0600, when `create` and its folder exists),
    its mode tightened to 0600; False for anything else, never an error (nor a wait on a
    FIFO)."""
    flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return False
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return False
        if mode & 0o077:
            os.fchmod(fd, 0o600)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


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


def _tighten(paths: Sequence[Path]) -> None:
    """Make those of `paths` that are regular files private (0600)."""
    for existing in paths:
        if existing.is_file() and existing.stat().st_mode & 0o077:
            existing.chmod(0o600)


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
        _tighten(_cache_files(path)[:3])
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
