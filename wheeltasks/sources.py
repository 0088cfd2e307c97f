"""Where each job's wheel comes from, decided with the plan (REUSE=auto): build it, take
another job's, or take the index's.

- **index**: the index has a wheel that the job's platform and Python accept (by
  ``packaging.tags`` for the target: ``cp312``, ``abi3``, ``none``; ``musllinux_1_2`` down to
  ``musllinux_1_0`` of its machine; ``any``), with a sha256 to check it by. A shared job
  takes only a repaired (musllinux) or pure wheel; a no-shared job takes any the platform
  accepts, as the original system did. Not with NO_BINARY, nor for a build of another SSL
  library than the default (those build from source), nor for a module the job builds
  with a recipe that makes the wheel itself.
- **reuse**: where the index shows the module's wheels come out pure (a ``py3-none-any``
  wheel of this version, else of its newest version with wheels), one job builds (a native
  one, the oldest Python) and every other job of the module and version, any arch, Python
  and kind, takes that wheel; where they come out abi3 (``cp3X-abi3``), one job per arch
  builds (the oldest Python, shared) and the later Pythons take its wheel. The two kinds
  build alike (no-shared is the shared build without the repair), so a no-shared job takes
  the shared job's wheel as it was built, before the repair: of its Python, or its abi3
  floor's. Not where the recipe reads ``$KIND`` (it may build the kinds differently): then
  each kind builds its own. Those jobs wait for the one that builds, and build themselves
  when its wheel turns out not to serve them.
- **build**: everything else.

The prediction only decides who waits for whom; what serves is decided again by the run,
from the wheel that came out (``serves``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence

from packaging.version import Version

from .job import Job, Mode, Source
from .pages import DistFile
from .settings import Kind, Reuse, Settings
from .targets import DEFAULT_SSL
from .wheeltags import abi3_floor, is_pure, preference, target_platforms, target_ranks, wheel_tags

FilesOf = Callable[[str], Sequence[DistFile]]


def takes_from_index(settings: Settings, job: Job) -> bool:
    """Whether a job may take the index's wheel: not with NO_BINARY, not for a non-default SSL
    library (built from source), not when the recipe builds the wheel itself."""
    if settings.reuse is Reuse.NEVER or settings.no_binary:
        return False
    if job.ssl is not None and job.ssl is not DEFAULT_SSL:
        return False
    return not job.recipe.builds_wheel


def index_wheel(job: Job, files: Iterable[DistFile]) -> DistFile | None:
    """The index's most preferred wheel of the job's version that its platform and Python
    accept (musllinux or pure for a shared job), with a sha256; None when there is none."""
    ranks = target_ranks(job.arch, job.python, unrepaired=job.kind is Kind.NO_SHARED)
    platforms = target_platforms(job.arch, job.python, unrepaired=job.kind is Kind.NO_SHARED)
    best: tuple[int, DistFile] | None = None
    for file in files:
        if file.version != job.version or file.yanked or not file.filename.endswith(".whl"):
            continue
        if not file.url or not file.sha256:
            continue
        # The platform tags are the name's last field: most of a version's wheels (other
        # systems and CPUs) are passed over by it, without parsing the name's tags.
        if platforms.isdisjoint(file.filename[:-4].rpartition("-")[2].split(".")):
            continue
        rank = preference(file.filename, ranks)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, file)
    return best[1] if best else None


def _wheels_by_version(files_of: FilesOf) -> Callable[[str, Version], Sequence[DistFile]]:
    """``files_of`` narrowed to one version's wheels, each module's files sorted once (a
    project of the public index lists thousands; a plan asks for each of its jobs)."""
    by_module: dict[str, dict[Version, list[DistFile]]] = {}

    def wheels(module: str, version: Version) -> Sequence[DistFile]:
        if module not in by_module:
            grouped: dict[Version, list[DistFile]] = {}
            for file in files_of(module):
                if file.filename.endswith(".whl"):
                    grouped.setdefault(file.version, []).append(file)
            by_module[module] = grouped
        return by_module[module].get(version, ())

    return wheels


def evidence(files: Sequence[DistFile], version: Version) -> str:
    """How the module's wheels come out, as the index shows: "pure", "abi3", or "" (unknown),
    from this version's wheels, else from its newest older version that has wheels."""
    wheels = [f for f in files if f.filename.endswith(".whl") and not f.yanked]
    versions = {f.version for f in wheels}
    older = [v for v in versions if v < version]
    shown = version if version in versions else max(older, default=None)
    names = [f.filename for f in wheels if f.version == shown]
    if any(is_pure(name) for name in names):
        return "pure"
    if any(abi3_floor(name) for name in names):
        return "abi3"
    return ""


def decide(settings: Settings, jobs: Sequence[Job], files_of: FilesOf) -> tuple[Job, ...]:
    """The jobs with their sources set, in plan order except that a provider comes before
    the jobs that take its wheel; dependencies and providers refer to the decided jobs."""
    if settings.reuse is Reuse.NEVER:
        return tuple(jobs)
    decided: dict[tuple[str, str, Kind], Job] = {}
    wheels = _wheels_by_version(files_of)
    for job in jobs:
        found = index_wheel(job, wheels(job.module, job.version)) if takes_from_index(settings, job) else None
        if found is not None:
            job = dataclasses.replace(job, source=Source.INDEX, index_file=found, source_why=f"the index has {found.filename}")
        decided[job.key] = job
    providers = _providers(list(decided.values()), files_of)
    final: dict[tuple[str, str, Kind], Job] = {}

    def finish(job: Job) -> Job:
        """The decided job, after its dependencies and its provider (plan order otherwise)."""
        if job.key in final:
            return final[job.key]
        depends = tuple(finish(decided[d.key]) for d in job.depends)
        provider, why = providers.get(job.key, (None, ""))
        if provider is not None and provider.key != job.key:
            job = dataclasses.replace(job, depends=depends, source=Source.REUSE, provider=finish(decided[provider.key]),
                                      source_why=why)
        else:
            job = dataclasses.replace(job, depends=depends)
        final[job.key] = job
        return job

    for job in decided.values():
        finish(job)
    return tuple(final.values())


def _providers(jobs: Sequence[Job], files_of: FilesOf) -> dict[tuple[str, str, Kind], tuple[Job, str]]:
    """For each job that will take another's wheel: that job, and why."""
    building = [j for j in jobs if j.source is Source.BUILD]
    groups: dict[tuple[object, ...], list[Job]] = {}
    for job in building:
        groups.setdefault((job.module, job.ssl, job.version), []).append(job)
    chosen: dict[tuple[str, str, Kind], tuple[Job, str]] = {}
    for (module, _ssl, version), members in groups.items():
        assert isinstance(module, str) and isinstance(version, Version)
        shown = evidence(files_of(module), version)
        if shown == "pure":
            first = min(members, key=_builds_first)
            why = f"its wheels are pure (the index's are): {first.target} builds for every arch, Python and kind"
            chosen |= {m.key: (first, why) for m in members}
            continue
        # abi3: one build per arch for every Python; else one per arch and Python. Either
        # serves both kinds, unless the recipe reads $KIND.
        alike: dict[tuple[object, ...], list[Job]] = {}
        for m in members:
            kind = m.kind if m.recipe.reads_kind else None
            alike.setdefault((m.arch.name, kind) if shown == "abi3" else (m.arch.name, m.python, kind), []).append(m)
        for same in alike.values():
            first = min(same, key=lambda j: (Version(j.python), j.kind is not Kind.SHARED))
            chosen |= {m.key: (first, _why(shown, first, m)) for m in same}
    return chosen


def _why(shown: str, first: Job, job: Job) -> str:
    """Why ``job`` takes the wheel of ``first`` (an abi3 one, or the other kind's build)."""
    kinds = f" ({first.kind.value}, as built: the kinds build alike)" if first.kind is not job.kind else ""
    if shown == "abi3":
        return f"its wheels are abi3 (the index's are): {first.target}{kinds} builds for the later Pythons"
    return f"{first.target}{kinds} builds for both kinds"


def _builds_first(job: Job) -> tuple[bool, bool, Version]:
    """The job that builds a pure wheel for all: a native one, shared, the oldest Python."""
    return (job.mode is not Mode.NATIVE, job.kind is not Kind.SHARED, Version(job.python))


def serves(wheel_name: str, provider: Job, job: Job) -> bool:
    """Whether the provider's wheel serves the job: a pure wheel any job of the module and
    version; another one the jobs of its arch whose Python accepts its tags (an abi3 wheel:
    from its floor on), of its kind or, as the shared job built it, the no-shared kind's
    (unless the recipe reads $KIND)."""
    if is_pure(wheel_name):
        return True
    if provider.arch != job.arch:
        return False
    if provider.kind is not job.kind and (provider.kind is not Kind.SHARED or job.recipe.reads_kind):
        return False
    return not wheel_tags(wheel_name).isdisjoint(target_ranks(job.arch, job.python, unrepaired=job.kind is Kind.NO_SHARED))
