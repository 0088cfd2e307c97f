"""A Job: one fully resolved unit of work, and where its files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from .settings import Kind, Repository, Settings
from .targets import SSL, Arch, Target, format_target, image_tag, module_label


@dataclass(frozen=True, kw_only=True)
class Job:
    """(module, ssl, version, python, arch, kind), plus what follows from the settings.

    ``depends`` holds the published tags (``cffi1.17.1-py3.12``) of the jobs this one
    needs first (its recipe's ``mod_depends``), in the same repository.
    """

    module: str
    ssl: SSL | None
    version: Version
    python: str
    arch: Arch
    kind: Kind
    repository: Repository
    work_dir: Path
    depends: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The module as written in targets: ``cryptography-openssl``."""
        return module_label(self.module, self.ssl)

    @property
    def target(self) -> str:
        return format_target(Target(self.module, self.ssl, self.version, self.python, self.arch))

    @property
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
        """Only default-SSL (OpenSSL or no SSL) builds are written to ``wheels/``."""
        return self.ssl in (None, SSL.OPENSSL)

    # Folders inside the work folder, one per step's output.
    @property
    def built_dir(self) -> Path:
        return self.work_dir / "built"

    @property
    def repaired_dir(self) -> Path:
        return self.work_dir / "repaired"

    @property
    def imports_dir(self) -> Path:
        """Wheels of dependencies pulled from wheel images, offered to pip first."""
        return self.work_dir / "imports"

    @property
    def pulled_dir(self) -> Path:
        """The job's own wheels pulled from an existing image (then no build is needed)."""
        return self.work_dir / "pulled"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "build.log"

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
            "tag": self.tag,
            "repository": str(self.repository),
            "image": self.image,
            "depends": list(self.depends),
            "work_dir": str(self.work_dir),
        }


def wheels_in(folder: Path) -> list[Path]:
    """The wheels in a folder, sorted; none when it does not exist."""
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def result_wheels(job: Job) -> list[Path]:
    """What the job produced: repaired wheels, else those pulled from its own image.

    The pipeline keeps at most one of the two: a pull drops an older build's, a build
    drops older pulled ones.
    """
    return wheels_in(job.repaired_dir) or wheels_in(job.pulled_dir)


def make_job(
    settings: Settings,
    *,
    module: str,
    ssl: SSL | None = None,
    version: Version,
    python: str,
    arch: Arch,
    kind: Kind,
    depends: tuple[str, ...] = (),
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
        work_dir=settings.work_dir / kind.value / tag / arch.name,
        depends=depends,
    )
