"""pytest plugin: a second Docker engine on this machine, a buildx builder of its own.

Listed in ``pytest_plugins`` by the test suite's conftest (as ``tests.fixtures_engines``).
``second_engine`` starts another ``dockerd`` beside the first (own data root, exec root,
pid file and unix socket; no bridge, no iptables, no TCP listener), creates a docker
context for it, which buildx lists as a docker-driver builder of the same name, and
stops it at the end of the session. Its data root is kept, so its BuildKit cache (and
the builder images it pulled from the registry on 127.0.0.1) survive to the next session.

Several test sessions may share the engine: each holds a shared lock while it uses it,
one at a time starts it, and the last one to leave stops it.

``ran_on(engine, marker)`` tells from an engine's own BuildKit cache whether a build ran
there: a RUN step leaves a record described as ``mount / from exec /bin/sh -c <the RUN
line as written>`` (build args are not expanded in it, so the marker must be literal).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import docker
import docker.errors
import pytest

from tests.fixtures_docker import FIXTURE_REGISTRY, _unavailable
from wheeltasks.docker_engine import Endpoint, docker_host

ENGINE2 = "wheeltasks-engine2"  # the docker context and so the buildx builder
STATE_DIR = Path("/var/lib/wheeltasks-ci")
DATA_ROOT = STATE_DIR / "engine2"  # kept between sessions: the BuildKit cache lives here
CONFIG_FILE = STATE_DIR / "engine2.json"
EXEC_ROOT = Path("/run/wheeltasks-engine2")  # short: unix socket paths under it must fit in 108 bytes
PIDFILE = Path("/run/wheeltasks-engine2.pid")
SOCKET = Path("/run/wheeltasks-engine2.sock")
LOG_FILE = Path("/var/log/wheeltasks-ci/engine2.log")
USE_LOCK = Path("/run/wheeltasks-engine2.use.lock")
START_LOCK = Path("/run/wheeltasks-engine2.start.lock")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# dockerd processes this session started: waited for (reaped) when stopped.
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class TestEngine:
    """A Docker engine the tests build on: its context (= buildx builder) name and socket.

    ``started_in`` is how long dockerd took from launch to its first answer, or None when
    this session found it running already.
    """

    __test__ = False  # a value, not a test class

    name: str
    host: str
    started_in: float | None = None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(host=self.host, context=self.name)

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.host, timeout=120)

    def docker(self, *args: str) -> list[str]:
        """A docker CLI command on this engine (buildx too: a docker-driver builder needs its context)."""
        return ["docker", "--context", self.name, *args]


# ---- evidence of where a build ran ---------------------------------------------------


@dataclass(frozen=True)
class CacheRecord:
    description: str
    created: datetime
    last_used: datetime


def build_records(engine: TestEngine | Endpoint, since: datetime | None = None) -> list[CacheRecord]:
    """The engine's BuildKit cache records (``docker system df -v``), those used at or after ``since``.

    A step that was cached leaves its record's time alone; only steps that ran (or a new
    record) count as used. Times are the engine's clock: this machine's for both engines here.
    """
    host = engine.host
    client = docker.DockerClient(base_url=host, timeout=300)
    try:
        raw: list[dict[str, Any]] = client.df().get("BuildCache") or []
    finally:
        client.close()
    records = [
        CacheRecord(
            description=str(r.get("Description") or ""),
            created=_time(r.get("CreatedAt")),
            last_used=_time(r.get("LastUsedAt") or r.get("CreatedAt")),
        )
        for r in raw
    ]
    return [r for r in records if since is None or max(r.created, r.last_used) >= since]


def ran_on(engine: TestEngine | Endpoint, marker: str, since: datetime | None = None) -> bool:
    """Whether the engine's BuildKit holds a record with ``marker`` in its description (used since ``since``)."""
    return any(marker in r.description for r in build_records(engine, since))


def _time(value: object) -> datetime:
    # Go prints nanoseconds; datetime takes microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value or "1970-01-01T00:00:00Z")).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


# ---- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def first_engine(docker_client: Any) -> TestEngine:
    """The engine of the ``default`` context (the one .ci/services.sh starts)."""
    return TestEngine(name="default", host=docker_host())


@pytest.fixture(scope="session")
def second_engine() -> Iterator[TestEngine]:
    """A second dockerd on this machine, its docker context and so its buildx builder."""
    _check_can_start()
    use = _lock(USE_LOCK, fcntl.LOCK_SH)  # blocks while the last user of a previous session stops it
    try:
        with _locked(START_LOCK):
            started_in = None if _answers_once_settled() else _start()
            _ensure_context()
        engine = TestEngine(name=ENGINE2, host=f"unix://{SOCKET}", started_in=started_in)
        if started_in is not None:
            print(f"second Docker engine answered {started_in:.2f} s after dockerd started")
        yield engine
    finally:
        _leave(use)


def _check_can_start() -> None:
    if os.geteuid() != 0:
        _unavailable("a second Docker engine needs root (dockerd): run the tests as root")
    for command in ("dockerd", "docker"):
        if shutil.which(command) is None:
            _unavailable(f"no {command} on PATH: run bash .ci/services.sh")


def _lock(path: Path, mode: int) -> TextIO:
    handle = path.open("a")
    fcntl.flock(handle, mode)
    return handle


class _locked:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.handle = _lock(self.path, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _answers() -> bool:
    try:
        client = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _answers_once_settled() -> bool:
    """Whether our dockerd answers, after one that is still starting (or stopping) has settled."""
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers() and _pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    return _answers()


def _start() -> float:
    """Start dockerd; the seconds until it answered."""
    for folder in (DATA_ROOT, EXEC_ROOT, LOG_FILE.parent):
        folder.mkdir(parents=True, exist_ok=True)
    # Its own (empty) daemon.json: a host /etc/docker/daemon.json could add hosts (TCP) or a bridge.
    CONFIG_FILE.write_text("{}\n", encoding="utf-8")
    command = [
        "dockerd",
        "--config-file", str(CONFIG_FILE),
        "--data-root", str(DATA_ROOT),
        "--exec-root", str(EXEC_ROOT),
        "--pidfile", str(PIDFILE),
        "-H", f"unix://{SOCKET}",
        "--bridge=none", "--iptables=false", "--ip6tables=false",
        # Loopback registries are insecure (plain HTTP) by default; named so a FIXTURE_REGISTRY
        # on another loopback port or name still works.
        "--insecure-registry", FIXTURE_REGISTRY,
    ]
    started = time.monotonic()
    with LOG_FILE.open("w", encoding="utf-8") as log:
        # Its own session: a Ctrl-C of pytest reaches the fixture's teardown, not dockerd first.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _STARTED[process.pid] = process
    while not _answers():
        if process.poll() is not None:
            pytest.fail(f"the second dockerd exited with {process.returncode}:\n{_log_tail()}", pytrace=False)
        if time.monotonic() - started > START_TIMEOUT:
            process.terminate()
            pytest.fail(f"the second dockerd did not answer within {START_TIMEOUT:.0f} s:\n{_log_tail()}", pytrace=False)
        time.sleep(0.05)
    return time.monotonic() - started


def _ensure_context() -> None:
    host = f"unix://{SOCKET}"
    have = subprocess.run(["docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}", ENGINE2],
                          capture_output=True, text=True, check=False)
    if have.returncode == 0 and have.stdout.strip() == host:
        return
    verb = "update" if have.returncode == 0 else "create"
    _docker("context", verb, ENGINE2, "--description", "wheeltasks tests: second engine (tests/fixtures_engines.py)",
            "--docker", f"host={host}")
    _docker("buildx", "inspect", ENGINE2)  # buildx lists the context as a docker-driver builder


def _leave(use: TextIO) -> None:
    """Give up our share; the last user stops the engine and drops its context."""
    try:
        fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        use.close()  # another session still uses it
        return
    try:
        subprocess.run(["docker", "context", "rm", "--force", ENGINE2], capture_output=True, check=False)
        pid = _pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, STOP_TIMEOUT):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, STOP_TIMEOUT)
    finally:
        use.close()


def _pid() -> int | None:
    """The second dockerd's pid from its pid file, when that process is alive."""
    try:
        pid = int(PIDFILE.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _wait_gone(pid: int, timeout: float) -> bool:
    process = _STARTED.get(pid)
    if process is not None:  # our child: wait reaps it (else it would linger as a zombie)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _STARTED[pid]
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _docker(*args: str) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"`docker {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}", pytrace=False)


def _log_tail(lines: int = 30) -> str:
    try:
        return "\n".join(LOG_FILE.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
