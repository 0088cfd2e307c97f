"""What runs on behalf of this process (build subprocesses, containers), so that Ctrl-C
stops all of it: with several jobs at once only the main thread sees the interrupt,
while the builds run in worker threads and the containers in the engine.

SIGTERM and SIGHUP stop a task the same way (:func:`stop_signals`): they raise
:class:`~wheeltasks.errors.Stopped`, a KeyboardInterrupt, in the main thread. Once one
of the three arrived, the others are ignored until the task has cleaned up, so a
second Ctrl-C cannot cut the clean-up short (it lasts seconds: see :func:`stop_all`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .errors import Stopped

_lock = threading.Lock()
_processes: set[subprocess.Popen[Any]] = set()
_containers: dict[str, Any] = {}
cancelled = threading.Event()
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """For the length of a task (in the main thread): SIGINT raises KeyboardInterrupt and
    SIGTERM/SIGHUP raise Stopped, the first of them only; the later ones are ignored while
    the first one's clean-up runs. A signal that was ignored when the task began (``nohup``
    ignores SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # already stopping: let the clean-up finish
        stopping.set()
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_IGN, None):
            continue
        previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """For a clean-up that must not be cut short, where :func:`stop_signals` may not be in
    force (the pipeline run as a library): Ctrl-C, SIGTERM and SIGHUP are ignored meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler in (signal.SIG_IGN, None):
            continue
        previous[signum] = signal.signal(signum, lambda signum, frame: None)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def reset() -> None:
    """A new run starts: nothing is being stopped (an earlier run in this process may have been)."""
    cancelled.clear()


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
