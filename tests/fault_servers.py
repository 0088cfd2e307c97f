"""HTTP servers on 127.0.0.1 that misbehave on purpose, for the fault tests.

Why stand-ins: pypiserver and Debian's docker-registry answer correctly, promptly and
briefly. They cannot hang, drip a byte at a time, send a page of hundreds of MB, answer
garbage with a 200, rate-limit, hand out a garbage token, or page tags forever. Where
the real server can show a fault (a redirect, a layer that is a gzip bomb or not a tar),
the tests use the real server instead.

The ``fault_server`` fixture starts one per test (a plugin of ``conftest.py``, which
marks its tests ``services``). A :class:`FaultServer` answers each path with the behaviour routed to the longest
matching prefix; each behaviour is a function ``(request) -> None`` that writes the
answer. Behaviours that wait (``hang``, ``drip``) end when the server stops.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

Request = http.server.BaseHTTPRequestHandler
Behaviour = Callable[[Request], None]


@dataclass(frozen=True)
class Seen:
    """A request the server received (for asserting what was, or was not, sent)."""

    method: str
    path: str
    headers: dict[str, str]
    at: float = 0.0  # time.monotonic() when it arrived


class FaultServer:
    """A threaded HTTP server on a free loopback port with routable faults."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle and delayed ACKs
            # make every keep-alive answer wait 40 ms.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                server.dispatch(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

            def log_error(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    def route(self, prefix: str, behaviour: Behaviour) -> None:
        self.routes[prefix] = behaviour

    def dispatch(self, request: Request) -> None:
        path = urlsplit(request.path).path
        self.seen.append(Seen(request.command, request.path, dict(request.headers.items()), time.monotonic()))
        matches = [p for p in self.routes if path.startswith(p)]
        behaviour = self.routes[max(matches, key=len)] if matches else status(404)
        try:
            behaviour(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def requested(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if urlsplit(s.path).path.startswith(prefix)]

    def mark(self) -> int:
        """A point in the requests seen, for :meth:`seconds_since`."""
        return len(self.seen)

    def seconds_since(self, mark: int, started: float) -> float:
        """Seconds from the first request seen after ``mark`` until now, else from ``started``.

        Deadline tests measure from there: REMOTE_TIMEOUT bounds the remote operation, not
        what a loaded machine does before it reaches the server (a client, a cache, a thread).
        """
        first = self.seen[mark].at if len(self.seen) > mark else started
        return time.monotonic() - first

    def wait_for(self, prefix: str, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.requested(prefix):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A fault server on a free loopback port, stopped (its waiting behaviours ended) after the test."""
    fault = FaultServer()
    yield fault
    fault.stop()


# ---- answers ---------------------------------------------------------------------------


def send(
    request: Request, code: int, body: bytes = b"", content_type: str = "", headers: Mapping[str, str] | None = None
) -> None:
    request.send_response(code)
    if content_type:
        request.send_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    if request.command != "HEAD":
        request.wfile.write(body)


def status(code: int, body: bytes = b"", content_type: str = "", **headers: str) -> Behaviour:
    """A fixed answer; header names with underscores (``Retry_After="3600"``) get dashes."""
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return lambda request: send(request, code, body, content_type, named)


def answer(body: bytes | str, content_type: str, code: int = 200, **headers: str) -> Behaviour:
    data = body.encode() if isinstance(body, str) else body
    return status(code, data, content_type, **headers)


def json_answer(value: Any, content_type: str = "application/json", code: int = 200, **headers: str) -> Behaviour:
    return answer(json.dumps(value), content_type, code, **headers)


def redirect(location: str, code: int = 301) -> Behaviour:
    return status(code, Location=location)


def hang(server: FaultServer) -> Behaviour:
    """Read the request, then say nothing until the server stops."""
    return lambda request: server.stopping.wait()


def drip(server: FaultServer, interval: float, content_type: str = "text/html", headers_too: bool = False) -> Behaviour:
    """One byte every ``interval`` seconds, forever: in the body (after a large
    Content-Length), or from the status line on (``headers_too``)."""

    def behave(request: Request) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: 1000000\r\n\r\n".encode()
        if not headers_too:
            request.wfile.write(head)
            request.wfile.flush()
            head = b""
        for byte in _forever(head + b"<"):
            if server.stopping.wait(interval):
                return
            request.wfile.write(byte)
            request.wfile.flush()

    return behave


def _forever(first: bytes) -> Iterator[bytes]:
    yield from (first[i : i + 1] for i in range(len(first)))
    while True:
        yield b"a"


def huge(size: int, project: str = "wtfault", content_type: str = "text/html") -> Behaviour:
    """A valid-looking project page of ``size`` bytes, generated as it is sent (never held)."""
    line = f'<a href="../f/{project}-1.0.0.tar.gz">{project}-1.0.0.tar.gz</a><br>\n'.encode()
    block = line * max(1, (64 * 1024) // len(line))

    def behave(request: Request) -> None:
        request.send_response(200)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(size))
        request.end_headers()
        sent = 0
        while sent < size:  # until the client hangs up (BrokenPipeError ends it)
            part = block[: size - sent]
            request.wfile.write(part)
            sent += len(part)

    return behave


def basic_auth_required(user: str, password: str, then: Behaviour) -> Behaviour:
    """``then`` when the request carries these Basic credentials, else 401."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def behave(request: Request) -> None:
        if request.headers.get("Authorization") != expected:
            send(request, 401, headers={"WWW-Authenticate": 'Basic realm="faults"'})
            return
        then(request)

    return behave


def bearer_challenge(realm: str, service: str = "faults") -> Behaviour:
    """401 with a Bearer challenge, whatever the request carries."""
    return status(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', "application/json",
                  WWW_Authenticate=f'Bearer realm="{realm}",service="{service}"')


def bearer_protected(then: Behaviour, realm: str, service: str = "faults") -> Behaviour:
    """``then`` for a request with any Bearer token, else a Bearer challenge naming ``realm``."""
    challenge = bearer_challenge(realm, service)

    def behave(request: Request) -> None:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            then(request)
        else:
            challenge(request)

    return behave


def endless_tags(prefix: str = "t") -> Behaviour:
    """A tag list whose ``Link`` always names a new next page (``last`` keeps growing)."""

    def behave(request: Request) -> None:
        url = urlsplit(request.path)
        last = int((parse_qs(url.query).get("last") or ["0"])[0].lstrip(prefix) or 0)
        body = json.dumps({"name": "x", "tags": [f"{prefix}{last + 1}"]}).encode()
        link = f'<{url.path}?n=1&last={prefix}{last + 1}>; rel="next"'
        send(request, 200, body, "application/json", {"Link": link})

    return behave


# ---- project pages ------------------------------------------------------------------------

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def json_page(project: str, versions: tuple[str, ...] = ("1.0.0", "1.1.0")) -> Behaviour:
    files = [{"filename": f"{project}-{v}.tar.gz", "url": f"../f/{project}-{v}.tar.gz", "hashes": {}} for v in versions]
    return json_answer({"meta": {"api-version": "1.0"}, "name": project, "files": files}, JSON_TYPE)


def html_page(project: str, versions: tuple[str, ...] = ("1.0.0", "1.1.0")) -> Behaviour:
    anchors = "".join(f'<a href="../f/{project}-{v}.tar.gz">{project}-{v}.tar.gz</a><br>\n' for v in versions)
    return answer(f"<!DOCTYPE html><html><body>{anchors}</body></html>", "text/html; charset=utf-8")
