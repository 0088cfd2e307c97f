"""What a run did, and how it is shown: each job's result, the closing table, the summary,
``run-report.json`` and ``--json``; the plan's table and the NOOP listing."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import console
from .files import write_atomic
from .flow import Outcome
from .job import Job, Mode
from .plan import Plan
from .settings import Kind, Settings

REPORT_FILE = "run-report.json"


@dataclass
class JobResult:
    """How one job ended."""

    job: Job
    outcome: Outcome = Outcome.PENDING
    seconds: float = 0.0
    error: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    state: str = "waiting"  # the step it is in (its name in steps.STEPS)
    mode: str = ""  # how it was built: native, cross or emulated (empty: not built)
    fell_back: str = ""  # why a cross build was redone emulated (CROSS=auto), with its log's tail
    repaired: str = ""  # where auditwheel ran (repair.Repaired), empty when the step did not run
    source: str = ""  # where its wheel came from (job.Source), as the run found it
    took: str = ""  # what it took: the other job's target or the index's file name
    not_taken: str = ""  # why the planned source did not serve (it was built instead)
    started: float = 0.0  # monotonic clock
    ended: float = 0.0

    @property
    def failed(self) -> bool:
        return self.outcome.failed

    @property
    def log(self) -> Path | None:
        return self.job.work.last_build_log

    def to_json(self) -> dict[str, Any]:
        return {
            **self.job.to_json(),
            "result": self.outcome.value,
            "built_as": self.mode or None,
            "fell_back": self.fell_back or None,
            "repaired": self.repaired or None,
            "planned_source": self.job.source.value,
            "source": self.source or None,
            "took": self.took or None,
            "not_taken": self.not_taken or None,
            "seconds": round(self.seconds, 2),
            "step_seconds": {k: round(v, 2) for k, v in self.steps.items()},
            "started": round(self.started, 3),
            "ended": round(self.ended, 3),
            "log": str(self.log) if self.log else None,
            "error": self.error,
        }


@dataclass
class RunReport:
    """What a run did, for the closing table, the JSON report and tests."""

    results: list[JobResult] = field(default_factory=list)
    exported: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    manifests_written: int = 0
    check_containers: int = 0  # containers the import checks started (most share one: checkers.py)
    # The requirements files' wheel set images pushed: {"image": ..., "platforms": [...]}.
    wheel_sets: list[dict[str, Any]] = field(default_factory=list)

    def with_outcome(self, outcome: Outcome) -> list[str]:
        return [r.job.target for r in self.results if r.outcome is outcome]

    @property
    def built(self) -> list[str]:
        return self.with_outcome(Outcome.BUILT)

    @property
    def reused(self) -> list[str]:
        return self.with_outcome(Outcome.REUSED)

    @property
    def took(self) -> list[str]:
        return self.with_outcome(Outcome.TOOK_BUILD)

    @property
    def from_index(self) -> list[str]:
        return self.with_outcome(Outcome.FROM_INDEX)

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if r.failed]

    @property
    def fell_back(self) -> list[JobResult]:
        return [r for r in self.results if r.fell_back]

    def summary(self) -> str:
        failed = len(self.with_outcome(Outcome.FAILED))
        skipped = len(self.with_outcome(Outcome.DEPENDENCY_FAILED))
        return (
            f"built {len(self.built)}, reused {len(self.reused)} from existing images, "
            f"took {len(self.took)} from other jobs' builds and {len(self.from_index)} from the index, "
            f"exported {self.exported} wheel(s), uploaded {self.blobs_uploaded} blob(s) "
            f"({self.bytes_uploaded} bytes) and {self.manifests_written} manifest(s)"
            + (f"; {failed} failed, {skipped} skipped for a failed dependency" if failed or skipped else "")
            + (f"; {len(self.fell_back)} cross build(s) fell back to emulation" if self.fell_back else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "built": len(self.built),
            "took_build": len(self.took),
            "from_index": len(self.from_index),
            "reused": len(self.reused),
            "exported": self.exported,
            "blobs_uploaded": self.blobs_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "manifests_written": self.manifests_written,
            "check_containers": self.check_containers,
            "wheel_sets": self.wheel_sets,
            "jobs": [r.to_json() for r in self.results],
        }


def publish(settings: Settings, report: RunReport, *, table: bool, as_json: bool) -> Path:
    """The end of a run: the closing table (``table``), ``run-report.json`` in the work
    folder, the summary line, and the report on stdout (``as_json``); the file's path."""
    if table:
        show_results(report)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    path = settings.work_dir / REPORT_FILE
    write_atomic(path, json.dumps(report.to_json(), indent=2).encode())
    console.note(f"summary: {report.summary()}")
    if as_json:
        console.emit_json(report.to_json())
    return path


def show_results(report: RunReport) -> None:
    console.table(
        ("job", "kind", "result", "built as", "time", "log"),
        [
            (r.job.target, r.job.kind.value, r.outcome.value, _built_as(r), f"{r.seconds:.1f}s", r.log or "-")
            for r in report.results
        ],
        stream=sys.stderr,
    )
    for r in report.fell_back:
        console.note(f"{r.job.target}: cross build fell back to emulation; its log: {r.job.work.cross_log}")


def _built_as(result: JobResult) -> str:
    if not result.mode:
        return "-"
    return f"{result.mode} (cross failed)" if result.fell_back else result.mode


def source_text(job: Job) -> str:
    """Where a job's wheel is to come from, in a few words."""
    if job.provider is not None:
        return f"reuse {job.provider.target}"
    if job.index_file is not None:
        return f"index {job.index_file.filename}"
    return job.source.value


def plan_json(settings: Settings, plan: Plan) -> list[dict[str, Any]]:
    """``resolve --json``: each job, with the wheel set images (-r FILE) its wheel goes into."""
    sets: dict[tuple[str, str, Kind], list[str]] = {}
    if plan.sets:
        from .wheelset import set_images, sets_of_jobs  # the registry's client: only for sets

        sets = sets_of_jobs(settings, set_images(settings, plan.sets))
    return [{**job.to_json(), "wheel_sets": sets.get(job.key, [])} for job in plan.jobs]


def print_plan(settings: Settings, plan: Plan) -> None:
    """The jobs, then a requirements file's wheel sets (-r FILE): the images a Dockerfile copies."""
    console.table(
        ("target", "kind", "platform", "source", "image"),
        [(job.target, job.kind.value, job.platform, source_text(job), job.image) for job in plan.jobs],
    )
    if not plan.sets:
        return
    from .wheelset import set_images  # the registry's client: only for a plan that has sets

    print("\nwheel sets (push writes each image; a platform's manifest holds its closure):")
    console.table(
        ("image", "platform", "wheels"),
        [(image.image(settings), one.arch.platform, " ".join(f"{job.module}=={job.version}" for job in one.jobs))
         for image in set_images(settings, plan.sets) for one in image.sets],
    )


def print_noop(settings: Settings, plan: Plan, steps: Sequence[str], builds: bool) -> None:
    """NOOP: the plan, the steps that would run and, where they build, the build commands."""
    from . import build as build_step  # docker's SDK: not for a report or a plan shown

    print_plan(settings, plan)
    print(f"\nNOOP: would run {' -> '.join(steps)} for {len(plan.jobs)} job(s); commands:")
    for job in plan.jobs:
        if not builds:
            continue
        if job.index_file is not None:
            print(f"# {job.target}: takes {job.index_file.url} (sha256 {job.index_file.sha256}) from the index")
            continue
        if job.provider is not None:
            print(f"# {job.target}: takes the wheel of {job.provider.target} where it serves ({job.source_why}); else:")
        out = job.work.root / "built.partial"
        print(shlex.join(build_step.build_command(settings, job, out, cross=job.mode is Mode.CROSS)))
