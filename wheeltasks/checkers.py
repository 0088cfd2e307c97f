"""Import checks that share a container: one per engine, builder image, platform and set of
Alpine packages, kept for the run, checks the wheels of every job it is given, each in a
child of one interpreter (``lib/check.py --serve``).

Starting a container and an interpreter is most of a small import check, the more so under
QEMU (about 0.6 s of 1.1 s for a pure wheel on arm64), and with build once most jobs build
nothing and only check. What a check sees is what a container of its own gives it: the
same image, platform and baseline CPU, the same Alpine packages (the set is part of the
key), its own wheels first on ``sys.path``, and a fresh set of modules (a fork of an
interpreter that imported only the standard library). A job with a test command still gets
a container of its own, as a test may change the system. Where a shared container cannot
start, or ends in the middle of a check, the check runs in a container of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

import docker.errors

from . import containers
from .job import Job
from .settings import Settings

WORK = "/wheeltasks-work"  # the run's work folder (settings.work_dir), read-only
READY = b"\0wheeltasks-ready"  # lib/check.py's lines
DONE = b"\0wheeltasks-done"
_GONE = (EOFError, OSError, docker.errors.APIError)  # the container (or the engine) went away


@dataclass
class _Slot:
    """The shared container of one key, one check at a time (a second one waits: a check
    takes less than starting another container)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    server: containers.Attached | None = None
    broken: bool = False  # would not start: a container per check for this key


class Checkers:
    """The run's shared import-check containers, and how many containers its checks started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._slots: dict[Hashable, _Slot] = {}
        self.started = 0  # containers started for import checks, shared or not

    def check(self, job: Job, site: Path, names: list[str], apk: str, log: Path) -> int | None:
        """Import ``names`` with the wheels unpacked in ``site`` (under the work folder) in the
        shared container of the job's engine, builder and platform with ``apk`` added: the exit
        code, the output in ``log``; None when no shared container could run the check."""
        try:
            folder = site.resolve().relative_to(self.settings.work_dir.resolve())
        except ValueError:
            return None
        with self._lock:
            slot = self._slots.setdefault((job.engine, job.builder, job.platform, apk), _Slot())
        with slot.lock:
            if slot.broken:
                return None
            if slot.server is None:
                slot.server = self._start(job, apk)
                if slot.server is None:
                    slot.broken = True
                    return None
            request = json.dumps({"site": f"{WORK}/{folder.as_posix()}", "names": names}).encode() + b"\n"
            try:
                answer = _answer(slot.server, DONE, request)
            except BaseException:
                slot.server = None  # closed: the next check starts another
                raise
            if answer is None:
                slot.server = None
                return None
        output, _, code = answer.rpartition(DONE)
        log.write_bytes(output)
        return int(code)

    def ran_alone(self) -> None:
        """Count a check that had a container of its own."""
        with self._lock:
            self.started += 1

    def close(self) -> None:
        """End every shared container (at the end of the run): its input closes, its Python
        ends and the engine removes it. Without waiting for a check that still runs (after
        Ctrl-C a worker may still wait on its container, which Ctrl-C removed)."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            server = slot.server
            if server is not None:
                server.close()

    def _start(self, job: Job, apk: str) -> containers.Attached | None:
        """A shared container, once it reads requests (after its Alpine packages); None when
        it does not start."""
        with self._lock:
            self.started += 1
        spec = containers.Run(
            command=("/bin/sh", "/wheeltasks/check.sh", "--serve"),
            reads={self.settings.work_dir: WORK},
            environment={"APK": apk},
        )
        try:
            server = containers.attach(self.settings, job, spec)
        except _GONE:
            return None
        return server if _answer(server, READY) is not None else None


def _answer(server: containers.Attached, marker: bytes, request: bytes = b"") -> bytes | None:
    """The server's output through ``marker``, after ``request``; None when it went away.
    Whatever goes wrong (Ctrl-C too), the server is closed: its output is out of step."""
    try:
        if request:
            server.send(request)
        return server.read_through(marker)
    except BaseException as exc:
        server.close()
        if isinstance(exc, _GONE):
            return None
        raise
