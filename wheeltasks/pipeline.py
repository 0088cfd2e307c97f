"""Run a plan's jobs through the steps: pull-existing -> build -> repair -> import-check -> export -> push.

This module owns the flow: which step runs for a job and when a job is reused,
skipped or failed. The rules, in one place:

- NOOP: print the plan and the build commands; run nothing (:func:`run`).
- pull-existing (with a registry, unless NO_PULL_WHEELS): the job's own image is pulled
  unless NO_SELF_PULL, or unless its wheels are already here (WHEELS_FORCE_PULL pulls
  anyway); the dependencies' images are pulled into ``imports/`` unless this run built
  them already.
- build: a job whose own image was pulled is **reused** (not built) unless
  NO_SELF_PULL; NO_BUILD **skips** the build; otherwise it is **built**.
- repair: a built job is repaired; a reused one needs none; nothing built is an error.
- export: OpenSSL (and SSL-less) jobs only; push: with DO_PUSH (or the push task).
- a step run alone (repair, export, push: no build or pull before it) where not one job
  has anything to work on: one error naming the task to run first, before any job runs
  (:func:`check_inputs`).
- Ctrl-C, SIGTERM, SIGHUP: builds and containers are stopped and every started job's
  staging folders removed (:meth:`Runner.run`).

A failed job does not stop the run (unless FAIL_FAST): the jobs that depend on it are
skipped, the others go on, and the run ends with a table and a non-zero exit.
The steps themselves (``build``, ``repair``, ``export``, ``images``) know nothing of this.
"""

from __future__ import annotations

import enum
import json
import queue
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import build as build_step
from . import console, docker_engine, importcheck
from . import export as export_step
from . import repair as repair_step
from . import running as running_module
from .errors import BuildError, WheelTasksError
from .files import wheels_in, write_atomic
from .imageformat import other_spellings
from .images import NO_REGISTRY, open_registry, pull_wheels, push_wheels
from .index import index_url
from .job import Job, Mode
from .plan import Plan
from .registry import RegistryClient
from .settings import Cross, Repository, Settings
from .workdir import State

FULL_FLOW = ("pull-existing", "build", "repair", "import-check", "export", "push")
REPORT_FILE = "run-report.json"


class BuildDecision(enum.Enum):
    REUSE = "reused"  # its own published image had the platform
    SKIP = "skipped"  # NO_BUILD
    BUILD = "built"


def wants_self_pull(settings: Settings, state: State) -> bool:
    """Whether pull-existing fetches the job's own image."""
    if settings.no_pull_wheels or settings.no_self_pull or not settings.wheels_registry:
        return False
    return settings.wheels_force_pull or state is not State.PULLED


def wants_dependency_pulls(settings: Settings) -> bool:
    return bool(settings.wheels_registry) and not settings.no_pull_wheels


def build_decision(settings: Settings, state: State) -> BuildDecision:
    if state is State.PULLED and not settings.no_self_pull:
        return BuildDecision.REUSE
    if settings.no_build:
        return BuildDecision.SKIP
    return BuildDecision.BUILD


@dataclass
class JobResult:
    """How one job ended."""

    job: Job
    outcome: str = "pending"  # built, reused, skipped, done, failed, dependency failed
    seconds: float = 0.0
    error: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    state: str = "waiting"  # the step it is in
    mode: str = ""  # how it was built: native, cross or emulated (empty: not built)
    fell_back: str = ""  # why a cross build was redone emulated (CROSS=auto), with its log's tail
    repaired: str = ""  # where auditwheel ran (repair.Repaired), empty when the step did not run
    started: float = 0.0  # monotonic clock
    ended: float = 0.0

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "dependency failed")

    @property
    def log(self) -> Path | None:
        return self.job.work.last_build_log

    def to_json(self) -> dict[str, Any]:
        return {
            **self.job.to_json(),
            "result": self.outcome,
            "built_as": self.mode or None,
            "fell_back": self.fell_back or None,
            "repaired": self.repaired or None,
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

    def with_outcome(self, outcome: str) -> list[str]:
        return [r.job.target for r in self.results if r.outcome == outcome]

    @property
    def built(self) -> list[str]:
        return self.with_outcome("built")

    @property
    def reused(self) -> list[str]:
        return self.with_outcome("reused")

    @property
    def failures(self) -> list[JobResult]:
        return [r for r in self.results if r.failed]

    @property
    def fell_back(self) -> list[JobResult]:
        return [r for r in self.results if r.fell_back]

    def summary(self) -> str:
        failed = len(self.with_outcome("failed"))
        skipped = len(self.with_outcome("dependency failed"))
        return (
            f"built {len(self.built)}, reused {len(self.reused)} from existing images, "
            f"exported {self.exported} wheel(s), uploaded {self.blobs_uploaded} blob(s) "
            f"({self.bytes_uploaded} bytes) and {self.manifests_written} manifest(s)"
            + (f"; {failed} failed, {skipped} skipped for a failed dependency" if failed or skipped else "")
            + (f"; {len(self.fell_back)} cross build(s) fell back to emulation" if self.fell_back else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "exported": self.exported,
            "blobs_uploaded": self.blobs_uploaded,
            "bytes_uploaded": self.bytes_uploaded,
            "manifests_written": self.manifests_written,
            "jobs": [r.to_json() for r in self.results],
        }


def print_plan(plan: Plan) -> None:
    console.table(
        ("target", "kind", "platform", "image"),
        [(job.target, job.kind.value, job.platform, job.image) for job in plan.jobs],
    )


class Runner:
    """Runs the steps for each job in plan order; dependencies come first in a plan."""

    def __init__(self, settings: Settings, plan: Plan, json_report: bool = False, live: bool = False) -> None:
        self.settings = settings
        self.plan = plan
        self.json_report = json_report
        self.live = live
        self._lock = threading.Lock()
        self.report = RunReport()
        self._registry: RegistryClient | None = None
        self._results: dict[tuple[object, ...], JobResult] = {}
        self._tags: dict[Repository, list[str]] = {}
        # Jobs that finished, by (python, arch, kind): their wheels are offered to later jobs.
        self._finished: dict[tuple[str, str, object], list[Job]] = {}

    # ---- registry (only created when a step needs it) --------------------------------

    @property
    def registry(self) -> RegistryClient:
        if self._registry is None:
            self._registry = open_registry(self.settings)
        return self._registry

    # ---- steps ---------------------------------------------------------------------------

    def pull_existing(self, job: Job, result: JobResult) -> None:
        work = job.work
        if wants_self_pull(self.settings, work.state()):
            staging = work.staging("pulled")
            try:
                got = self._pull(job, staging)
                if got:
                    # The published wheels are now this job's result; an older build's go.
                    work.accept("pulled", staging)
                    console.progress(job.target, "pull-existing", f"{len(got)} wheel(s) from {job.image}")
            finally:
                work.discard(staging)  # nothing pulled, a failure, Ctrl-C: no empty staging stays
        if not wants_dependency_pulls(self.settings):
            return
        for dep in job.depends:
            if self._result_of(dep):
                continue
            staging = work.staging("imports-pull")
            try:
                got = self._pull(dep, staging)
                work.offer_imports(got or [])
            finally:
                work.discard(staging)
            if got:
                console.progress(job.target, "pull-existing", f"{len(got)} dependency wheel(s) from {dep.tag}")

    def _pull(self, job: Job, dest: Path) -> list[Path] | None:
        """The job's image's wheels for its platform: by its tags, else by another spelling
        of them in the repository (one tag listing per repository and run)."""
        got = pull_wheels(self.registry, job.repository, job.tag, job.arch, dest)
        if got is not None:
            return got
        with self._lock:
            if job.repository not in self._tags:
                self._tags[job.repository] = self.registry.tags(job.repository.path)
            tags = self._tags[job.repository]
        others = other_spellings(tags, job.module, job.ssl, job.version, job.python, job.arch)
        return pull_wheels(self.registry, job.repository, job.tag, job.arch, dest, others) if others else None

    def _result_of(self, dep: Job) -> list[Path]:
        """The wheels a dependency job produced in this run (or left from an earlier one)."""
        return dep.work.result_wheels()

    def build(self, job: Job, result: JobResult) -> None:
        decision = build_decision(self.settings, job.work.state())
        if decision is BuildDecision.REUSE:
            console.progress(job.target, "build", "skipped: its image already has this platform")
        elif decision is BuildDecision.SKIP:
            console.progress(job.target, "build", "skipped (NO_BUILD)")
        else:
            for earlier in (*job.depends, *self._finished.get(_slot(job), ())):
                job.work.offer_imports(self._result_of(earlier))
            cross = job.mode is Mode.CROSS
            result.mode = job.mode.value
            try:
                self._build(job, cross)
            except BuildError as exc:
                if not cross or self.settings.cross is Cross.ALWAYS:
                    raise
                # CROSS=auto: what cannot be cross-compiled is built on the target platform.
                result.mode, result.fell_back = Mode.EMULATED.value, str(exc)
                console.progress(job.target, "build", "the cross build failed: building it emulated (CROSS=auto)")
                self._build(job, cross=False)
        result.outcome = decision.value

    def _build(self, job: Job, cross: bool) -> None:
        staging = job.work.staging("built")
        try:
            build_step.build(self.settings, job, staging, wheels_in(job.work.imports), cross)
        except BaseException:
            job.work.discard(staging)
            raise
        job.work.accept("built", staging)

    def repair(self, job: Job, result: JobResult) -> None:
        state = job.work.state()
        if state is State.PULLED:
            return
        built = wheels_in(job.work.built)
        if not built:
            raise WheelTasksError(f"{job.target}: nothing built to repair in {job.work.built}; run `inv build` first")
        staging = job.work.staging("repaired")
        try:
            _, how = repair_step.repair(self.settings, job, built, staging)
        except BaseException:
            job.work.discard(staging)
            raise
        job.work.accept("repaired", staging)
        result.repaired = how.value

    def import_check(self, job: Job, result: JobResult) -> None:
        """Install and import what this run built, on the job's platform (reused wheels were
        checked when they were built)."""
        if job.work.state() is not State.REPAIRED or result.outcome != BuildDecision.BUILD.value:
            return
        importcheck.import_check(self.settings, job, job.work.result_wheels(), wheels_in(job.work.imports))

    def export(self, job: Job, result: JobResult) -> None:
        if not job.exports:
            return
        wheels = job.work.result_wheels()
        if not wheels:
            raise WheelTasksError(f"{job.target}: no wheels to export in {job.work.root}; run `inv build` first")
        written = export_step.export(self.settings, job, wheels)
        self.report.exported += len(written)
        dest = export_step.export_dir(self.settings, job)
        console.progress(job.target, "export", f"{len(written)} wheel(s) in {dest}")

    def push(self, job: Job, result: JobResult) -> None:
        wheels = job.work.result_wheels()
        if not wheels:
            raise WheelTasksError(f"{job.target}: no wheels to push in {job.work.root}; run `inv build` first")
        pushed = push_wheels(self.registry, job, wheels, index_url=index_url(self.settings))
        self.report.blobs_uploaded += pushed.blobs_uploaded
        self.report.bytes_uploaded += pushed.bytes_uploaded
        self.report.manifests_written += pushed.manifests_written
        console.progress(
            job.target,
            "push",
            f"{job.image}: {pushed.blobs_uploaded} blob(s) uploaded, {pushed.blobs_skipped} already there",
        )

    # ---- running -------------------------------------------------------------------------

    def step(self, name: str) -> Callable[[Job, JobResult], None]:
        return {
            "pull-existing": self.pull_existing,
            "build": self.build,
            "repair": self.repair,
            "import-check": self.import_check,
            "export": self.export,
            "push": self.push,
        }[name]

    def run_job(self, job: Job, steps: Sequence[str], n: int) -> JobResult:
        result = JobResult(job)
        with self._lock:
            self._results[job.key] = result
            self.report.results.append(result)
            broken = [dep for dep in job.depends if self._results.get(dep.key, JobResult(dep)).failed]
        if broken:
            result.outcome = "dependency failed"
            result.error = f"depends on {broken[0].target}, which failed"
            console.progress(job.target, "skipped", result.error)
            return result
        started = result.started = time.monotonic()
        console.progress(job.target, "job", f"{n}/{len(self.plan.jobs)} {job.kind.value}: {' -> '.join(steps)}")
        try:
            for name in steps:
                step_started = time.monotonic()
                result.state = name
                self.step(name)(job, result)
                result.steps[name] = time.monotonic() - step_started
        except OSError as exc:  # a full disk, a permission: this job fails, the run goes on
            result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
            result.seconds = time.monotonic() - started
            raise WheelTasksError(f"{job.target}: {result.error}") from None
        except WheelTasksError as exc:
            result.outcome, result.error = "failed", str(exc)
            result.seconds = time.monotonic() - started
            raise
        finally:
            result.ended = time.monotonic()
        if result.outcome == "pending":
            result.outcome = "done"
        with self._lock:
            self._finished.setdefault(_slot(job), []).append(job)
        result.seconds = time.monotonic() - started
        console.progress(job.target, "done", f"{job.kind.value} {result.outcome} in {result.seconds:.1f}s")
        return result

    def run(self, steps: Sequence[str], width: int = 1) -> RunReport:
        """Run every job, up to ``width`` at once; a job starts once those it waits for ended.

        Ctrl-C, SIGTERM or SIGHUP (KeyboardInterrupt, in the main thread): every build and
        container is stopped and every started job's staging folders are removed, with
        further signals held off until that is done, so a second Ctrl-C cannot skip it.
        """
        running_module.reset()
        try:
            if width <= 1:
                return self._run_in_order(steps)
            return self._run_side_by_side(steps, width)
        except KeyboardInterrupt:
            with running_module.signals_held():
                running_module.stop_all()
                with self._lock:
                    started = [r.job for r in self.report.results]
                for job in started:
                    job.work.discard_staging()
            raise

    def _run_in_order(self, steps: Sequence[str]) -> RunReport:
        # In this thread: Ctrl-C reaches the step that runs, which cleans up after itself.
        first_error: WheelTasksError | None = None
        with console.live(self._live_lines if self.live else None):
            for n, job in enumerate(self.plan.jobs, 1):
                try:
                    self.run_job(job, steps, n)
                except WheelTasksError as exc:
                    console.note(f"{job.target} failed: {exc}")
                    first_error = first_error or exc
                    if self.settings.fail_fast:
                        break
        self._finish(first_error)
        return self.report

    def _run_side_by_side(self, steps: Sequence[str], width: int) -> RunReport:
        errors: list[WheelTasksError] = []
        pending = list(self.plan.jobs)
        running: dict[tuple[object, ...], threading.Thread] = {}
        ended: queue.Queue[tuple[tuple[object, ...], WheelTasksError | None]] = queue.Queue()
        finished: set[tuple[object, ...]] = set()
        started = 0

        def work(job: Job, n: int) -> None:
            error: WheelTasksError | None = None
            try:
                self.run_job(job, steps, n)
            except WheelTasksError as exc:
                console.note(f"{job.target} failed: {exc}")
                error = exc
            except BaseException as exc:  # Ctrl-C, or a bug: the main thread decides
                error = WheelTasksError(f"{job.target}: {type(exc).__name__}: {exc}")
            ended.put((job.key, error))

        with console.live(self._live_lines if self.live else None):
            try:
                while pending or running:
                    stop = bool(errors) and self.settings.fail_fast
                    for job in [] if stop else list(pending):
                        if len(running) >= width:
                            break
                        if all(dep.key in finished for dep in self.plan.waits_for(job)):
                            pending.remove(job)
                            started += 1
                            thread = threading.Thread(target=work, args=(job, started), daemon=True)
                            running[job.key] = thread
                            thread.start()
                    if stop and not running:
                        break
                    if not running:  # nothing can start: only jobs waiting on jobs not in the plan
                        break
                    try:
                        key, error = ended.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    running.pop(key).join()
                    finished.add(key)
                    if error is not None:
                        errors.append(error)
            except KeyboardInterrupt:
                # Stop what the workers started, and give them a moment to discard their
                # staging folders (run() removes what is left), so nothing half-written stays.
                with running_module.signals_held():
                    running_module.stop_all()
                    deadline = time.monotonic() + 1.5
                    for thread in running.values():
                        thread.join(max(0.0, deadline - time.monotonic()))
                raise
        self._finish(errors[0] if errors else None)
        return self.report

    def _live_lines(self) -> list[str]:
        """One line per running job: its step, time so far and the last line of its log."""
        now = time.monotonic()
        lines = []
        with self._lock:
            results = [r for r in self.report.results if r.started and not r.ended]
        for r in results:
            log = r.job.work.last_build_log if r.state == "build" else None
            last = console.last_line(log) if log else ""
            lines.append(f"  {r.state:<13} {now - r.started:6.0f}s  {r.job.target}  {last}")
        return lines

    def _finish(self, first_error: WheelTasksError | None) -> None:
        if len(self.plan.jobs) > 1 or first_error is not None:
            show_results(self.report)
        self.settings.work_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.settings.work_dir / REPORT_FILE, json.dumps(self.report.to_json(), indent=2).encode())
        console.note(f"summary: {self.report.summary()}")
        if self.json_report:
            console.emit_json(self.report.to_json())
        if first_error is None:
            return
        failures = self.report.failures
        if len(self.plan.jobs) == 1:
            raise first_error
        # The exit code is that of the first failure (build 3, remote 4, user 2).
        raise type(first_error)(
            f"{len(failures)} of {len(self.plan.jobs)} job(s) did not finish (first: {failures[0].job.target}); "
            f"see the table above and {self.settings.work_dir / REPORT_FILE}"
        )


def show_results(report: RunReport) -> None:
    console.table(
        ("job", "kind", "result", "built as", "time", "log"),
        [
            (r.job.target, r.job.kind.value, r.outcome, _built_as(r), f"{r.seconds:.1f}s", r.log or "-")
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


def _slot(job: Job) -> tuple[str, str, object]:
    return (job.python, job.arch.name, job.kind)


def run(
    settings: Settings,
    plan: Plan,
    steps: Sequence[str] | None = None,
    *,
    json_report: bool = False,
    live: bool = False,
) -> RunReport:
    """Run ``steps`` (default: the whole local flow, plus push when DO_PUSH) for every job.

    Up to JOBS jobs run at once (default: the engine's CPU count). With ``json_report`` the
    run's report is printed as JSON on stdout (also when jobs failed); with ``live`` a line
    per running job is kept up to date on the terminal.
    """
    if steps is None:
        steps = [s for s in FULL_FLOW if s != "push" or settings.do_push]
    if "push" in steps and not settings.wheels_registry:
        raise WheelTasksError(NO_REGISTRY)  # before any build, not after them all
    if settings.noop:
        print_noop(settings, plan, steps)
        return RunReport()
    check_inputs(settings, plan, steps)
    builds = "build" in steps and not settings.no_build
    if builds:
        # No engine, buildx or QEMU: say so once, before any job.
        for arch, engine in dict.fromkeys((job.arch, job.engine) for job in plan.jobs):
            docker_engine.check_build(arch, engine)
    width = settings.jobs or (_engine_cpus(plan) if builds else 1)
    return Runner(settings, plan, json_report, live).run(steps, width)


def check_inputs(settings: Settings, plan: Plan, steps: Sequence[str]) -> None:
    """Steps run alone (``inv export``, ``repair``, ``push``: no build or pull before them)
    work on what an earlier run left in each job's work folder. When not one job has
    anything to work on, say which task to run first, before any job runs and before
    anything is written (no table, no report). When some have, the run goes on, and the
    others fail in its table as usual."""
    if "build" in steps or "pull-existing" in steps:
        return
    missing: dict[str, list[Job]] = {}
    needy = 0
    for job in plan.jobs:
        needs_result = "push" in steps or ("export" in steps and job.exports)
        if not needs_result and "repair" not in steps:
            continue  # export of a LibreSSL job: nothing to do, nothing needed
        needy += 1
        state = job.work.state()
        if state is State.EMPTY:
            missing.setdefault("build", []).append(job)
        elif state is State.BUILT and needs_result and "repair" not in steps:
            missing.setdefault("repair", []).append(job)
    if not needy or sum(map(len, missing.values())) < needy:
        return
    task, what = ("build", "nothing built") if "build" in missing else ("repair", "built but not repaired")
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


def print_noop(settings: Settings, plan: Plan, steps: Sequence[str]) -> None:
    print_plan(plan)
    print(f"\nNOOP: would run {' -> '.join(steps)} for {len(plan.jobs)} job(s); commands:")
    for job in plan.jobs:
        if "build" in steps and not settings.no_build:
            out = job.work.root / "built.partial"
            print(shlex.join(build_step.build_command(settings, job, out, cross=job.mode is Mode.CROSS)))
