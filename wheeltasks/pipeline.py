"""Run a plan's jobs through the steps: pull-existing -> build -> repair -> import-check -> export -> push.

The flow in four small modules, this one its front door:

- ``flow.py``: the decisions for one job (pulled, reused, skipped, built; an
  :class:`~wheeltasks.flow.Outcome` each);
- ``steps.py``: the table of steps; ``stepruns.py``: each step's adapter of its module to the flow;
- ``scheduler.py``: the jobs in order or side by side, failures, Ctrl-C;
- ``runreport.py``: each job's result, the closing table and the JSON report.

Here, before any job runs: NOOP prints the plan and the build commands and runs nothing;
a push without a registry, a build without an engine, buildx or QEMU, and a step run alone
(repair, export, push: no build or pull before it) where not one job has anything to work
on are each one error (:func:`check_inputs`). The steps themselves (``build``,
``repair``, ``export``, ``images``) know nothing of this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import docker_engine
from .errors import WheelTasksError
from .images import NO_REGISTRY
from .job import Job
from .plan import Plan
from .runreport import RunReport, print_noop
from .scheduler import Runner
from .settings import Settings
from .steps import BUILD, EXPORT, PULL_EXISTING, PUSH, REPAIR, STEPS
from .workdir import State

if TYPE_CHECKING:
    from .index import IndexClient


def default_steps(settings: Settings) -> list[str]:
    """The whole local flow, and push with DO_PUSH."""
    return [step.name for step in STEPS if step is not PUSH or settings.do_push]


def run(
    settings: Settings,
    plan: Plan,
    steps: Sequence[str] | None = None,
    *,
    json_report: bool = False,
    live: bool = False,
    index: IndexClient | None = None,
) -> RunReport:
    """Run ``steps`` (default: :func:`default_steps`) for every job.

    Up to JOBS jobs run at once (default: the engine's CPU count). With ``json_report`` the
    run's report is printed as JSON on stdout (also when jobs failed); with ``live`` a line
    per running job is kept up to date on the terminal. ``index``: the client the plan was
    resolved with, for the wheels the run takes from the index.
    """
    if steps is None:
        steps = default_steps(settings)
    if PUSH.name in steps and not settings.wheels_registry:
        raise WheelTasksError(NO_REGISTRY)  # before any build, not after them all
    builds = BUILD.name in steps and not settings.no_build
    if settings.noop:
        print_noop(settings, plan, steps, builds)
        return RunReport()
    check_inputs(settings, plan, steps)
    if builds:
        # No engine, buildx or QEMU: say so once, before any job.
        for arch, engine in dict.fromkeys((job.arch, job.engine) for job in plan.jobs):
            docker_engine.check_build(arch, engine)
    width = settings.jobs or (_engine_cpus(plan) if builds else 1)
    return Runner(settings, plan, json_report, live, index=index).run(steps, width)


def check_inputs(settings: Settings, plan: Plan, steps: Sequence[str]) -> None:
    """Steps run alone (``inv export``, ``repair``, ``push``: no build or pull before them)
    work on what an earlier run left in each job's work folder. When not one job has
    anything to work on, say which task to run first, before any job runs and before
    anything is written (no table, no report). When some have, the run goes on, and the
    others fail in its table as usual."""
    if BUILD.name in steps or PULL_EXISTING.name in steps:
        return
    missing: dict[str, list[Job]] = {}
    needy = 0
    repairs = REPAIR.name in steps
    for job in plan.jobs:
        needs_result = PUSH.name in steps or (EXPORT.name in steps and job.exports)
        if not needs_result and not repairs:
            continue  # export of a LibreSSL job: nothing to do, nothing needed
        needy += 1
        state = job.work.state()
        if state is State.EMPTY:
            missing.setdefault(BUILD.task, []).append(job)
        elif state is State.BUILT and needs_result and not repairs:
            missing.setdefault(REPAIR.task, []).append(job)
    if not needy or sum(map(len, missing.values())) < needy:
        return
    task, what = (BUILD.task, "nothing built") if BUILD.task in missing else (REPAIR.task, "built but not repaired")
    jobs = missing[task]
    # Name the jobs the user asked for: building them builds their dependencies first.
    depended = {dep.key for job in jobs for dep in job.depends}
    tops = [job.target for job in jobs if job.key not in depended] or [jobs[-1].target]
    also = f" or {'its' if len(tops) == 1 else 'their'} dependencies" if len(tops) < len(jobs) else ""
    if len(tops) > 3:
        raise WheelTasksError(
            f"{what} for any of the {len(tops)} jobs ({', '.join(tops[:3])}, ...){also} in {settings.work_dir}: "
            f"run `inv {task}` on the same targets first"
        )
    raise WheelTasksError(
        f"{what} for {', '.join(tops)}{also} in {settings.work_dir}: run `inv {task} {','.join(tops)}` first"
    )


def _engine_cpus(plan: Plan) -> int:
    """The CPUs of the engines the jobs build on (which may not be this machine's)."""
    engines = dict.fromkeys(job.engine for job in plan.jobs)
    return max(1, sum(docker_engine.engine_cpus(engine) for engine in engines))
