"""Run a plan's jobs through the steps: pull-existing -> build -> repair -> export -> push.

Each step is a plain function of ``(settings, job)`` in its own module that reads and
writes the job's work folder, so any step can also run alone on what the previous
one left there.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import console
from .build import build, build_command
from .errors import WheelTasksError
from .export import export
from .images import NO_REGISTRY, open_registry, pull_wheels, push_wheels
from .index import index_url
from .job import Job, result_wheels, wheels_in
from .plan import Plan
from .registry import RegistryClient
from .repair import repair
from .settings import Settings

FULL_FLOW = ("pull-existing", "build", "repair", "export", "push")


@dataclass
class RunReport:
    """What a run did, for the closing summary (and for tests)."""

    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    exported: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    manifests_written: int = 0

    def summary(self) -> str:
        return (
            f"built {len(self.built)}, reused {len(self.reused)} from existing images, "
            f"exported {self.exported} wheel(s), uploaded {self.blobs_uploaded} blob(s) "
            f"({self.bytes_uploaded} bytes) and {self.manifests_written} manifest(s)"
        )


def print_plan(plan: Plan) -> None:
    console.table(
        ("target", "kind", "platform", "image"),
        [(job.target, job.kind.value, job.platform, job.image) for job in plan.jobs],
    )


def _copy_wheels(wheels: Sequence[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        target = dest / wheel.name
        if not target.exists():
            tmp = dest / f".{wheel.name}.tmp"
            shutil.copyfile(wheel, tmp)
            tmp.replace(target)


class Runner:
    """Runs the steps for each job in plan order; dependencies come first in a plan."""

    def __init__(self, settings: Settings, plan: Plan) -> None:
        self.settings = settings
        self.plan = plan
        self.report = RunReport()
        self._registry: RegistryClient | None = None

    # ---- registry (only created when a step needs it) --------------------------------

    @property
    def registry(self) -> RegistryClient:
        if self._registry is None:
            if not self.settings.wheels_registry:
                raise WheelTasksError(NO_REGISTRY)
            self._registry = open_registry(self.settings)
        return self._registry

    # ---- steps ---------------------------------------------------------------------------

    def pull_existing(self, job: Job) -> None:
        s = self.settings
        if s.no_pull_wheels or not s.wheels_registry:
            return
        if not s.no_self_pull and (s.wheels_force_pull or not wheels_in(job.pulled_dir)):
            shutil.rmtree(job.pulled_dir, ignore_errors=True)
            got = pull_wheels(self.registry, job.repository, job.tag, job.arch, job.pulled_dir)
            if got:
                # The published wheels are now this job's result; drop an older build's.
                for stale in (job.built_dir, job.repaired_dir):
                    shutil.rmtree(stale, ignore_errors=True)
                console.progress(job.target, "pull-existing", f"{len(got)} wheel(s) from {job.image}")
        for tag in job.depends:
            if self._built_dependency(job, tag):
                continue
            got = pull_wheels(self.registry, job.repository, tag, job.arch, job.imports_dir)
            if got:
                console.progress(job.target, "pull-existing", f"{len(got)} dependency wheel(s) from {tag}")

    def _built_dependency(self, job: Job, tag: str) -> bool:
        """Offer a dependency built earlier in this run to the job; true if there was one."""
        for other in self.plan.jobs:
            if other.tag == tag and other.arch == job.arch and other.kind == job.kind:
                wheels = result_wheels(other)
                if wheels:
                    _copy_wheels(wheels, job.imports_dir)
                    return True
        return False

    def build(self, job: Job) -> None:
        if wheels_in(job.pulled_dir) and not self.settings.no_self_pull:
            console.progress(job.target, "build", "skipped: its image already has this platform")
            self.report.reused.append(job.target)
            return
        if self.settings.no_build:
            console.progress(job.target, "build", "skipped (NO_BUILD)")
            return
        for tag in job.depends:
            self._built_dependency(job, tag)
        shutil.rmtree(job.pulled_dir, ignore_errors=True)  # a build replaces pulled wheels
        build(self.settings, job)
        self.report.built.append(job.target)

    def repair(self, job: Job) -> None:
        if not wheels_in(job.built_dir):
            if wheels_in(job.pulled_dir):
                return
            raise WheelTasksError(f"{job.target}: nothing built to repair in {job.built_dir}; run `inv build` first")
        repair(self.settings, job)

    def export(self, job: Job) -> None:
        if not job.exports:
            return
        if not result_wheels(job):
            raise WheelTasksError(f"{job.target}: no wheels to export in {job.work_dir}; run `inv build` first")
        written = export(self.settings, job)
        self.report.exported += len(written)
        console.progress(job.target, "export", f"{len(written)} wheel(s) in {self.settings.wheels_dir / job.arch.name}")

    def push(self, job: Job) -> None:
        wheels = result_wheels(job)
        if not wheels:
            raise WheelTasksError(f"{job.target}: no wheels to push in {job.work_dir}; run `inv build` first")
        result = push_wheels(self.registry, job, wheels, index_url=index_url(self.settings))
        self.report.blobs_uploaded += result.blobs_uploaded
        self.report.bytes_uploaded += result.bytes_uploaded
        self.report.manifests_written += result.manifests_written
        console.progress(
            job.target,
            "push",
            f"{job.image}: {result.blobs_uploaded} blob(s) uploaded, {result.blobs_skipped} already there",
        )

    # ---- running -------------------------------------------------------------------------

    def step(self, name: str) -> Callable[[Job], None]:
        return {
            "pull-existing": self.pull_existing,
            "build": self.build,
            "repair": self.repair,
            "export": self.export,
            "push": self.push,
        }[name]

    def run(self, steps: Sequence[str]) -> RunReport:
        for n, job in enumerate(self.plan.jobs, 1):
            started = time.monotonic()
            console.progress(job.target, "job", f"{n}/{len(self.plan.jobs)} {job.kind.value}: {' -> '.join(steps)}")
            for name in steps:
                self.step(name)(job)
            console.progress(job.target, "done", f"{job.kind.value} in {time.monotonic() - started:.1f}s")
        console.note(f"summary: {self.report.summary()}")
        return self.report


def run(settings: Settings, plan: Plan, steps: Sequence[str] | None = None) -> RunReport:
    """Run ``steps`` (default: the whole local flow, plus push when DO_PUSH) for every job."""
    if steps is None:
        steps = [s for s in FULL_FLOW if s != "push" or settings.do_push]
    if "push" in steps and not settings.wheels_registry:
        raise WheelTasksError(NO_REGISTRY)  # before any build, not after them all
    if settings.noop:
        print_noop(settings, plan, steps)
        return RunReport()
    return Runner(settings, plan).run(steps)


def print_noop(settings: Settings, plan: Plan, steps: Sequence[str]) -> None:
    print_plan(plan)
    print(f"\nNOOP: would run {' -> '.join(steps)} for {len(plan.jobs)} job(s); commands:")
    for job in plan.jobs:
        if "build" in steps and not settings.no_build:
            print(shlex.join(build_command(settings, job, job.work_dir / "context")))
