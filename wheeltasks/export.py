"""The export step: copy a job's wheels into ``wheels/<arch>/`` on the host, atomically.

Each wheel is written to a temporary file in the destination folder and renamed over
its final name, so a reader (or an interrupted run) never sees a partial wheel. An
identical wheel already there is left alone; a different one with the same name is an
error unless FORCE is set. Only default-SSL builds are exported (LibreSSL builds stay
in images).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .build import say
from .errors import WheelTasksError
from .job import Job, result_wheels
from .settings import Settings


def export_dir(settings: Settings, job: Job) -> Path:
    return settings.wheels_dir / job.arch.name


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_atomic(source: Path, dest: Path) -> None:
    """Write ``dest`` as a complete copy of ``source`` or not at all."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export(settings: Settings, job: Job) -> list[Path]:
    """Copy the job's wheels (the module's and its dependencies') to ``wheels/<arch>/``.

    Returns the destination of every wheel, written or already there.
    """
    if not job.exports:
        return []
    wheels = result_wheels(job)
    dest_dir = export_dir(settings, job)
    if settings.noop:
        for wheel in wheels:
            say(job, "export", f"NOOP: would export {wheel.name} to {dest_dir}")
        return []
    if not wheels:
        raise WheelTasksError(
            f"no wheels to export in {job.repaired_dir} or {job.pulled_dir}: "
            f"run `inv build {job.target}` (or `inv repair`) first"
        )
    # Check every name first so a conflict writes nothing at all.
    plan: list[tuple[Path, Path, bool]] = []
    for wheel in wheels:
        dest = dest_dir / wheel.name
        same = dest.is_file() and sha256(dest) == sha256(wheel)
        if dest.exists() and not same and not settings.force:
            raise WheelTasksError(
                f"{dest} already exists with different contents: remove it or set WHEELS_FORCE=1 (--force) to replace it"
            )
        plan.append((wheel, dest, same))
    dest_dir.mkdir(parents=True, exist_ok=True)
    for wheel, dest, same in plan:
        if not same:
            copy_atomic(wheel, dest)
    return [dest for _, dest, _ in plan]
