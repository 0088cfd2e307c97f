"""Bounds for remote operations: a wall-clock deadline, size limits, and threads that never
hold up the interpreter's exit. Shared by the index client and the registry client.

requests' timeouts bound each socket operation, not a request: a server that sends one
byte every few seconds (in its headers or its body) never trips them, and urllib3's
retries multiply them. So a request runs on a daemon thread that the caller waits for
only until the deadline, and a body is read in chunks, checking the deadline and the
size limit between chunks, so the thread itself also stops soon after the deadline.

Daemon threads, not a ThreadPoolExecutor: the executor's workers are joined when the
interpreter exits, so Ctrl-C during a look-up waited for every pending request.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin

import requests

from .urls import http_url_problem

T = TypeVar("T")

CHUNK = 64 * 1024
DEFAULT_TIMEOUT = 120.0  # seconds, for a client not given REMOTE_TIMEOUT
CONNECT_TIMEOUT = 10.0
MIB = 1024 * 1024


def mib(size: int) -> str:
    """A size limit as messages name it (``64 MiB``)."""
    return f"{size / MIB:g} MiB"


class DeadlineExceeded(Exception):
    """The operation did not finish within its deadline (the clients say which, and what to do)."""


class TooLarge(Exception):
    """A body was larger than its limit; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class BadRedirect(requests.RequestException):
    """A server redirected to a URL that is not http(s), or that urllib and requests read
    differently (``file:``, ``http://[::1/``): a remote failure, never followed."""


class Session(requests.Session):
    """A requests Session that follows only redirects to http(s) URLs both parsers read alike.

    requests would raise InvalidSchema for a ``file:`` redirect (which looks like a bad
    URL of the user's) and ValueError for one it cannot parse; the clients report a
    BadRedirect as the server's fault instead. The reason never quotes the URL.
    """

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is None:
            return None
        try:
            resolved = urljoin(resp.url, target)
        except ValueError:
            resolved = target
        problem = http_url_problem(resolved)
        if problem:
            raise BadRedirect(f"a redirect to a URL that cannot be followed: {problem}")
        return target


class Deadline:
    """The wall-clock end of one remote operation: retries, redirects and the body included."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def check(self) -> None:
        if self.remaining() <= 0:
            raise DeadlineExceeded

    def timeout(self, connect: float = CONNECT_TIMEOUT) -> tuple[float, float]:
        """(connect, read) timeouts for requests that never outlast the deadline."""
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded
        return min(connect, left), left


def call(fn: Callable[[], T], deadline: Deadline) -> T:
    """``fn()`` on a daemon thread: its result, or its exception, or DeadlineExceeded.

    The caller is back at the deadline however the server behaves; Ctrl-C interrupts the
    wait at once (``queue.Queue.get`` is interruptible, and the thread is not joined).
    """
    deadline.check()
    outcome: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            outcome.put((True, fn()))
        except BaseException as exc:  # handed to the caller, who decides
            outcome.put((False, exc))

    threading.Thread(target=run, name="wheeltasks-remote", daemon=True).start()
    try:
        ok, value = outcome.get(timeout=max(deadline.remaining(), 0.0))
    except queue.Empty:
        raise DeadlineExceeded from None
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def call_all(calls: Sequence[Callable[[], T]], max_workers: int) -> list[T]:
    """Every call, at most ``max_workers`` at a time on daemon threads; results in order.

    The first exception is raised as soon as it arrives; calls still running are left to
    finish (or to meet their own deadlines) on their threads.
    """
    if not calls:
        return []
    outcomes: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
    pending = iter(enumerate(calls))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                item = next(pending, None)
            if item is None:
                return
            index, fn = item
            try:
                outcomes.put((index, True, fn()))
            except BaseException as exc:  # handed to the caller, who decides
                outcomes.put((index, False, exc))

    for _ in range(min(max_workers, len(calls))):
        threading.Thread(target=work, name="wheeltasks-lookup", daemon=True).start()
    results: dict[int, Any] = {}
    while len(results) < len(calls):
        index, ok, value = outcomes.get()
        if not ok:
            raise value
        results[index] = value
    return [results[i] for i in range(len(calls))]


class Sink(Protocol):
    """Where a body's chunks go (a file, or one that also hashes them)."""

    def write(self, data: bytes, /) -> int: ...


def read_body(
    response: requests.Response,
    deadline: Deadline,
    limit: int,
    sink: Sink | None = None,
    *,
    truncate: bool = False,
) -> bytes:
    """The (decoded) body, read in chunks; TooLarge past ``limit`` bytes, DeadlineExceeded past
    the deadline. With ``sink`` the chunks are written there and b"" is returned; with
    ``truncate`` reading stops quietly at the limit (for error bodies, read only for detail).
    """
    parts: list[bytes] = []
    size = 0
    for chunk in _chunks(response, deadline):
        size += len(chunk)
        if size > limit:
            if truncate:
                parts.append(chunk[: len(chunk) - (size - limit)])
                break
            raise TooLarge(limit)
        if sink is not None:
            sink.write(chunk)
        else:
            parts.append(chunk)
    return b"".join(parts)


def _chunks(response: requests.Response, deadline: Deadline) -> Iterator[bytes]:
    # read1 returns what has arrived (one socket read at most), so a dripping server
    # cannot keep a read going past the deadline; iter_content would wait for a full chunk.
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # urllib3 1.x
        for chunk in response.iter_content(CHUNK):
            deadline.check()
            yield chunk
        return
    while True:
        deadline.check()
        chunk = read1(CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk
