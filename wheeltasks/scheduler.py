"""The scheduler: a plan's jobs through the steps, in plan order or side by side.

A job starts once those it waits for ended (``Plan.waits_for``: its dependencies, and the
core jobs). A failed job does not stop the run (unless FAIL_FAST): the jobs that depend on
it are skipped, the others go on, and the run ends with a table and a non-zero exit.
Ctrl-C, SIGTERM, SIGHUP: builds and containers are stopped and every started job's
staging folders removed (:meth:`Runner.run`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from . import console, wheelset
from . import running as running_module
from .errors import WheelTasksError
from .flow import Outcome
from .job import Job
from .plan import Plan
from .runreport import REPORT_FILE, JobResult, RunReport, publish
from .settings import Settings
from .stepruns import Context
from .steps import BY_NAME, PUSH, Step

if TYPE_CHECKING:
    from .index import IndexClient


class Runner:
    """Runs the steps for each job in plan order; dependencies come first in a plan.

    ``steps`` is the table the step names are looked up in (``steps.BY_NAME``).
    """

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        json_report: bool = False,
        live: bool = False,
        steps: Mapping[str, Step] = BY_NAME,
        index: IndexClient | None = None,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.json_report = json_report
        self.live = live
        self.table = steps
        self.report = RunReport()
        self.context = Context(settings, self.report, index)
        self._lock = threading.Lock()
        self._results: dict[tuple[object, ...], JobResult] = {}
        self._steps: tuple[str, ...] = ()

    def run_job(self, job: Job, steps: Sequence[str], n: int) -> JobResult:
        result = JobResult(job)
        with self._lock:
            self._results[job.key] = result
            self.report.results.append(result)
            broken = [dep for dep in job.depends if self._results.get(dep.key, JobResult(dep)).failed]
        if broken:
            result.outcome = Outcome.DEPENDENCY_FAILED
            result.error = f"depends on {broken[0].target}, which failed"
            console.progress(job.target, "skipped", result.error)
            return result
        started = result.started = time.monotonic()
        console.progress(job.target, "job", f"{n}/{len(self.plan.jobs)} {job.kind.value}: {' -> '.join(steps)}")
        try:
            for name in steps:
                step_started = time.monotonic()
                result.state = name
                self.table[name].run(self.context, job, result)
                result.steps[name] = time.monotonic() - step_started
        except OSError as exc:  # a full disk, a permission: this job fails, the run goes on
            result.outcome, result.error = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
            result.seconds = time.monotonic() - started
            raise WheelTasksError(f"{job.target}: {result.error}") from None
        except WheelTasksError as exc:
            result.outcome, result.error = Outcome.FAILED, str(exc)
            result.seconds = time.monotonic() - started
            raise
        finally:
            result.ended = time.monotonic()
        if result.outcome is Outcome.PENDING:
            result.outcome = Outcome.DONE
        self.context.finished(job)
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
        self._steps = tuple(steps)
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
        finally:
            self.context.close()  # Ctrl-C, an error: no shared check container outlives the run

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
        """One line per running job: its step, time so far and the last line of the step's log."""
        now = time.monotonic()
        lines = []
        with self._lock:
            results = [r for r in self.report.results if r.started and not r.ended]
        for r in results:
            step = self.table.get(r.state)
            log = step.log(r.job.work) if step is not None else None
            last = console.last_line(log) if log else ""
            lines.append(f"  {r.state:<13} {now - r.started:6.0f}s  {r.job.target}  {last}")
        return lines

    def _finish(self, first_error: WheelTasksError | None) -> None:
        self.context.close()  # no more import checks: the report counts their containers
        if PUSH.name in self._steps and self.plan.sets:
            first_error = self._push_sets() or first_error
        publish(self.settings, self.report, table=len(self.plan.jobs) > 1 or first_error is not None,
                as_json=self.json_report)
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

    def _push_sets(self) -> WheelTasksError | None:
        """The requirements files' wheel sets (wheelset.py), each platform whose jobs all
        ended well; the first error, if any (the run's exit code is then that error's)."""
        failed = [r.job.key for r in self.report.results if r.failed]
        error: WheelTasksError | None = None
        for image in wheelset.set_images(self.settings, self.plan.sets):
            pushed: list[str] = []
            for one in image.sets:
                if not wheelset.ended_well(one, failed):
                    console.note(f"{image.image(self.settings)}: no {one.arch.name} image, a job of its set failed")
                    continue
                try:
                    done = wheelset.push_set(self.context.registry, self.settings, image, one)
                except WheelTasksError as exc:
                    console.note(f"{image.image(self.settings)} on {one.arch.name}: {exc}")
                    error = error or exc
                    continue
                self.report.blobs_uploaded += done.blobs_uploaded
                self.report.bytes_uploaded += done.bytes_uploaded
                self.report.manifests_written += done.manifests_written
                pushed.append(one.arch.platform)
            if pushed:
                self.report.wheel_sets.append({"image": image.image(self.settings), "platforms": pushed})
                console.note(f"wheel set {image.image(self.settings)}: {', '.join(pushed)}")
        return error
