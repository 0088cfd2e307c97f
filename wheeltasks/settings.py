"""Settings: one frozen object built from invoke configuration < environment < task flags.

No other module reads ``os.environ``: tasks build a :class:`Settings` once and pass it
to every step.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import WheelTasksError
from .targets import SSL, Arch, get_arch


class Kind(enum.Enum):
    """Shared wheels are repaired by auditwheel (libraries bundled); no-shared ones are not."""

    SHARED = "shared"
    NO_SHARED = "no-shared"


TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "n", "f", ""})


def parse_bool(value: object, name: str = "value") -> bool:
    """The usual truthy spellings, any case; false for false/0/empty; an error otherwise."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise WheelTasksError(f"{name}={value!r} is neither true (1/true/yes/on) nor false (0/false/no/off/empty)")


def parse_list(value: object) -> tuple[str, ...]:
    """A list from config (a list) or from text (comma or whitespace separated)."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v for v in re.split(r"[\s,]+", str(value)) if v)


def _pip_default_index() -> str:
    # The index pip itself uses when nothing is configured; asked from pip so this
    # project never hard-codes a host (pip is present wherever Python packaging is).
    try:
        from pip._internal.models.index import PyPI
    except ImportError as exc:  # pragma: no cover - pip is a dependency of every venv
        raise WheelTasksError("PYPI_INDEX is not set and pip is not installed to tell the default index") from exc
    return str(PyPI.simple_url)


def default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "wheeltasks"


def default_ca_bundle(env: Mapping[str, str]) -> str:
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if env.get(name):
            return env[name]
    return ""


# Current CPython releases (newest last); configurable with PYTHON_VERSIONS.
DEFAULT_PYTHONS = ("3.11", "3.12", "3.13", "3.14")
DEFAULT_CORE_MODULES = ("pycparser", "cffi", "toml")
DEFAULT_MODULES = (
    "pycparser", "cffi", "toml", "bcrypt", "pynacl", "cryptography", "paramiko",
    "psutil", "pyyaml", "markupsafe", "msgpack", "charset-normalizer", "ruamel-yaml-clib",
)


@dataclass(frozen=True)
class Settings:
    """Everything a step may need to know. Build it with :meth:`load`."""

    # Behaviour switches (SPEC.md's table).
    do_push: bool = False
    no_build: bool = False
    noop: bool = False
    no_self_pull: bool = False
    no_pull_wheels: bool = False
    wheels_force_pull: bool = False
    build_no_cache: bool = False
    no_binary: bool = False
    shared: bool = False
    no_shared: bool = False
    build_both: bool = False
    clean_cache: bool = False
    force: bool = False
    # Where things come from and go to.
    pypi_index: str = ""
    wheels_registry: str = ""
    shared_repo: str = "python-musl-wheels"
    no_shared_repo: str = "python-alpine-wheels"
    registry_username: str = ""
    registry_password: str = field(default="", repr=False)
    builder_image: str = "python:{python}-alpine{alpine}"
    alpine_version: str = "3.22"
    ca_bundle: str = ""
    # What "all", "core", "pyall" and a missing arch mean.
    modules: tuple[str, ...] = DEFAULT_MODULES
    core_modules: tuple[str, ...] = DEFAULT_CORE_MODULES
    python_versions: tuple[str, ...] = DEFAULT_PYTHONS
    arches: tuple[str, ...] = ("amd64", "arm64v8", "armv7", "armv6", "i386", "ppc64le", "s390x", "riscv64")
    ssl_modules: tuple[str, ...] = ("cryptography",)
    # arch:ssl pairs that are never built.
    exclude: tuple[str, ...] = ("s390x:libressl",)
    # Folders.
    project_dir: Path = Path(".")
    work_dir: Path = Path(".wheeltasks")
    wheels_dir: Path = Path("wheels")
    cache_dir: Path = Path("~/.cache/wheeltasks")
    scripts_dir: Path = Path("scripts")

    # ---- derived -------------------------------------------------------------------

    @property
    def kinds(self) -> tuple[Kind, ...]:
        if self.build_both or (self.shared and self.no_shared):
            return (Kind.SHARED, Kind.NO_SHARED)
        if self.no_shared:
            return (Kind.NO_SHARED,)
        return (Kind.SHARED,)

    @property
    def arch_list(self) -> tuple[Arch, ...]:
        return tuple(get_arch(a) for a in self.arches)

    def repository(self, kind: Kind) -> str:
        """``<registry>/<repo>`` for a kind (just ``<repo>`` when no registry is set)."""
        repo = self.shared_repo if kind is Kind.SHARED else self.no_shared_repo
        return f"{self.wheels_registry.rstrip('/')}/{repo}" if self.wheels_registry else repo

    def builder(self, python: str) -> str:
        return self.builder_image.format(python=python, alpine=self.alpine_version)

    def excluded(self, arch: Arch, ssl: SSL | None) -> bool:
        return ssl is not None and f"{arch.name}:{ssl.value}" in self.exclude

    # ---- loading -------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge configuration < environment < flags (None flags are "not given")."""
        env = dict(os.environ if env is None else env)
        merged: dict[str, Any] = {}
        for source, origin in ((config or {}), "configuration"), (_from_env(env), "environment"):
            for key, value in source.items():
                name = key.replace("-", "_").lower()
                if name not in _FIELDS:
                    if origin == "configuration":
                        raise WheelTasksError(
                            f"unknown wheeltasks configuration key {key!r}; known keys: {', '.join(sorted(_FIELDS))}"
                        )
                    continue
                merged[name] = value
        for key, value in (flags or {}).items():
            if value is not None:
                merged[key.replace("-", "_")] = value
        values = {name: _coerce(name, value) for name, value in merged.items()}
        values.setdefault("pypi_index", env.get("PIP_INDEX_URL") or _pip_default_index())
        values.setdefault("cache_dir", default_cache_dir(env))
        values.setdefault("ca_bundle", default_ca_bundle(env))
        settings = cls(**values)
        project = settings.project_dir.expanduser().resolve()
        return dataclasses.replace(
            settings,
            project_dir=project,
            work_dir=project / settings.work_dir.expanduser(),
            wheels_dir=project / settings.wheels_dir.expanduser(),
            scripts_dir=project / settings.scripts_dir.expanduser(),
            cache_dir=settings.cache_dir.expanduser(),
            arches=tuple(a.name for a in settings.arch_list),  # validates and canonicalises
        )


_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}

# Environment variable for each field (the SPEC.md names; others are the upper-case field).
ENV_NAMES: dict[str, str] = {name: name.upper() for name in _FIELDS}
ENV_NAMES.update(
    modules="DEFAULT_MODULES",
    core_modules="CORE_MODULES",
    python_versions="PYTHON_VERSIONS",
    registry_username="REGISTRY_USERNAME",
    registry_password="REGISTRY_PASSWORD",
    project_dir="WHEELTASKS_PROJECT_DIR",
    work_dir="WHEELTASKS_WORK_DIR",
    cache_dir="WHEELTASKS_CACHE_DIR",
    force="WHEELS_FORCE",
)


def _from_env(env: Mapping[str, str]) -> dict[str, str]:
    return {name: env[var] for name, var in ENV_NAMES.items() if var in env}


def _coerce(name: str, value: Any) -> Any:
    default = _FIELDS[name].default
    label = ENV_NAMES[name]
    if isinstance(default, bool):
        return parse_bool(value, label)
    if isinstance(default, tuple):
        return parse_list(value)
    if isinstance(default, Path):
        return Path(str(value))
    return str(value)
