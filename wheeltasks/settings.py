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
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from .errors import WheelTasksError
from .imagenames import DOCKER_HUB, split_host
from .targets import ARCH_NAMES, SSL, Arch, get_arch
from .urls import NOT_HTTP, ambiguity, http_url_problem, redact


class Kind(enum.Enum):
    """Shared wheels are repaired by auditwheel (libraries bundled); no-shared ones are not."""

    SHARED = "shared"
    NO_SHARED = "no-shared"


class Cross(enum.Enum):
    """When a foreign-architecture job compiles natively with a cross toolchain."""

    AUTO = "auto"  # cross-compile unless the recipe says mod_cross=no; fall back to emulation
    ALWAYS = "always"  # cross-compile; a failure is a failure
    NEVER = "never"  # build under emulation (QEMU), as a native builder would


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


def default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "wheeltasks"


def default_ca_bundle(env: Mapping[str, str]) -> str:
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if env.get(name):
            return env[name]
    return ""


# The CPython releases supported upstream on 2026-11-25 (3.10 reached its end of life in
# October 2026; 3.15.0 came out in October 2026), oldest first; the newest is the default
# Python. Move them with PYTHON_VERSIONS (or `python_versions:` in invoke.yaml).
DEFAULT_PYTHONS = ("3.11", "3.12", "3.13", "3.14", "3.15")
# The newest CPython minor a builder image can exist for (the one in development).
NEWEST_KNOWN_PYTHON = Version("3.16")
OLDEST_KNOWN_PYTHON = Version("3.6")
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


_HOST_RE = re.compile(
    r"(?:localhost|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)"
    r"(?::(?P<port>\d{1,5}))?"
)
# What may stand in an image tag (Docker's tag grammar, which also allows an empty word here:
# the template python:{python}-alpine{alpine} then names python:3.12-alpine).
_TAG_WORD_RE = re.compile(r"[A-Za-z0-9_.-]{0,128}")
# A path component of a repository name (OCI distribution spec).
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")


def parse_registry(text: str) -> tuple[str, str]:
    """``host[:port]/namespace`` (or a Docker Hub ``namespace``) -> (host, namespace).

    The first part is a host when it holds a ``.`` or ``:`` or is ``localhost``, as in
    Docker's image names. Credentials (``user:password@host``) are refused, and never
    echoed: they belong in REGISTRY_USERNAME/REGISTRY_PASSWORD or ``docker login``.
    """
    value = text.strip().strip("/")
    if "@" in value:
        raise WheelTasksError(
            "WHEELS_REGISTRY must not hold credentials (user:password@host): "
            "set REGISTRY_USERNAME and REGISTRY_PASSWORD, or run docker login"
        )
    shape = "host[:port]/namespace, e.g. ghcr.io/me or 127.0.0.1:5000/me"
    if "://" in value:
        raise WheelTasksError(f"WHEELS_REGISTRY={text!r} is a URL; write it as {shape} (no scheme)")
    host, namespace = split_host(value)
    if host != DOCKER_HUB or value.startswith(DOCKER_HUB + "/"):
        m = _HOST_RE.fullmatch(host)
        if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
            raise WheelTasksError(f"WHEELS_REGISTRY={text!r}: {host!r} is not a valid host[:port]; write {shape}")
    if not namespace or not all(_PATH_COMPONENT_RE.fullmatch(part) for part in namespace.split("/")):
        raise WheelTasksError(
            f"WHEELS_REGISTRY={text!r} is not {shape}: the namespace needs lower-case letters, digits and . _ -"
        )
    return host, namespace


def check_index_url(url: str) -> None:
    """An index must be an http(s) URL with a host (and a valid port) that urllib, requests and
    pip all read the same way, with no query: pip appends the project to the path.

    Every message shows the URL redacted (see :mod:`wheeltasks.urls`), never its secrets.
    """
    shown = redact(url)
    reason = ambiguity(url)
    if reason:
        raise WheelTasksError(f"PYPI_INDEX={shown!r} cannot be split into credentials and host: {reason}")
    problem = http_url_problem(url)
    if problem == NOT_HTTP:
        raise WheelTasksError(
            f"PYPI_INDEX={shown!r} is not an http(s) URL of a simple index (like https://host/simple/)"
        )
    if problem:
        raise WheelTasksError(f"PYPI_INDEX={shown!r} is not a usable URL: {problem}")
    if "?" in url or "#" in url:
        raise WheelTasksError(
            f"PYPI_INDEX={shown!r} has a query or fragment (?... or #...), which a simple index cannot have "
            "(pip appends the project to the path); put a token in the credentials instead "
            "(https://__token__:TOKEN@host/simple/)"
        )


def check_base_url(url: str) -> None:
    """INDEX_BASE_URL: an http(s) URL that the index pages can name files under, so no
    credentials (the pages are published), no query or fragment (a file name is appended)."""
    shown = redact(url)
    problem = http_url_problem(url)
    if problem == NOT_HTTP:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} is not an http(s) URL (like https://host/wheels) of where wheels/ is served"
        )
    if problem:
        raise WheelTasksError(f"INDEX_BASE_URL={shown!r} is not a usable URL: {problem}")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} holds credentials, which the index pages would publish: remove them"
        )
    if "?" in url or "#" in url:
        raise WheelTasksError(
            f"INDEX_BASE_URL={shown!r} has a query or fragment (?... or #...): the index appends <arch>/<file> "
            "to its path, so give the folder's URL alone"
        )


def check_python(text: str, what: str) -> str:
    """A ``major.minor`` CPython version that a builder image can exist for."""
    try:
        version = Version(text)
    except InvalidVersion:
        version = None
    if version is None or len(version.release) != 2 or version.pre or version.post or version.dev or version.local:
        raise WheelTasksError(f"{what}: {text!r} is not a Python version like 3.12")
    if not OLDEST_KNOWN_PYTHON <= version <= NEWEST_KNOWN_PYTHON:
        raise WheelTasksError(
            f"{what}: there is no CPython {text} to build with (known: {OLDEST_KNOWN_PYTHON} to {NEWEST_KNOWN_PYTHON})"
        )
    return f"{version.major}.{version.minor}"


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
            wheels_registry=settings.wheels_registry.strip().strip("/"),
        )
        _validate(settings)
        return settings


@dataclass(frozen=True)
class Option:
    """One setting: the row every name (field, environment variable, flag) comes from."""

    field: str
    help: str
    env_name: str = ""  # default: the field in upper case
    flag_name: str | None = None  # default: the field with dashes; "" for no flag (secrets)
    default_text: str = ""  # the default in words, when it is not the field's own default
    maximum: float = math.inf  # the largest value of a number

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


OPTIONS: tuple[Option, ...] = (
    Option("do_push", "push the built wheel images to WHEELS_REGISTRY", flag_name="push"),
    Option("no_build", "build nothing; use what earlier builds left in the work folder"),
    Option("noop", "dry run: resolve and print the plan and the commands; build and push nothing"),
    Option("no_self_pull", "do not pull an existing image of the very target (which would make its build unnecessary)"),
    Option("no_pull_wheels", "pull no existing wheels at all (neither the target's nor its dependencies')"),
    Option("wheels_force_pull", "pull existing wheels even when present locally", flag_name="force_pull"),
    Option("build_no_cache", "build without cached layers, pip cache or ccache", flag_name="no_cache"),
    Option("no_binary", "build everything from source, never a binary wheel from the index"),
    Option("shared", "build shared wheels (auditwheel-repaired, musllinux_1_2_*); the default kind"),
    Option("no_shared", "build no-shared wheels (linux_*, linking the system libraries)"),
    Option("build_both", "build both kinds", flag_name="both"),
    Option("clean_cache", "drop cached look-ups first (index pages and builder Pythons, kept 24 h)"),
    Option("force", "let export replace a different file of the same name in wheels/", env_name="WHEELS_FORCE"),
    Option("fail_fast", "stop the run at the first failed job (else the others go on and the run ends with a table)"),
    Option("pypi_index", "simple index for pip and version look-ups", default_text="PIP_INDEX_URL, else pip's own"),
    Option("wheels_registry", "registry and namespace of the wheel images: host[:port]/namespace, e.g. ghcr.io/me"),
    Option("shared_repo", "repository of the shared wheel images"),
    Option("no_shared_repo", "repository of the no-shared wheel images"),
    Option("registry_username", "registry user (else the credentials of docker login)"),
    Option("registry_password", "registry password or token (environment only, never a flag)", flag_name=""),
    Option("builder_image", "builder image template; {python} and {alpine} are filled in"),
    Option("alpine_version", "Alpine version in the builder template"),
    Option(
        "ca_bundle", "CA bundle for pip, apk and cargo in builds, and for look-ups",
        default_text="PIP_CERT, REQUESTS_CA_BUNDLE or SSL_CERT_FILE",
    ),
    Option("cross", "cross-compile foreign-architecture jobs: auto, always or never"),
    Option("jobs", "how many jobs run at once", default_text="the build engine's CPU count"),
    Option(
        "builders", "buildx builder per platform (linux/arm64=arm-node,linux/amd64=default), or one builder's name",
        default_text="buildx's current builder",
    ),
    # At most a day: a deadline goes to the operating system's timers, which refuse 1e308.
    Option(
        "remote_timeout",
        "seconds one remote operation (an index page, a registry request, a whole tag listing, "
        "a credential helper) may take in all",
        maximum=24 * 3600.0,
    ),
    Option("max_index_page_mb", "largest index page read, in MiB"),
    Option("max_layer_mb", "largest wheel image layer pulled, in MiB (unpacked)"),
    Option("modules", "the modules of all/check/update", env_name="DEFAULT_MODULES"),
    Option("core_modules", "the modules of core (built first: others depend on them)"),
    Option("python_versions", "default Python versions (oldest first; the newest is the default Python)"),
    Option("arches", "architectures of a target without one"),
    Option("ssl_modules", "modules that link an SSL library (they take -openssl/-libressl)"),
    Option("exclude", "arch:ssl pairs that are never built"),
    Option("project_dir", "folder the relative folders are relative to", env_name="WHEELTASKS_PROJECT_DIR"),
    Option("work_dir", "work folders of the jobs", env_name="WHEELTASKS_WORK_DIR"),
    Option("wheels_dir", "where wheels are exported (wheels/<arch>/)"),
    Option("index_dir", "where inv index writes the simple index of wheels/ (serve it as .../simple/)"),
    Option(
        "index_base_url", "http(s) URL where wheels/ itself is served: the index links URL/<arch>/<file> "
        "and holds no wheels", flag_name="base_url", default_text="unset: the index holds the wheels",
    ),
    Option(
        "cache_dir", "cache of remote look-ups", env_name="WHEELTASKS_CACHE_DIR",
        default_text="$XDG_CACHE_HOME/wheeltasks or ~/.cache/wheeltasks",
    ),
    Option("scripts_dir", "this project's recipes (over the packaged ones)"),
)

_FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(Settings)}
OPTION_BY_FIELD: dict[str, Option] = {o.field: o for o in OPTIONS}


def config_field(key: str) -> str:
    """The field a configuration key names (``do-push`` = ``do_push``); did-you-mean otherwise."""
    name = key.replace("-", "_").lower()
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


def _coerce(name: str, value: Any) -> Any:
    default = _FIELDS[name].default
    label = OPTION_BY_FIELD[name].env
    if isinstance(default, bool):
        return parse_bool(value, label)
    if isinstance(default, tuple):
        if isinstance(value, Mapping):
            raise WheelTasksError(f"{label} must be a list, not a mapping")
        return parse_list(value)
    if isinstance(value, (Mapping, list, tuple)):
        raise WheelTasksError(f"{label} must be a single value, not a {type(value).__name__}")
    if isinstance(default, Path):
        return Path(str(value))
    if isinstance(default, enum.Enum):
        try:
            return type(default)(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(str(m.value) for m in type(default))
            raise WheelTasksError(f"{label}={value!r} is not one of: {choices}") from None
    if isinstance(default, (int, float)):
        number = _number(value, type(default), label)
        if not math.isfinite(number) or number <= 0:
            raise WheelTasksError(f"{label}={value!r} must be a finite number greater than 0")
        maximum = OPTION_BY_FIELD[name].maximum
        if number > maximum:
            raise WheelTasksError(f"{label}={value!r} is more than {maximum:g}, the largest it may be")
        return number
    return str(value)


def _number(value: Any, kind: type[int] | type[float], label: str) -> int | float:
    if isinstance(value, bool):
        raise WheelTasksError(f"{label}={value!r} is not a number")
    try:
        return kind(str(value).strip())
    except (ValueError, OverflowError):
        raise WheelTasksError(f"{label}={value!r} is not {'a whole number' if kind is int else 'a number'}") from None


def _validate(settings: Settings) -> None:
    """What a bad value would otherwise turn into a traceback later: say it now."""
    _check_control_characters(settings)
    if settings.pypi_index:
        check_index_url(settings.pypi_index)
    if settings.index_base_url:
        check_base_url(settings.index_base_url)
    if settings.wheels_registry:
        parse_registry(settings.wheels_registry)
    for repo in (settings.shared_repo, settings.no_shared_repo):
        if not all(_PATH_COMPONENT_RE.fullmatch(part) for part in repo.split("/")):
            raise WheelTasksError(f"repository name {repo!r} must be lower-case letters, digits and . _ - (SHARED_REPO/NO_SHARED_REPO)")
    if not _TAG_WORD_RE.fullmatch(settings.alpine_version):
        raise WheelTasksError(
            f"ALPINE_VERSION={settings.alpine_version!r} is not a word an image tag may hold "
            "(letters, digits and . _ -, at most 128), e.g. 3.22"
        )
    try:
        image = settings.builder_image.format(python="3.12", alpine=settings.alpine_version)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise WheelTasksError(
            f"BUILDER_IMAGE={settings.builder_image!r} is not a valid template ({type(exc).__name__}: {exc}); "
            "it may name only {python} and {alpine}, e.g. python:{python}-alpine{alpine}"
        ) from None
    if not image or any(c.isspace() for c in image) or "{python}" not in settings.builder_image:
        raise WheelTasksError(
            f"BUILDER_IMAGE={settings.builder_image!r} must be an image name that holds {{python}}, "
            "e.g. python:{python}-alpine{alpine}"
        )
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
        _check_ca_bundle(Path(settings.ca_bundle).expanduser())


def _check_ca_bundle(path: Path) -> None:
    fix = "set CA_BUNDLE to a PEM file or to an empty value"
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise WheelTasksError(f"CA bundle {path} does not exist: {fix}") from None
    except OSError as exc:
        raise WheelTasksError(f"CA bundle {path} cannot be read ({exc.strerror}): {fix}") from None
    if stat.S_ISDIR(mode):
        raise WheelTasksError(f"CA bundle {path} is a folder, not a file: {fix}")
    if not stat.S_ISREG(mode):
        raise WheelTasksError(f"CA bundle {path} is not a regular file (a FIFO or a device?): {fix}")


def _check_control_characters(settings: Settings) -> None:
    """Text settings go into URLs, headers, image names and command lines, where a CR, LF or
    other control character would split or smuggle something: refuse them, and show only
    the character and its place (the value may be a secret)."""
    for option in OPTIONS:
        value = getattr(settings, option.field)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if not isinstance(item, str):
                continue
            for at, char in enumerate(item):
                if unicodedata.category(char) == "Cc":
                    raise WheelTasksError(
                        f"{option.env} holds a control character ({char!r} at position {at}): remove it"
                    )
