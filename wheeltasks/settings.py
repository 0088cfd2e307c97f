"""Settings: one frozen object built from invoke configuration < environment < task flags.

Every setting is described once, in :data:`OPTIONS`: its field, its environment variable
and its task flag are derived from that one row, and the type from the field's default
(a ``bool`` is a switch, a ``tuple`` a list, an ``int``/``float`` a number, a ``Path`` a
folder). No other module reads ``os.environ``: tasks build a :class:`Settings` once and
pass it to every step.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import Version

from .errors import WheelTasksError
from .targets import ARCH_NAMES, SSL, Arch, get_arch
from .values import (
    check_alpine_version,
    check_base_url,
    check_builder_image,
    check_ca_bundle,
    check_index_url,
    check_no_control_character,
    check_python,
    coerce,
    default_ca_bundle,
    default_cache_dir,
    is_repository_path,
    parse_registry,
)


class Kind(enum.Enum):
    """Shared wheels are repaired by auditwheel (libraries bundled); no-shared ones are not."""

    SHARED = "shared"
    NO_SHARED = "no-shared"


class Cross(enum.Enum):
    """When a foreign-architecture job compiles natively with a cross toolchain."""

    AUTO = "auto"  # cross-compile unless the recipe says mod_cross=no; fall back to emulation
    ALWAYS = "always"  # cross-compile; a failure is a failure
    NEVER = "never"  # build under emulation (QEMU), as a native builder would


class Reuse(enum.Enum):
    """Whether a job takes a wheel that serves it instead of building one."""

    AUTO = "auto"  # the index's wheel for its platform and Python; another job's pure or abi3 wheel, or the shared kind's build
    NEVER = "never"  # every job builds


# The CPython releases supported upstream on 2026-11-25 (3.10 reached its end of life in
# October 2026; 3.15.0 came out in October 2026), oldest first; the newest is the default
# Python. Move them with PYTHON_VERSIONS (or `python_versions:` in invoke.yaml).
DEFAULT_PYTHONS = ("3.11", "3.12", "3.13", "3.14", "3.15")
DEFAULT_CORE_MODULES = ("pycparser", "cffi", "toml")
# The original system's default modules.
DEFAULT_MODULES = (
    "auditwheel", "cffi", "toml", "pycparser", "bcrypt", "cryptography-openssl", "cryptography-libressl",
    "lxml", "misaka", "mysqlclient", "paramiko-openssl", "paramiko-libressl", "psutil", "psycopg2-binary",
    "PyNaCl", "pyOpenSSL", "python-hosts", "setuptools-rust",
)


@dataclass(frozen=True)
class Repository:
    """Where a kind's wheel images live: a registry host and a repository path on it.

    ``registry`` is empty when no WHEELS_REGISTRY is set (then only the path is known,
    for display and for tags; nothing can be pulled or pushed).
    """

    registry: str
    path: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.path}" if self.registry else self.path

    def image(self, tag: str) -> str:
        return f"{self}:{tag}"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a step may need to know. Build it with :meth:`load`; see :data:`OPTIONS`."""

    # Behaviour switches.
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
    fail_fast: bool = False
    # A CI system runs this (its logs keep every line).
    ci: bool = False
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
    cross: Cross = Cross.AUTO
    reuse: Reuse = Reuse.AUTO
    test_command: str = ""
    image_tag: str = ""
    # How many jobs run at once (0: the build engine's CPU count), and on which builders.
    jobs: int = 0
    builders: tuple[str, ...] = ()
    # Bounds on remote operations.
    remote_timeout: float = 120.0
    max_index_page_mb: int = 64
    max_layer_mb: int = 512
    # What "all", "core", "pyall" and a missing arch mean.
    modules: tuple[str, ...] = DEFAULT_MODULES
    core_modules: tuple[str, ...] = DEFAULT_CORE_MODULES
    python_versions: tuple[str, ...] = DEFAULT_PYTHONS
    requirements_pythons: tuple[str, ...] = ()
    arches: tuple[str, ...] = ARCH_NAMES
    ssl_modules: tuple[str, ...] = ("cryptography",)
    # arch:ssl pairs that are never built.
    exclude: tuple[str, ...] = ("s390x:libressl",)
    # Folders.
    project_dir: Path = Path(".")
    work_dir: Path = Path(".wheeltasks")
    wheels_dir: Path = Path("wheels")
    # inv index: where the simple index is written, and where wheels/ is hosted (if it is).
    index_dir: Path = Path("index")
    index_base_url: str = ""
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
    def newest_default_python(self) -> str:
        """The newest of PYTHON_VERSIONS (builders.newest_builder_python: the newest with a builder image)."""
        return max(self.python_versions, key=Version)

    @property
    def arch_list(self) -> tuple[Arch, ...]:
        return tuple(get_arch(a) for a in self.arches)

    @property
    def registry_host(self) -> str:
        """The registry host of WHEELS_REGISTRY; empty when none is set."""
        return parse_registry(self.wheels_registry)[0] if self.wheels_registry else ""

    def repository(self, kind: Kind) -> Repository:
        """Where the wheel images of a kind go."""
        repo = self.shared_repo if kind is Kind.SHARED else self.no_shared_repo
        if not self.wheels_registry:
            return Repository("", repo)
        host, namespace = parse_registry(self.wheels_registry)
        return Repository(host, f"{namespace}/{repo}")

    def builder(self, python: str) -> str:
        return self.builder_image.format(python=python, alpine=self.alpine_version)

    def excluded(self, arch: Arch, ssl: SSL | None) -> bool:
        return ssl is not None and f"{arch.name}:{ssl.value}" in self.exclude

    @property
    def max_index_page_bytes(self) -> int:
        return self.max_index_page_mb * 1024 * 1024

    @property
    def max_layer_bytes(self) -> int:
        return self.max_layer_mb * 1024 * 1024

    # ---- loading -------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        config: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Merge configuration < environment < flags.

        ``flags`` are keyed by field name; None means "not given".
        """
        env = dict(os.environ if env is None else env)
        if config is not None and not isinstance(config, Mapping):
            raise WheelTasksError(
                f"the wheeltasks configuration (invoke.yaml) must be a mapping of settings, not a {type(config).__name__}"
            )
        # Each source's values are checked as they come, so a bad value is an error even
        # where a later source overrides it.
        values: dict[str, Any] = {}
        for key, value in (config or {}).items():
            name = config_field(str(key))
            values[name] = _coerce(name, value)
        for option in OPTIONS:
            if option.env in env:
                values[option.field] = _coerce(option.field, env[option.env])
        for name, value in (flags or {}).items():
            if value is not None:
                values[name] = _coerce(name, value)
        values.setdefault("pypi_index", env.get("PIP_INDEX_URL", ""))
        values.setdefault("cache_dir", default_cache_dir(env))
        values.setdefault("ca_bundle", default_ca_bundle(env))
        settings = cls(**values)
        project = settings.project_dir.expanduser().resolve()
        settings = dataclasses.replace(
            settings,
            project_dir=project,
            work_dir=project / settings.work_dir.expanduser(),
            wheels_dir=project / settings.wheels_dir.expanduser(),
            index_dir=project / settings.index_dir.expanduser(),
            index_base_url=settings.index_base_url.strip().rstrip("/"),
            scripts_dir=project / settings.scripts_dir.expanduser(),
            cache_dir=settings.cache_dir.expanduser(),
            arches=tuple(a.name for a in settings.arch_list),  # validates and canonicalises
            python_versions=tuple(check_python(p, "PYTHON_VERSIONS") for p in settings.python_versions),
            requirements_pythons=tuple(check_python(p, "REQUIREMENTS_PYTHONS") for p in settings.requirements_pythons),
            wheels_registry=settings.wheels_registry.strip().strip("/"),
        )
        _validate(settings)
        return settings


class Part(enum.Enum):
    """The parts of the work that read settings. Each option says which parts read it, and
    a task offers the flags of the parts it runs (``tasks.py``), so a new setting is one row."""

    PROJECT = "project"  # where the project is: every task
    INDEX = "index"  # version look-ups on the package index
    PLAN = "plan"  # targets -> ordered jobs
    CHECK = "check"  # the index against wheels/ and the registry
    REGISTRY = "registry"  # the wheel images' registry
    RUN = "run"  # how the jobs of a plan run (at once, fail fast, NOOP)
    PULL = "pull"  # the pull-existing step
    BUILD = "build"  # the build step
    REPAIR = "repair"  # the repair and import-check steps
    EXPORT = "export"  # the export step
    PUSH = "push"  # the push step
    ENGINES = "engines"  # the build engines: buildx builders and where each platform builds
    CACHE = "cache"  # the cache of remote look-ups
    SIMPLE_INDEX = "simple index"  # inv index: a static simple index of wheels/


@dataclass(frozen=True)
class Option:
    """One setting: the row every name (field, environment variable, flag) comes from, and
    the parts of the work that read it."""

    field: str
    help: str
    reads: tuple[Part, ...]
    env_name: str = ""  # default: the field in upper case
    flag_name: str | None = None  # default: the field with dashes; "" for no flag (secrets)
    default_text: str = ""  # the default in words, when it is not the field's own default
    maximum: float = math.inf  # the largest value of a number
    config: bool = True  # False: read from the environment only, never from invoke.yaml
    any_word: bool = False  # a switch that any word but a false one turns on (see values.parse_bool)

    @property
    def env(self) -> str:
        return self.env_name or self.field.upper()

    @property
    def flag(self) -> str:
        """The task parameter (invoke shows it with dashes); empty when there is none."""
        return self.field if self.flag_name is None else self.flag_name

    @property
    def default(self) -> Any:
        return _FIELDS[self.field].default

    @property
    def is_switch(self) -> bool:
        return isinstance(self.default, bool)

    def describe_default(self) -> str:
        if self.default_text:
            return self.default_text
        default = self.default
        if isinstance(default, bool):
            return "off"
        if isinstance(default, tuple):
            return " ".join(default) or "none"
        if isinstance(default, enum.Enum):
            return str(default.value)
        return str(default) if str(default) else "unset"


# A Docker tag, with room left for the "-py<python>" a wheel set's tag ends in.
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}")
_P = Part
OPTIONS: tuple[Option, ...] = (
    Option("do_push", "push the built wheel images to WHEELS_REGISTRY", (_P.PUSH,), flag_name="push"),
    Option("no_build", "build nothing; use what earlier builds left in the work folder", (_P.BUILD,)),
    Option("image_tag", "tag of a requirements file's wheel set image (-r FILE), as <tag>-py<python>",
           (_P.PLAN,), default_text="requirements-<hash of the resolved set>"),
    Option("noop", "dry run: resolve and print the plan and the commands; build and push nothing", (_P.RUN,)),
    Option("no_self_pull", "do not pull an existing image of the very target (which would make its build unnecessary)",
           (_P.PULL,)),
    Option("no_pull_wheels", "pull no existing wheels at all (neither the target's nor its dependencies')", (_P.PULL,)),
    Option("wheels_force_pull", "pull existing wheels even when present locally", (_P.PULL,), flag_name="force_pull"),
    Option("build_no_cache", "build without cached layers, pip cache or ccache", (_P.BUILD,), flag_name="no_cache"),
    Option("no_binary", "build everything from source, never a binary wheel from the index", (_P.BUILD,)),
    Option("shared", "build shared wheels (auditwheel-repaired, musllinux_1_2_*); the default kind", (_P.PLAN,)),
    Option("no_shared", "build no-shared wheels (linux_*, linking the system libraries)", (_P.PLAN,)),
    Option("build_both", "build both kinds", (_P.PLAN,), flag_name="both"),
    Option("clean_cache", "drop cached look-ups first (index pages and builder Pythons, kept 24 h)", (_P.INDEX,)),
    Option("force", "let export replace a different file of the same name in wheels/", (_P.EXPORT,),
           env_name="WHEELS_FORCE"),
    Option("fail_fast", "stop the run at the first failed job (else the others go on and the run ends with a table)",
           (_P.RUN,)),
    # CI systems set it (to 1, true or their name): their logs keep every line, so no live lines.
    Option("ci", "set by CI systems: no live lines on the terminal (environment only)", (_P.RUN,), flag_name="",
           config=False, any_word=True),
    Option("pypi_index", "simple index for pip and version look-ups", (_P.INDEX, _P.BUILD),
           default_text="PIP_INDEX_URL, else pip's own"),
    Option("wheels_registry", "registry and namespace of the wheel images: host[:port]/namespace, e.g. ghcr.io/me",
           (_P.PLAN, _P.REGISTRY)),
    Option("shared_repo", "repository of the shared wheel images", (_P.PLAN, _P.REGISTRY)),
    Option("no_shared_repo", "repository of the no-shared wheel images", (_P.PLAN, _P.REGISTRY)),
    Option("registry_username", "registry user (else the credentials of docker login)", (_P.REGISTRY,)),
    Option("registry_password", "registry password or token (environment only, never a flag)", (_P.REGISTRY,),
           flag_name=""),
    Option("builder_image", "builder image template; {python} and {alpine} are filled in",
           (_P.PLAN, _P.BUILD, _P.REPAIR)),
    Option("alpine_version", "Alpine version in the builder template", (_P.PLAN, _P.BUILD, _P.REPAIR)),
    Option(
        "ca_bundle", "CA bundle for pip, apk and cargo in builds, and for look-ups",
        (_P.INDEX, _P.REGISTRY, _P.BUILD, _P.REPAIR), default_text="PIP_CERT, REQUESTS_CA_BUNDLE or SSL_CERT_FILE",
    ),
    Option("cross", "cross-compile foreign-architecture jobs: auto, always or never", (_P.PLAN, _P.BUILD, _P.ENGINES)),
    Option(
        "reuse", "take a wheel that serves a job instead of building it: the index's for its platform and Python "
        "(not with NO_BINARY), another job's pure or abi3 one, a no-shared job its shared job's build: auto or never", (_P.PLAN,),
    ),
    Option(
        "test_command", "a command run after the import check, in the same container on the job's platform, "
        "with the wheels importable ({module} and {version} filled in); a recipe's mod_test replaces it", (_P.REPAIR,),
        default_text="none",
    ),
    Option("jobs", "how many jobs run at once", (_P.RUN,), default_text="the build engine's CPU count"),
    Option(
        "builders", "buildx builder per platform (linux/arm64=arm-node,linux/amd64=default), or one builder's name",
        (_P.RUN, _P.ENGINES), default_text="buildx's current builder",
    ),
    # At most a day: a deadline goes to the operating system's timers, which refuse 1e308.
    Option(
        "remote_timeout",
        "seconds one remote operation (an index page, a registry request, a whole tag listing, "
        "a credential helper) may take in all",
        (_P.INDEX, _P.REGISTRY),
        maximum=24 * 3600.0,
    ),
    Option("max_index_page_mb", "largest index page read, in MiB", (_P.INDEX,)),
    Option("max_layer_mb", "largest wheel image layer pulled, in MiB (unpacked)", (_P.REGISTRY,)),
    Option("modules", "the modules of all/check/update", (_P.PLAN, _P.CHECK), env_name="DEFAULT_MODULES"),
    Option("core_modules", "the modules of core (built first: others depend on them)", (_P.PLAN, _P.CHECK)),
    Option("python_versions", "default Python versions (oldest first; the newest is the default Python)",
           (_P.PLAN, _P.CHECK)),
    Option("requirements_pythons", "the Pythons a requirements file (-r FILE) is resolved and built for", (_P.PLAN,),
           default_text="the Python of a target without one"),
    Option("arches", "architectures of a target without one", (_P.PLAN, _P.ENGINES)),
    Option("ssl_modules", "modules that link an SSL library (they take -openssl/-libressl)", (_P.PLAN, _P.CHECK)),
    Option("exclude", "arch:ssl pairs that are never built", (_P.PLAN,)),
    Option("project_dir", "folder the relative folders are relative to", (_P.PROJECT,),
           env_name="WHEELTASKS_PROJECT_DIR"),
    Option("work_dir", "work folders of the jobs", (_P.PLAN,), env_name="WHEELTASKS_WORK_DIR"),
    Option("wheels_dir", "where wheels are exported (wheels/<arch>/)", (_P.EXPORT, _P.CHECK, _P.SIMPLE_INDEX)),
    Option("index_dir", "where inv index writes the simple index of wheels/ (serve it as .../simple/)",
           (_P.SIMPLE_INDEX,)),
    Option(
        "index_base_url", "http(s) URL where wheels/ itself is served: the index links URL/<arch>/<file> "
        "and holds no wheels", (_P.SIMPLE_INDEX,), flag_name="base_url",
        default_text="unset: the index holds the wheels",
    ),
    Option(
        "cache_dir", "cache of remote look-ups", (_P.INDEX, _P.CACHE), env_name="WHEELTASKS_CACHE_DIR",
        default_text="$XDG_CACHE_HOME/wheeltasks or ~/.cache/wheeltasks",
    ),
    Option("scripts_dir", "this project's recipes (over the packaged ones)", (_P.PLAN,)),
)

_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}
OPTION_BY_FIELD: dict[str, Option] = {o.field: o for o in OPTIONS}


def config_field(key: str) -> str:
    """The field a configuration key names (``do-push`` = ``do_push``); did-you-mean otherwise."""
    name = key.replace("-", "_").lower()
    if name in OPTION_BY_FIELD and not OPTION_BY_FIELD[name].config:
        raise WheelTasksError(
            f"the wheeltasks configuration key {key!r} is read from the environment only ({OPTION_BY_FIELD[name].env}): "
            "remove it from the configuration"
        )
    if name in OPTION_BY_FIELD:
        return name
    close = difflib.get_close_matches(name, OPTION_BY_FIELD, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise WheelTasksError(f"unknown wheeltasks configuration key {key!r}: {hint}see `inv --help build` for the settings")


def options_for(fields: Iterable[str]) -> tuple[Option, ...]:
    wanted = set(fields)
    unknown = wanted - set(OPTION_BY_FIELD)
    if unknown:
        raise ValueError(f"no such settings: {sorted(unknown)}")
    return tuple(o for o in OPTIONS if o.field in wanted)


def options_read_by(parts: Iterable[Part]) -> tuple[Option, ...]:
    """The options that any of ``parts`` reads, in the table's order."""
    wanted = frozenset(parts)
    return tuple(o for o in OPTIONS if wanted.intersection(o.reads))


def _coerce(name: str, value: Any) -> Any:
    option = OPTION_BY_FIELD[name]
    return coerce(value, _FIELDS[name].default, option.env, maximum=option.maximum, any_word=option.any_word)


def _validate(settings: Settings) -> None:
    """What a bad value would otherwise turn into a traceback later: say it now."""
    for option in OPTIONS:
        value = getattr(settings, option.field)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, str):
                check_no_control_character(option.env, item)
    if settings.pypi_index:
        check_index_url(settings.pypi_index)
    if settings.index_base_url:
        check_base_url(settings.index_base_url)
    if settings.wheels_registry:
        parse_registry(settings.wheels_registry)
    for repo in (settings.shared_repo, settings.no_shared_repo):
        if not is_repository_path(repo):
            raise WheelTasksError(f"repository name {repo!r} must be lower-case letters, digits and . _ - (SHARED_REPO/NO_SHARED_REPO)")
    if settings.image_tag and not IMAGE_TAG.fullmatch(settings.image_tag):
        raise WheelTasksError(
            f"IMAGE_TAG {settings.image_tag!r} is not a Docker tag: letters, digits, '_', '.' and '-', at most 100, "
            "not starting with '.' or '-'"
        )
    check_alpine_version(settings.alpine_version)
    check_builder_image(settings.builder_image, settings.alpine_version)
    if not settings.python_versions:
        raise WheelTasksError("PYTHON_VERSIONS is empty: name at least one Python version, e.g. 3.12")
    if not settings.arches:
        raise WheelTasksError("ARCHES is empty: name at least one architecture, e.g. amd64")
    for pair in settings.exclude:
        arch, sep, ssl = pair.partition(":")
        if not sep or ssl not in {s.value for s in SSL}:
            raise WheelTasksError(f"EXCLUDE entry {pair!r} is not arch:ssl (e.g. s390x:libressl)")
        get_arch(arch)
    for name in ("wheels_dir", "work_dir", "cache_dir", "index_dir"):
        path: Path = getattr(settings, name)
        if path.exists() and not path.is_dir():
            raise WheelTasksError(f"{OPTION_BY_FIELD[name].env}={path} is a file, not a folder: remove it or choose another")
    if settings.ca_bundle:
        check_ca_bundle(Path(settings.ca_bundle).expanduser())
