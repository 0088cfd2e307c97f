"""A Job: one fully resolved unit of work."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from .pages import DistFile
from .recipes import Recipe
from .settings import Kind, Repository, Settings
from .targets import DEFAULT_SSL, SSL, Arch, Target, format_target, image_tag, is_exported, module_label
from .workdir import WorkDir

if TYPE_CHECKING:  # values made by the engine clients; the model does not import them
    from .docker_engine import Endpoint
    from .engines import Route

NO_RECIPE = Recipe()


class Source(str, enum.Enum):
    """Where a job's wheel comes from (decided by the plan: ``sources.py``)."""

    BUILD = "build"
    REUSE = "reuse"  # another job's build, where its wheel serves this job (pure; abi3)
    INDEX = "index"  # a wheel on the index that the job's platform and Python accept


class Mode(enum.Enum):
    """How a job's code is compiled."""

    NATIVE = "native"  # the build platform runs the job's platform itself
    CROSS = "cross"  # compiled on the build platform for the job's with a cross toolchain
    EMULATED = "emulated"  # the job's platform emulated (QEMU)


@dataclass(frozen=True, kw_only=True)
class Job:
    """(module, ssl, version, python, arch, kind), plus what follows from the settings.

    ``recipe`` is the job's recipe, looked up once by the planner; ``depends`` are the
    jobs (same Python, arch and kind) of the modules its recipe's ``mod_depends`` names,
    which the plan puts before it.
    """

    module: str
    ssl: SSL | None
    version: Version
    python: str
    arch: Arch
    kind: Kind
    repository: Repository
    work: WorkDir
    recipe: Recipe = NO_RECIPE
    depends: tuple[Job, ...] = ()
    mode: Mode = Mode.NATIVE
    # The buildx builder, node and engine of the job's platform (None: buildx's default).
    route: Route | None = None
    # The builder image of the job's platform, by digest where the registry told (else its
    # tag), and the build platform's (where a cross build runs), pinned by the plan.
    builder: str = ""
    build_arch: Arch | None = None
    build_builder: str = ""
    # Where its wheel comes from: built, another job's (``provider``), or the index's file.
    source: Source = Source.BUILD
    provider: Job | None = None
    index_file: DistFile | None = None
    source_why: str = ""  # the evidence, in words ("the index has a pure wheel", ...)

    @property
    def label(self) -> str:
        """The module as written in targets: ``cryptography-openssl``."""
        return module_label(self.module, self.ssl)

    @property
    def ssl_library(self) -> SSL:
        return self.ssl or DEFAULT_SSL

    # target, tag and key are asked thousands of times in a plan of `all`: computed once
    # (a cached_property writes the instance's __dict__, which a frozen dataclass allows).
    @functools.cached_property
    def target(self) -> str:
        return format_target(Target(self.module, self.ssl, self.version, self.python, self.arch))

    @functools.cached_property
    def tag(self) -> str:
        """The published multi-platform tag: ``cffi1.15.1-py3.12``."""
        return image_tag(self.module, self.ssl, self.version, self.python)

    @property
    def legacy_tag(self) -> str:
        """The per-arch tag of the legacy form: ``cffi1.15.1-py3.12-armv7``."""
        return image_tag(self.module, self.ssl, self.version, self.python, self.arch)

    @property
    def image(self) -> str:
        return self.repository.image(self.tag)

    @property
    def platform(self) -> str:
        return self.arch.platform

    @property
    def exports(self) -> bool:
        """Whether the job's wheels are written to ``wheels/`` (:func:`~wheeltasks.targets.is_exported`)."""
        return is_exported(self.ssl)

    @property
    def engine(self) -> Endpoint | None:
        """The Docker engine of the job's node (None: the default engine)."""
        return self.route.engine if self.route is not None else None

    @functools.cached_property
    def key(self) -> tuple[str, str, Kind]:
        """What makes a job unique in a plan: its tag, arch and kind."""
        return (self.tag, self.arch.name, self.kind)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "module": self.module,
            "ssl": self.ssl.value if self.ssl else None,
            "version": str(self.version),
            "python": self.python,
            "arch": self.arch.name,
            "platform": self.platform,
            "kind": self.kind.value,
            "mode": self.mode.value,
            "node": self.route.to_json() if self.route is not None else None,
            "builder": self.builder,
            "build_platform": self.build_arch.platform if self.build_arch is not None else None,
            "build_builder": self.build_builder,
            "source": self.source.value,
            "reuse_of": self.provider.target if self.provider is not None else None,
            "index_file": self.index_file.filename if self.index_file is not None else None,
            "source_why": self.source_why or None,
            "tag": self.tag,
            "repository": str(self.repository),
            "image": self.image,
            "recipe": str(self.recipe.path) if self.recipe.path else None,
            "apk": list(self.recipe.apk),
            "depends": [dep.tag for dep in self.depends],
            "work_dir": str(self.work.root),
        }


def make_job(
    settings: Settings,
    *,
    module: str,
    ssl: SSL | None = None,
    version: Version,
    python: str,
    arch: Arch,
    kind: Kind,
    recipe: Recipe = NO_RECIPE,
    depends: tuple[Job, ...] = (),
    mode: Mode = Mode.NATIVE,
    route: Route | None = None,
    builder: str = "",
    build_arch: Arch | None = None,
    build_builder: str = "",
) -> Job:
    tag = image_tag(module, ssl, version, python)
    return Job(
        module=module,
        ssl=ssl,
        version=version,
        python=python,
        arch=arch,
        kind=kind,
        repository=settings.repository(kind),
        work=WorkDir(settings.work_dir / kind.value / tag / arch.name),
        recipe=recipe,
        depends=depends,
        mode=mode,
        route=route,
        builder=builder or settings.builder(python),
        build_arch=build_arch,
        build_builder=build_builder or settings.builder(python),
    )
