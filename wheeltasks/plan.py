"""resolve: targets -> an ordered plan of Jobs (dependencies first).

Expands what a target leaves out (version from the index, Python from the defaults,
every arch), applies the kinds and the excluded arch/SSL combinations, and puts each
module's ``mod_depends`` before it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from packaging.version import Version

from . import requirements as requirements_mod
from . import sources
from .errors import WheelTasksError
from .job import Job, Mode, make_job
from .pages import DistFile
from .recipes import Listing, Recipe, load_recipe, recipes_in
from .settings import Cross, Kind, Settings
from .targets import (
    PYALL,
    SSL,
    Arch,
    Target,
    find_arch,
    host_machine,
    implied_ssl,
    parse_target,
    runs_natively,
    split_targets,
)
from .values import check_python

if TYPE_CHECKING:  # the router is given (buildx.router); the planner does not import the client
    from .engines import Route

# Special targets given alone that stand for the default sets.
DEFAULT_SETS = ("all", "core")
COMMAND_TARGETS = ("check", "update")


@dataclass(frozen=True)
class WheelSet:
    """A requirements file's closure on one Python, platform and kind, as the plan's jobs."""

    file: Path
    python: str
    arch: Arch
    kind: Kind
    jobs: tuple[Job, ...]  # dependencies first

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(job.module for job in self.jobs)


class VersionSource(Protocol):
    """What the planner needs of a package index (wheeltasks.index.IndexClient)."""

    def latest_many(self, projects: Iterable[str], python: str | None) -> dict[str, Version]: ...

    def check_version(self, project: str, version: Version, python: str | None) -> None: ...

    def files(self, project: str) -> Sequence[DistFile]: ...


@dataclass(frozen=True)
class Plan:
    jobs: tuple[Job, ...]
    notes: tuple[str, ...] = ()
    # Jobs of the core modules (``all``, ``core``): they run before every other job.
    core: frozenset[tuple[str, str, Kind]] = frozenset()
    # The requirements files' closures (-r FILE), each Python and platform: their wheel sets.
    sets: tuple[WheelSet, ...] = ()

    def waits_for(self, job: Job) -> tuple[Job, ...]:
        """The jobs that must finish before ``job`` starts: its dependencies, the job whose
        wheel it takes, and the core jobs."""
        first = (*job.depends, *((job.provider,) if job.provider is not None else ()))
        if self.core and job.key not in self.core:
            return (*first, *(j for j in self.jobs if j.key in self.core))
        return first


@dataclass(frozen=True)
class _Want:
    """A job before its version is known."""

    module: str
    ssl: SSL | None
    version: Version | None
    python: str
    arch: Arch
    kind: Kind
    depends: tuple[_Want, ...] = field(default=(), compare=False)

    @property
    def key(self) -> tuple[object, ...]:
        return (self.module, self.ssl, self.version, self.python, self.arch.name, self.kind)


SslModule = Callable[[str], bool]


def ssl_modules(settings: Settings, listing: Listing = recipes_in) -> SslModule:
    """Whether a module links an SSL library: it is in SSL_MODULES, or its recipe names
    ``$SSL`` (it links one itself or through a dependency, like paramiko)."""

    @functools.cache
    def is_ssl(module: str) -> bool:
        return module in settings.ssl_modules or load_recipe(settings, module, None, listing).uses_ssl

    return is_ssl


def with_ssl(target: Target, is_ssl: SslModule) -> Target:
    """One module, one name: an SSL module without a suffix is its OpenSSL build."""
    if target.ssl is not None and not is_ssl(target.module):
        raise WheelTasksError(
            f"{target.module} does not link an SSL library, so -{target.ssl.value} does not apply; SSL suffixes "
            "apply to the modules of SSL_MODULES and to those whose recipe names ${SSL}"
        )
    return dataclasses.replace(target, ssl=implied_ssl(target.ssl, is_ssl(target.module)))


def default_targets(settings: Settings, which: str, is_ssl: SslModule | None = None) -> list[Target]:
    """``all`` / ``core``: each default module; an SSL module without a suffix in both variants.

    ``all`` lists the core modules first, so the others can use their wheels.
    """
    is_ssl = is_ssl or ssl_modules(settings)
    core = settings.core_modules
    modules = tuple(dict.fromkeys((*core, *settings.modules))) if which == "all" else core
    targets: dict[tuple[str, SSL | None], Target] = {}
    for text in modules:
        target = parse_target(text)
        variants = [target.ssl] if target.ssl or not is_ssl(target.module) else [SSL.OPENSSL, SSL.LIBRESSL]
        for ssl in variants:
            targets.setdefault((target.module, ssl), Target(target.module, ssl, target.version, PYALL))
    return list(targets.values())


def parse_targets(settings: Settings, texts: Sequence[str], is_ssl: SslModule) -> tuple[list[Target], bool]:
    """The targets to plan, and whether both kinds are wanted (``all``/``core``)."""
    words = split_targets(texts)
    if not words:
        raise WheelTasksError("no target given: name at least one, e.g. cffi1.15.1-py3.12-amd64, or all/core")
    specials = [w for w in words if w.lower() in DEFAULT_SETS + COMMAND_TARGETS]
    if specials:
        if len(words) > 1:
            raise WheelTasksError(f"{specials[0]!r} must be given alone, not with other targets")
        word = specials[0].lower()
        if word in COMMAND_TARGETS:
            raise WheelTasksError(f"{word!r} is a task of its own: run `inv {word}`")
        return default_targets(settings, word, is_ssl), True
    return [parse_target(w) for w in words], False


def _pythons(settings: Settings, target: Target, newest: Callable[[], str]) -> tuple[str, ...]:
    if target.python == PYALL:
        return tuple(sorted(settings.python_versions, key=Version))
    if target.python:
        return (check_python(target.python, f"target {target}"),)
    return (newest(),)


DependsOf = Callable[[str, SSL | None], tuple[Target, ...]]


def build_mode(settings: Settings, arch: Arch, recipe: Recipe, build_machine: str) -> Mode:
    """Native where the build platform runs the job's platform itself; otherwise cross-compiled
    unless CROSS=never or the recipe says mod_cross=no; otherwise emulated."""
    if runs_natively(arch, build_machine):
        return Mode.NATIVE
    if settings.cross is Cross.NEVER or not recipe.cross:
        return Mode.EMULATED
    return Mode.CROSS


def build_machine(route: Route | None) -> str:
    """The machine that builds a route's jobs: its node's, else this machine's."""
    return route.node.machine if route is not None and route.node.machine else host_machine()


def _mode(settings: Settings, arch: Arch, recipe: Recipe, route: Route | None) -> Mode:
    if route is not None and route.native:
        return Mode.NATIVE  # a node of that platform: neither QEMU nor cross-compilation
    return build_mode(settings, arch, recipe, build_machine(route))


def check_taggable(module: str, version: Version) -> None:
    """A version must fit in a Docker tag and read back the same: no epoch, no local part."""
    if version.epoch or version.local:
        raise WheelTasksError(
            f"{module} {version}: versions with an epoch (N!) or a local part (+...) cannot be written "
            "into an image tag; pin another version"
        )


# One expansion asks for the expansions of its dependencies by yielding them (the
# arguments of a call) and is sent back their wants: the recursion of a dependency chain
# runs on a list, so a chain deeper than Python's recursion limit plans like any other.
_Expansion = Generator["_Call", list[_Want], list[_Want]]
_Call = tuple[Target, tuple[Kind, ...], "tuple[tuple[str, ...], tuple[Arch, ...]] | None", tuple[str, ...]]


def _expand(
    settings: Settings,
    targets: Iterable[Target],
    kinds: tuple[Kind, ...],
    notes: list[str],
    depends_of: DependsOf,
    is_ssl: SslModule,
    newest: Callable[[], str],
) -> list[_Want]:
    """The wants of the targets, each with its dependencies' wants (a recipe's dependency
    builds for the same Python, arch and kind); a cycle of recipes is an error."""

    def expansion(
        target: Target,
        kinds: tuple[Kind, ...],
        inherited: tuple[tuple[str, ...], tuple[Arch, ...]] | None,
        chain: tuple[str, ...],
    ) -> _Expansion:
        target = with_ssl(target, is_ssl)
        label = str(Target(target.module, target.ssl))
        if label in chain:
            raise WheelTasksError(f"dependency cycle in recipes: {' -> '.join((*chain, label))}")
        pythons = _pythons(settings, target, newest) if inherited is None or target.python else inherited[0]
        arches = (target.arch,) if target.arch else (inherited[1] if inherited else settings.arch_list)
        dep_targets = depends_of(target.module, target.ssl)
        wants: list[_Want] = []
        for python in pythons:
            for arch in arches:
                if target.ssl is not None and settings.excluded(arch, target.ssl):
                    notes.append(
                        f"skipped {label} on {arch.name}: {arch.name}:{target.ssl.value} is excluded (setting EXCLUDE)"
                    )
                    continue
                for kind in kinds:
                    deps: list[_Want] = []
                    for dep in dep_targets:
                        deps += yield (dep, (kind,), ((python,), (arch,)), (*chain, label))
                    wants.append(_Want(target.module, target.ssl, target.version, python, arch, kind, tuple(deps)))
        return wants

    found: list[_Want] = []
    for target in targets:
        stack = [expansion(target, kinds, None, ())]
        result: list[_Want] | None = None
        while stack:
            try:
                call = stack[-1].send(result) if result is not None else next(stack[-1])
            except StopIteration as done:
                stack.pop()
                result = done.value
                continue
            stack.append(expansion(*call))
            result = None
        assert result is not None
        found += result
    return found


def _ordered(wants: Iterable[_Want]) -> list[_Want]:
    """Depth-first: each want's dependencies before it; first occurrence wins (on a stack of
    its own, as :func:`_expand`: a deep chain must not meet the recursion limit)."""
    seen: dict[tuple[object, ...], _Want] = {}
    for root in wants:
        stack: list[tuple[_Want, Iterator[_Want]]] = [(root, iter(root.depends))]
        while stack:
            want, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                seen.setdefault(want.key, want)
            elif dep.key not in seen:  # seen: its dependencies are in already (the same, by key)
                stack.append((dep, iter(dep.depends)))
    return list(seen.values())


def _versions(index: VersionSource, wants: Sequence[_Want]) -> dict[tuple[str, str], Version]:
    """Look up every (module, python) that needs a version, concurrently per Python."""
    missing: dict[str, set[str]] = {}
    for want in wants:
        if want.version is None:
            missing.setdefault(want.python, set()).add(want.module)
    found: dict[tuple[str, str], Version] = {}
    for python, modules in missing.items():
        for module, version in index.latest_many(sorted(modules), python).items():
            found[(module, python)] = version
    pinned = {(w.module, w.version, w.python) for w in wants if w.version is not None}
    for module, version, python in sorted(pinned, key=str):
        assert version is not None
        index.check_version(module, version, python)
    return found


def resolve(
    settings: Settings,
    texts: Sequence[str],
    index: VersionSource,
    both: bool = False,
    router: Callable[[str], Route | None] | None = None,
    newest: Callable[[], str] | None = None,
    pin: Callable[[Iterable[tuple[str, Arch]]], Mapping[tuple[str, Arch], str]] | None = None,
    requirements: Sequence[Path] = (),
) -> Plan:
    """The ordered jobs of the targets; ``both`` (and ``all``/``core``) plans both kinds.

    ``requirements`` (-r FILE), beside or instead of targets: each file's closure as pip
    resolves it for each platform and REQUIREMENTS_PYTHONS (else the Python of targets
    without one; requirements.py),
    every distribution a job at its resolved version, after the distributions it needs.

    ``router`` gives each platform's builder and node (buildx.router); without one, jobs
    build on buildx's default builder and "native" means this machine's CPU. ``newest``
    gives the Python of targets without one (asked only when one needs it); without it,
    the newest of PYTHON_VERSIONS. ``pin`` names the builder image of each (Python, platform)
    (by digest: builders.pin_all); without it, images are named by BUILDER_IMAGE's tag.
    """
    listing = functools.cache(recipes_in)  # each recipe folder listed once per plan
    is_ssl = ssl_modules(settings, listing)
    targets, default_set = parse_targets(settings, texts, is_ssl) if split_targets(texts) or not requirements else ([], False)
    kinds = (Kind.SHARED, Kind.NO_SHARED) if both or default_set else settings.kinds
    notes: list[str] = []

    # A dependency is expanded once per Python, arch and kind: read each recipe once.
    @functools.cache
    def recipe_of(module: str, ssl: SSL | None) -> Recipe:
        return load_recipe(settings, module, ssl, listing)

    def depends_of(module: str, ssl: SSL | None) -> tuple[Target, ...]:
        return tuple(parse_target(t) for t in recipe_of(module, ssl).depends)

    newest_once = functools.cache(newest or (lambda: settings.newest_default_python))
    wants = _expand(settings, targets, kinds, notes, depends_of, is_ssl, newest_once)
    closures = [
        (path, closure)
        for path in requirements
        for closure in requirements_mod.resolve_file(settings, path, settings.requirements_pythons or (newest_once(),),
                                                     settings.arch_list)
    ]
    set_wants = [
        (path, closure, kind, _closure_wants(settings, closure, kind, notes, is_ssl))
        for path, closure in closures
        for kind in kinds
    ]
    wants = _ordered([*wants, *(want for *_, of_set in set_wants for want in of_set)])
    versions = _versions(index, wants)

    def version_of(want: _Want) -> Version:
        return want.version if want.version is not None else versions[(want.module, want.python)]

    jobs: dict[tuple[object, ...], Job] = {}
    made: dict[tuple[object, ...], Job] = {}
    routes = {arch.platform: router(arch.platform) for arch in {w.arch for w in wants}} if router is not None else {}
    build_arches = {
        arch: find_arch(build_machine(routes.get(arch.platform))) or arch for arch in {w.arch for w in wants}
    }
    needed = {(w.python, a) for w in wants for a in (w.arch, build_arches[w.arch])}
    pinned = dict(pin(needed)) if pin is not None else {(p, a): settings.builder(p) for p, a in needed}
    for want in wants:  # dependencies come first, so their jobs already exist
        version = version_of(want)
        check_taggable(want.module, version)
        # By key: hashing a Job hashes its dependencies, and theirs, all down the chain.
        depends = tuple({made[d.key].key: made[d.key] for d in want.depends}.values())
        recipe = recipe_of(want.module, want.ssl)
        route = routes.get(want.arch.platform)
        build_arch = build_arches[want.arch]
        job = make_job(
            settings,
            module=want.module,
            ssl=want.ssl,
            version=version,
            python=want.python,
            arch=want.arch,
            kind=want.kind,
            recipe=recipe,
            depends=depends,
            mode=_mode(settings, want.arch, recipe, route),
            route=route,
            builder=pinned[(want.python, want.arch)],
            build_arch=build_arch,
            build_builder=pinned[(want.python, build_arch)],
        )
        made[want.key] = jobs.setdefault(job.key, job)
    core_names = _core_names(settings) if default_set else frozenset()
    core = frozenset(j.key for j in jobs.values() if j.module in core_names)
    decided = {job.key: job for job in sources.decide(settings, tuple(jobs.values()), index.files)}
    sets = tuple(
        WheelSet(path, closure.python, closure.arch, kind, tuple(decided[made[w.key].key] for w in of_set))
        for path, closure, kind, of_set in set_wants
    )
    return Plan(tuple(decided.values()), tuple(dict.fromkeys(notes)), core, sets)


def _closure_wants(
    settings: Settings, closure: requirements_mod.Closure, kind: Kind, notes: list[str], is_ssl: SslModule
) -> list[_Want]:
    """A closure's wants for one kind, each after (and with) the wants of those it needs."""
    made: dict[str, _Want] = {}
    for pinned in closure.pinned:  # dependencies first: a need not made yet closes a cycle
        ssl = implied_ssl(None, is_ssl(pinned.name))
        if ssl is not None and settings.excluded(closure.arch, ssl):
            notes.append(f"skipped {pinned.name} on {closure.arch.name}: {closure.arch.name}:{ssl.value} is excluded "
                         "(setting EXCLUDE)")
            continue
        depends = tuple(made[name] for name in pinned.needs if name in made)
        made[pinned.name] = _Want(pinned.name, ssl, pinned.version, closure.python, closure.arch, kind, depends)
    return list(made.values())


def _core_names(settings: Settings) -> frozenset[str]:
    return frozenset(parse_target(text).module for text in settings.core_modules)
