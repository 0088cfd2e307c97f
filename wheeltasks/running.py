"""What runs on behalf of this process (build subprocesses, containers), so that Ctrl-C
stops all of it: with several jobs at once only the main thread sees the interrupt,
while the builds run in worker threads and the containers in the engine."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_processes: set[subprocess.Popen[Any]] = set()
_containers: dict[str, Any] = {}
cancelled = threading.Event()


@contextlib.contextmanager
def process(popen: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    with _lock:
        _processes.add(popen)
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


def stop_all() -> None:
    """Kill every tracked subprocess and remove every tracked container."""
    cancelled.set()
    with _lock:
        processes, containers = list(_processes), list(_containers.values())
    for popen in processes:
        with contextlib.suppress(OSError):
            popen.kill()
    for handle in containers:
        with contextlib.suppress(Exception):  # already gone, or the engine went away
            handle.remove(force=True)
