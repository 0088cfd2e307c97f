"""The repair step: shared wheels repaired with auditwheel, then verified on the host.

Shared kind: every ``linux_*`` wheel in ``built/`` gets auditwheel's repair, which bundles
the libraries the wheel needs from the target's own root. Where a cross build already
repaired them on the build platform (against the target root, in the same build stage:
``built/repaired/``), those are taken; otherwise the repair runs in a container of the
job's builder on its platform (under QEMU for a foreign one). auditwheel picks the best
policy itself. Pure-Python and already-tagged wheels (e.g. binary dependencies from the
index) pass through unchanged. No-shared kind: the wheels are kept as they are.

The step writes into the staging folder the pipeline gives it; the pipeline makes it
``repaired/`` only after every wheel passed the host checks (``verify``).
"""

from __future__ import annotations

import enum
import shutil
from pathlib import Path

from . import console, containers
from .errors import BuildError
from .files import newest_zip_time, wheels_in
from .job import Job, Mode
from .settings import Kind, Settings
from .verify import AUDITWHEEL_REQUIREMENT, libc_exclude, needs_repair, retag, verify


class Repaired(enum.Enum):
    """Where auditwheel ran."""

    NONE = "none"  # nothing to repair (no-shared, pure, already tagged)
    BUILD_PLATFORM = "build platform"  # in the cross build, natively, against the target root
    CONTAINER = "container"  # in the job's builder on its platform (QEMU for a foreign one)


def source_date_epoch(wheels: list[Path]) -> int:
    """The newest entry time in the wheels: auditwheel stamps the repaired wheel with it.

    Without it, files auditwheel patches or adds get the time of the repair, so repairing
    the same wheel twice would give different bytes (and a conflict in ``wheels/``).
    """
    newest = newest_zip_time(wheels)
    return int(newest.timestamp()) if newest else 0


def in_container(settings: Settings, job: Job, wheels: list[Path], out: Path) -> None:
    """``auditwheel repair`` of the wheels (all in one folder) into ``out``, in the job's builder."""
    log = job.work.repair_log
    console.progress(job.target, "repair", f"auditwheel repair on {job.platform}: {', '.join(w.name for w in wheels)}")
    spec = containers.Run(
        command=("/bin/sh", "/wheeltasks/repair.sh", *(w.name for w in wheels)),
        reads={wheels[0].parent: "/in"},
        writes={out: "/out"},
        environment={
            **containers.host_ids(),
            "AUDITWHEEL": AUDITWHEEL_REQUIREMENT,
            "AUDITWHEEL_EXCLUDE": " ".join(sorted(libc_exclude(job.arch))),
            "SOURCE_DATE_EPOCH": str(source_date_epoch(wheels)),
        },
        index=True,
        # auditwheel knows no ARMv6 machine: under an ARM1176 it would not start. It reads the
        # ELF files, not the CPU; QEMU's default ARM CPU is what it knows (armv7l).
        baseline_cpu=False,
    )
    code = containers.run(settings, job, spec, log)
    if code != 0:
        raise BuildError(
            f"auditwheel repair of {job.target} failed (exit {code}); full log: {log}; last lines:\n{console.log_tail(log)}"
        )


def repair(settings: Settings, job: Job, built: list[Path], out: Path) -> tuple[list[Path], Repaired]:
    """Repair (shared kind) or keep (no-shared) the built wheels into ``out``; verify them.

    Returns the wheels and where auditwheel ran.
    """
    to_repair = [w for w in built if needs_repair(w.name)] if job.kind is Kind.SHARED else []
    for wheel in built:
        if wheel not in to_repair:
            shutil.copy2(wheel, out / wheel.name)
    how = Repaired.NONE
    if to_repair:
        here = wheels_in(job.work.repaired_here)
        if job.mode is Mode.CROSS and len(here) == len(to_repair):
            for wheel in here:
                shutil.copy2(wheel, out / wheel.name)
            how = Repaired.BUILD_PLATFORM
            console.progress(job.target, "repair", f"repaired on the build platform: {', '.join(w.name for w in here)}")
        else:
            in_container(settings, job, to_repair, out)
            how = Repaired.CONTAINER
    repaired = [retag(job.arch, wheel) for wheel in wheels_in(out)]
    verify(job, repaired)
    return sorted(repaired), how
