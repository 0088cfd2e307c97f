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
from pathlib import Path

from . import console
from .errors import WheelTasksError
from .job import Job
from .plan import Plan
from .settings import Settings

FULL_FLOW = ("pull-existing", "build", "repair", "export", "push")


def print_plan(plan: Plan) -> None:
    console.table(
        ("target", "kind", "platform", "image"),
        [(job.target, job.kind.value, job.platform, job.image) for job in plan.jobs],
    )


def wheels_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def final_wheels(job: Job) -> list[Path]:
    """What the job produced: repaired wheels, else wheels pulled from its own image."""
    return wheels_in(job.repaired_dir) or wheels_in(job.pulled_dir)


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
        self._registry: object | None = None

    # ---- registry (only created when a step needs it) --------------------------------

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        from .registry import RegistryClient

        if self._registry is None:
            if not self.settings.wheels_registry:
                raise WheelTasksError("no registry configured: set WHEELS_REGISTRY (e.g. ghcr.io/me or 127.0.0.1:5000/me)")
            self._registry = RegistryClient.from_settings(self.settings)
        return self._registry

    # ---- steps ---------------------------------------------------------------------------

    def pull_existing(self, job: Job) -> None:
        from .images import pull_wheels

        s = self.settings
        if s.no_pull_wheels or not s.wheels_registry:
            return
        if not s.no_self_pull and (s.wheels_force_pull or not final_wheels(job)):
            got = pull_wheels(self.registry, job.repository, job.tag, job.arch, job.pulled_dir)
            if got:
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
                wheels = final_wheels(other)
                if wheels:
                    _copy_wheels(wheels, job.imports_dir)
                    return True
        return False

    def build(self, job: Job) -> None:
        from .build import build

        if wheels_in(job.pulled_dir) and not self.settings.no_self_pull:
            console.progress(job.target, "build", "skipped: its image already has this platform")
            return
        if self.settings.no_build:
            console.progress(job.target, "build", "skipped (NO_BUILD)")
            return
        for tag in job.depends:
            self._built_dependency(job, tag)
        build(self.settings, job)

    def repair(self, job: Job) -> None:
        from .repair import repair

        if not wheels_in(job.built_dir):
            if wheels_in(job.pulled_dir):
                return
            raise WheelTasksError(f"{job.target}: nothing built to repair in {job.built_dir}; run `inv build` first")
        repair(self.settings, job)

    def export(self, job: Job) -> None:
        from .export import export

        if not job.exports:
            return
        if not final_wheels(job):
            raise WheelTasksError(f"{job.target}: no wheels to export in {job.work_dir}; run `inv build` first")
        written = export(self.settings, job)
        console.progress(job.target, "export", f"{len(written)} wheel(s) in {self.settings.wheels_dir / job.arch.name}")

    def push(self, job: Job) -> None:
        from .images import push_wheels

        wheels = final_wheels(job)
        if not wheels:
            raise WheelTasksError(f"{job.target}: no wheels to push in {job.work_dir}; run `inv build` first")
        result = push_wheels(self.registry, job, wheels, index_url=self.settings.pypi_index)
        console.progress(job.target, "push", f"{job.image}: {result}")

    # ---- running -------------------------------------------------------------------------

    def step(self, name: str) -> Callable[[Job], None]:
        return {
            "pull-existing": self.pull_existing,
            "build": self.build,
            "repair": self.repair,
            "export": self.export,
            "push": self.push,
        }[name]

    def run(self, steps: Sequence[str]) -> None:
        for job in self.plan.jobs:
            started = time.monotonic()
            for name in steps:
                self.step(name)(job)
            console.progress(job.target, "done", f"{job.kind.value} in {time.monotonic() - started:.1f}s")


def run(settings: Settings, plan: Plan, steps: Sequence[str] | None = None) -> None:
    """Run ``steps`` (default: the whole local flow, plus push when DO_PUSH) for every job."""
    if steps is None:
        steps = [s for s in FULL_FLOW if s != "push" or settings.do_push]
    if settings.noop:
        print_noop(settings, plan, steps)
        return
    Runner(settings, plan).run(steps)


def print_noop(settings: Settings, plan: Plan, steps: Sequence[str]) -> None:
    from .build import build_command

    print_plan(plan)
    print(f"\nNOOP: would run {' -> '.join(steps)} for {len(plan.jobs)} job(s); commands:")
    for job in plan.jobs:
        if "build" in steps and not settings.no_build:
            print(shlex.join(build_command(settings, job, job.work_dir / "context")))
