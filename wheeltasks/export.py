"""The export step: copy a job's wheels into ``wheels/<arch>/`` on the host, atomically.

Each wheel is written to a temporary file in the destination folder and renamed over
its final name, so a reader (or an interrupted run) never sees a partial wheel. An
identical wheel already there is left alone; a different one with the same name is an
error unless FORCE is set, and then nothing at all is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import running
from .errors import WheelTasksError
from .files import copy_atomic
from .job import Job
from .settings import Settings
from .verify import of_module
from .wheelsdir import arch_folder


def export_dir(settings: Settings, job: Job) -> Path:
    return arch_folder(settings.wheels_dir, job.arch.name)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(settings: Settings, job: Job, wheels: list[Path]) -> list[Path]:
    """Copy ``wheels`` (the module's and its dependencies') to ``wheels/<arch>/``.

    Returns the destination of every wheel, written or already there.
    """
    dest_dir = export_dir(settings, job)
    # Check every name first so a conflict writes nothing at all.
    plan: list[tuple[Path, Path, bool]] = []
    for wheel in wheels:
        dest = dest_dir / wheel.name
        same = dest.is_file() and sha256(dest) == sha256(wheel)
        if dest.exists() and not same and not settings.force:
            if not of_module(job, wheel):
                # Another build of a dependency at the same version (its own job's, or the
                # index's): the one already there stays.
                same = True
            else:
                raise WheelTasksError(
                    f"{dest} already exists with different contents: remove it or set WHEELS_FORCE=1 (--force) "
                    "to replace it"
                )
        plan.append((wheel, dest, same))
    dest_dir.mkdir(parents=True, exist_ok=True)
    for wheel, dest, same in plan:
        if not same:
            copy_atomic(wheel, dest, running.cancelled)
    return [dest for _, dest, _ in plan]

