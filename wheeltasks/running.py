"""What runs on behalf of this process (build subprocesses, containers), so that Ctrl-C
stops all of it: with several jobs at once only the main thread sees the interrupt,
while the builds run in worker threads and the containers in the engine."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_processes: set[subprocess.Popen[Any]] = set()
_containers: dict[str, Any] = {}
cancelled = threading.Event()


def start(command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a command in a process group of its own, which :func:`kill` ends whole: the
    docker CLI runs buildx as a child process, which killing the CLI alone leaves behind."""
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def kill(popen: subprocess.Popen[Any]) -> None:
    """Kill a command started by :func:`start`, and every process of its group."""
    with contextlib.suppress(OSError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        popen.kill()


@contextlib.contextmanager
def process(popen: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    with _lock:
        _processes.add(popen)
    if cancelled.is_set():  # started as stop_all ran: it may not have seen this one
        kill(popen)
    try:
        yield popen
    finally:
        with _lock:
            _processes.discard(popen)


@contextlib.contextmanager
def container(handle: Any) -> Iterator[Any]:
    """A docker SDK container, removed by :func:`stop_all` if it still runs then."""
    with _lock:
        _containers[handle.id] = handle
    try:
        yield handle
    finally:
        with _lock:
            _containers.pop(handle.id, None)


def stop_all(wait: float = 2.0) -> None:
    """Kill every tracked subprocess (and wait up to ``wait`` seconds in all until they are
    gone, so none outlives this process) and remove every tracked container."""
    cancelled.set()
    with _lock:
        processes, containers = list(_processes), list(_containers.values())
    for popen in processes:
        kill(popen)
    deadline = time.monotonic() + wait
    for popen in processes:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            popen.wait(max(0.0, deadline - time.monotonic()))
    for handle in containers:
        with contextlib.suppress(Exception):  # already gone, or the engine went away
            handle.remove(force=True)
