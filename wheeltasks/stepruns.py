"""The steps of the flow, adapted to it: each runs as ``run(context, job, result)`` (the table
of ``steps.py`` names them). Each asks the decisions of ``flow.py``, stages the step's output
in the job's work folder and records what happened in the job's result.

Apart from the table so that what needs only the table (``--help``, a plan, the tasks'
flags) imports none of the step modules (docker, requests, auditwheel's ELF reader).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from . import build as build_step
from . import console, importcheck
from . import export as export_step
from . import repair as repair_step
from .checkers import Checkers
from .errors import BuildError, WheelTasksError
from .files import wheels_in
from .flow import Outcome, build_decision, wants_dependency_pulls, wants_import_check, wants_repair, wants_self_pull
from .imageformat import other_spellings
from .images import open_registry, pull_wheels, push_wheels
from .index import IndexClient, index_url
from .job import Job, Mode, Source
from .pages import DistFile
from .registry import RegistryClient
from .runreport import JobResult, RunReport
from .settings import Cross, Kind, Repository, Settings
from .sources import serves
from .steps import BUILD
from .verify import of_module, verify
from .wheeltags import distribution, is_pure


class Context:
    """What the steps of one run share: the settings, the report's counts, the registry
    client (made when a step first needs it), one tag listing per repository, and the jobs
    that finished, whose wheels are offered to later jobs of the same Python, arch and kind.
    ``index``: the client the plan was resolved with (its pages are cached, and CLEAN_CACHE
    cleared the cache once, when it was made); else one is made when first needed."""

    def __init__(self, settings: Settings, report: RunReport, index: IndexClient | None = None) -> None:
        self.settings = settings
        self.report = report
        self.lock = threading.Lock()
        self._registry: RegistryClient | None = None
        self._index = index
        self._tags: dict[Repository, list[str]] = {}
        self._finished: dict[tuple[str, str, object], list[Job]] = {}
        self.checkers = Checkers(settings)

    @property
    def registry(self) -> RegistryClient:
        if self._registry is None:
            self._registry = open_registry(self.settings)
        return self._registry

    @property
    def index(self) -> IndexClient:
        """The package index, for the wheels the plan takes from it (made when first needed)."""
        with self.lock:
            if self._index is None:
                self._index = IndexClient(self.settings)
            return self._index

    def close(self) -> None:
        """The run's end: its shared import-check containers go (their count to the report)."""
        self.checkers.close()
        self.report.check_containers = self.checkers.started

    def tags(self, repository: Repository) -> list[str]:
        with self.lock:
            if repository not in self._tags:
                self._tags[repository] = self.registry.tags(repository.path)
            return self._tags[repository]

    def finished(self, job: Job) -> None:
        with self.lock:
            self._finished.setdefault(_slot(job), []).append(job)

    def finished_alike(self, job: Job) -> tuple[Job, ...]:
        """The jobs of the job's Python, arch and kind that finished so far."""
        with self.lock:
            return tuple(self._finished.get(_slot(job), ()))


def _slot(job: Job) -> tuple[str, str, object]:
    return (job.python, job.arch.name, job.kind)


def pull_existing(context: Context, job: Job, result: JobResult) -> None:
    settings, work = context.settings, job.work
    if wants_self_pull(settings, work.state()):
        staging = work.staging("pulled")
        try:
            got = _pull(context, job, staging)
            if got:
                # The published wheels are now this job's result; an older build's go.
                work.accept("pulled", staging)
                console.progress(job.target, result.state, f"{len(got)} wheel(s) from {job.image}")
        finally:
            work.discard(staging)  # nothing pulled, a failure, Ctrl-C: no empty staging stays
    if not wants_dependency_pulls(settings):
        return
    for dep in job.depends:
        if dep.work.result_wheels():  # built in this run (or left from an earlier one)
            continue
        staging = work.staging("imports-pull")
        try:
            got = _pull(context, dep, staging)
            work.offer_imports(got or [])
        finally:
            work.discard(staging)
        if got:
            console.progress(job.target, result.state, f"{len(got)} dependency wheel(s) from {dep.tag}")


def _pull(context: Context, job: Job, dest: Path) -> list[Path] | None:
    """The job's image's wheels for its platform: by its tags, else by another spelling
    of them in the repository (one tag listing per repository and run)."""
    got = pull_wheels(context.registry, job.repository, job.tag, job.arch, dest)
    if got is not None:
        return got
    tags = context.tags(job.repository)
    others = other_spellings(tags, job.module, job.ssl, job.version, job.python, job.arch)
    return pull_wheels(context.registry, job.repository, job.tag, job.arch, dest, others) if others else None


def build(context: Context, job: Job, result: JobResult) -> None:
    settings = context.settings
    decision = build_decision(settings, job.work.state())
    if decision is Outcome.REUSED:
        console.progress(job.target, result.state, "skipped: its image already has this platform")
    elif decision is Outcome.SKIPPED:
        console.progress(job.target, result.state, "skipped (NO_BUILD)")
    else:
        for earlier in (*job.depends, *context.finished_alike(job)):
            job.work.offer_imports(earlier.work.result_wheels())
        if _takes(context, job, result):
            return
        result.source = Source.BUILD.value
        cross = job.mode is Mode.CROSS
        result.mode = job.mode.value
        try:
            _build(settings, job, cross)
        except BuildError as exc:
            if not cross or settings.cross is Cross.ALWAYS:
                raise
            # CROSS=auto: what cannot be cross-compiled is built on the target platform.
            result.mode, result.fell_back = Mode.EMULATED.value, str(exc)
            console.progress(job.target, result.state, "the cross build failed: building it emulated (CROSS=auto)")
            _build(settings, job, cross=False)
    result.outcome = decision


def _takes(context: Context, job: Job, result: JobResult) -> bool:
    """The wheel the plan chose for the job (another job's, the index's), when it serves:
    staged as what the build step leaves. False (and why, in the result) when it does not,
    and the job builds as any other."""
    if job.index_file is None and job.provider is None:
        return False
    staging = job.work.staging("built")
    try:
        if job.index_file is not None:
            why = _from_index(context, job, job.index_file, staging)
            taken, outcome = job.index_file.filename, Outcome.FROM_INDEX
        else:
            assert job.provider is not None
            why = _from_provider(job, job.provider, staging)
            taken, outcome = job.provider.target, Outcome.TOOK_BUILD
        if why:
            job.work.discard(staging)
            result.not_taken = why
            console.progress(job.target, result.state, f"not taking {taken}: {why}; building it")
            return False
    except BaseException:
        job.work.discard(staging)
        raise
    job.work.accept("built", staging)
    result.outcome, result.source, result.took = outcome, job.source.value, taken
    console.progress(job.target, result.state, f"took {taken} ({job.source_why})")
    return True


def _from_index(context: Context, job: Job, file: DistFile, staging: Path) -> str:
    """The index's wheel, hash-checked, and the dependencies' wheels; why not, when it does not fit."""
    wheel = context.index.download(file, staging)
    try:
        verify(job, [wheel])
    except BuildError as exc:
        return f"it does not fit the platform ({exc})"
    return _add_dependencies(job, [wheel], [], staging)


def _from_provider(job: Job, provider: Job, staging: Path) -> str:
    """The provider's wheel of the module, where it serves the job, with the dependencies'
    wheels for the job's Python and platform; why not, when it does not serve."""
    made = _provided(provider, job)
    own = [w for w in made if of_module(provider, w)]
    if not own:
        return f"{provider.target} has no wheel of {job.module} that a {job.kind.value} job can take (it failed or did not run)"
    unfit = [w.name for w in own if not serves(w.name, provider, job)]
    if unfit:
        return f"{', '.join(unfit)} does not serve Python {job.python} on {job.arch.name}"
    for wheel in own:
        shutil.copy2(wheel, staging / wheel.name)
    return _add_dependencies(job, own, [w for w in made if w not in own], staging)


def _provided(provider: Job, job: Job) -> list[Path]:
    """The provider's wheels on offer to the job: its results; to a job of the other kind,
    the wheels as it built them, before its repair (only its pure ones where it built none:
    its image's wheels were pulled)."""
    if provider.kind is job.kind:
        return provider.work.result_wheels()
    return wheels_in(provider.work.built) or [w for w in provider.work.result_wheels() if is_pure(w.name)]


def _add_dependencies(job: Job, taken: list[Path], others: list[Path], staging: Path) -> str:
    """Beside the taken wheels, one wheel for the job's Python and platform of every other
    distribution (those the provider's build gave beside its module's, and the job's
    dependencies' results), so the job's image holds the module and its dependencies as a
    build's would; why not, when one of the provider's is missing."""
    offered = [*others, *(w for dep in job.depends for w in dep.work.result_wheels())]
    picked = importcheck.chosen(job, taken, offered, unrepaired=job.kind is Kind.NO_SHARED)
    for wheel in picked:
        if wheel not in taken:
            shutil.copy2(wheel, staging / wheel.name)
    needed = {distribution(w.name) for w in others} - {distribution(w.name) for w in picked}
    if needed:
        return f"no wheel of {', '.join(sorted(needed))} for Python {job.python} on {job.arch.name}"
    return ""


def _build(settings: Settings, job: Job, cross: bool) -> None:
    staging = job.work.staging("built")
    try:
        build_step.build(settings, job, staging, wheels_in(job.work.imports), cross)
    except BaseException:
        job.work.discard(staging)
        raise
    job.work.accept("built", staging)


def repair(context: Context, job: Job, result: JobResult) -> None:
    if not wants_repair(job.work.state()):
        return
    built = wheels_in(job.work.built)
    if not built:
        raise WheelTasksError(f"{job.target}: nothing built to repair in {job.work.built}; run `inv {BUILD.task}` first")
    staging = job.work.staging("repaired")
    try:
        _, how = repair_step.repair(context.settings, job, built, staging)
    except BaseException:
        job.work.discard(staging)
        raise
    job.work.accept("repaired", staging)
    result.repaired = how.value


def import_check(context: Context, job: Job, result: JobResult) -> None:
    if wants_import_check(job.work.state(), result.outcome):
        importcheck.import_check(
            context.settings, job, job.work.result_wheels(), wheels_in(job.work.imports), context.checkers
        )


def export(context: Context, job: Job, result: JobResult) -> None:
    if not job.exports:
        return
    wheels = job.work.result_wheels()
    if not wheels:
        raise WheelTasksError(f"{job.target}: no wheels to export in {job.work.root}; run `inv {BUILD.task}` first")
    written = export_step.export(context.settings, job, wheels)
    with context.lock:
        context.report.exported += len(written)
    console.progress(job.target, result.state, f"{len(written)} wheel(s) in {export_step.export_dir(context.settings, job)}")


def push(context: Context, job: Job, result: JobResult) -> None:
    wheels = job.work.result_wheels()
    if not wheels:
        raise WheelTasksError(f"{job.target}: no wheels to push in {job.work.root}; run `inv {BUILD.task}` first")
    pushed = push_wheels(context.registry, job, wheels, index_url=index_url(context.settings))
    with context.lock:
        context.report.blobs_uploaded += pushed.blobs_uploaded
        context.report.bytes_uploaded += pushed.bytes_uploaded
        context.report.manifests_written += pushed.manifests_written
    console.progress(
        job.target,
        result.state,
        f"{job.image}: {pushed.blobs_uploaded} blob(s) uploaded, {pushed.blobs_skipped} already there",
    )
