"""The target grammar: ``<module>[-openssl|-libressl][<version>][-py<python>|-pyall][-<arch>]``.

Parsing is pure: it checks the shape of the text only. Whether a module links an SSL
library, whether a version exists, or which Python versions are the defaults is the
planner's business (it has the settings and the index).

The name/version boundary (names that end in digits)
-----------------------------------------------------
Module and version are written together (``cffi1.15.1``), so the boundary must be
defined for names that end in digits (``jinja2``, ``ed25519``, ``py7zr``):

1. ``_`` or ``==`` followed by a version is an explicit boundary: ``jinja2_3.1.4``,
   ``jinja2==3.1.4``, ``bcrypt_4``.
2. Otherwise the version starts at the first digit that follows a letter and begins a
   *dotted* PEP 440 version (``1.15.1``, ``45.0.1``, ``3.0rc1``): ``cffi1.15.1`` is
   cffi 1.15.1, ``google-crc32c1.5.0`` is google-crc32c 1.5.0. A run of digits
   without a dot stays part of the name: ``jinja2`` and ``ed25519`` have no version.
   So ``jinja23.1.4`` means module ``jinja`` version 23.1.4 — write ``jinja2_3.1.4``.
3. A ``-`` part that is all dotted version also is one: ``cffi-1.15.1``.

Formatting writes the version directly after the name only where rule 2 reads it back.

After the version come only ``-pyall`` or ``-py<major>.<minor>``, then ``-<arch>`` (a
name or alias, any case); anything else there is an error, ``-py3.11.2`` (a patch
release) included, wherever it stands. Without a version, the name
runs until the first such suffix. ``-openssl``/``-libressl`` ends the name, right before
the version.
"""

from __future__ import annotations

import enum
import platform as host_platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import WheelTasksError


class SSL(enum.Enum):
    OPENSSL = "openssl"
    LIBRESSL = "libressl"


DEFAULT_SSL = SSL.OPENSSL


@dataclass(frozen=True)
class Arch:
    """A CPU architecture: its name in targets and tags, aliases, Docker platform, machine,
    and how a cross toolchain names it (zig's target and CPU, Rust's target, Alpine's arch)."""

    name: str
    aliases: tuple[str, ...]
    platform: str
    machine: str
    zig_target: str
    rust_target: str
    alpine: str
    zig_cpu: str = ""  # zig cc flags choosing the CPU, where zig's default for the triple is wrong

    @property
    def variant(self) -> str | None:
        parts = self.platform.split("/")
        return parts[2] if len(parts) > 2 else None

    @property
    def oci_architecture(self) -> str:
        return self.platform.split("/")[1]


ARCHES: tuple[Arch, ...] = (
    Arch("amd64", ("x86_64",), "linux/amd64", "x86_64", "x86_64-linux-musl", "x86_64-unknown-linux-musl", "x86_64"),
    Arch("arm64v8", ("arm64", "aarch64"), "linux/arm64/v8", "aarch64", "aarch64-linux-musl",
         "aarch64-unknown-linux-musl", "aarch64"),
    # zig's 32-bit ARM baseline is ARMv7-A with NEON and 32 FP registers; Alpine's armv7 has
    # neither (VFPv3-D16), and its armhf is an ARMv6 (the first Raspberry Pi's CPU).
    Arch("armv7", ("arm", "armv7l"), "linux/arm/v7", "armv7l", "arm-linux-musleabihf",
         "armv7-unknown-linux-musleabihf", "armv7",
         "-Xclang -target-feature -Xclang -neon -Xclang -target-feature -Xclang -d32"),
    Arch("armv6", ("armhf", "armv6l"), "linux/arm/v6", "armv6l", "arm-linux-musleabihf",
         "arm-unknown-linux-musleabihf", "armhf", "-mcpu=arm1176jzf_s"),
    Arch("i386", ("386", "i686"), "linux/386", "i686", "x86-linux-musl", "i686-unknown-linux-musl", "x86", "-mcpu=i686"),
    Arch("ppc64le", (), "linux/ppc64le", "ppc64le", "powerpc64le-linux-musl", "powerpc64le-unknown-linux-musl",
         "ppc64le"),
    Arch("s390x", (), "linux/s390x", "s390x", "s390x-linux-musl", "s390x-unknown-linux-musl", "s390x"),
    Arch("riscv64", (), "linux/riscv64", "riscv64", "riscv64-linux-musl", "riscv64gc-unknown-linux-musl", "riscv64"),
)

# Machines a CPU runs without emulation besides its own (32-bit modes of 64-bit CPUs).
NATIVE_ALSO: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"i686"}),
    "aarch64": frozenset({"armv7l", "armv6l"}),
}


def runs_natively(arch: Arch, machine: str) -> bool:
    """Whether a ``machine`` (``platform.machine()`` spelling) runs ``arch``'s code itself."""
    return arch.machine == machine or arch.machine in NATIVE_ALSO.get(machine, frozenset())


def host_machine() -> str:
    """This machine as wheels spell it (``x86_64``, ``aarch64``)."""
    machine = host_platform.machine()
    arch = find_arch(machine)
    return arch.machine if arch is not None else machine


def platform_of(arch: Arch) -> dict[str, str]:
    """The arch as an OCI platform (``{"os": "linux", "architecture": "arm", "variant": "v7"}``)."""
    platform = {"architecture": arch.oci_architecture, "os": "linux"}
    if arch.variant:
        platform["variant"] = arch.variant
    return platform


def oci_platform_key(platform: object) -> tuple[str, str, str] | None:
    """(os, architecture, variant) of an OCI platform, with the variants Docker assumes
    when one is missing; None for anything that is not a platform."""
    if not platform or not isinstance(platform, Mapping):
        return None
    os_name, architecture = str(platform.get("os", "")), str(platform.get("architecture", ""))
    variant = str(platform.get("variant") or {"arm64": "v8", "arm": "v7"}.get(architecture, ""))
    return os_name, architecture, variant


_ARCH_LOOKUP = {
    key.lower(): arch
    for arch in ARCHES
    for key in (arch.name, *arch.aliases, arch.platform, arch.platform.removeprefix("linux/"))
}


def arch_choices() -> str:
    return ", ".join(
        f"{a.name} ({', '.join(a.aliases)})" if a.aliases else a.name for a in ARCHES
    )


def find_arch(text: str) -> Arch | None:
    """The architecture for a name, alias or Docker platform (any case), or None."""
    return _ARCH_LOOKUP.get(text.strip().lower())


def get_arch(text: str) -> Arch:
    arch = find_arch(text)
    if arch is None:
        raise WheelTasksError(f"unknown architecture {text!r}; valid choices: {arch_choices()}")
    return arch


PYALL = "all"

_PYTHON_RE = re.compile(r"py(?P<python>all|\d+\.\d+)", re.IGNORECASE)
# A Python suffix written with a patch number or more (-py3.11.2), or with the major only
# followed by a dot: not a target's Python (major.minor), and not to be read as a module
# named "...-py" of version 3.11.2 either.
_PYTHON_LIKE_RE = re.compile(r"py\d+(?:\.\d+){2,}", re.IGNORECASE)
# Characters a version written inside a target may use (tag-safe PEP 440, no local part).
_VERSION_CHARS_RE = re.compile(r"[0-9A-Za-z.!]+")
_DOTTED_RE = re.compile(r"\d+(?:![0-9]+)?\.")
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Target:
    """A parsed target; fields the user left out are None.

    ``python`` is ``"3.12"``-style text, or :data:`PYALL` for ``-pyall``.
    ``module`` is the PEP 503 normalised project name.
    """

    module: str
    ssl: SSL | None = None
    version: Version | None = None
    python: str | None = None
    arch: Arch | None = None

    def __str__(self) -> str:
        return format_target(self)


def _parse_version(text: str) -> Version | None:
    if not _VERSION_CHARS_RE.fullmatch(text):
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _split_name_version(head: str) -> tuple[str, Version | None]:
    """Split ``<name><version>`` by the rule in the module docstring."""
    if "==" in head:
        name, _, rest = head.partition("==")
        version = _parse_version(rest)
        if version is None:
            raise WheelTasksError(f"{rest!r} is not a valid version (PEP 440, e.g. 1.15.1)")
        return name, version
    for i in range(1, len(head)):
        if not head[i].isdigit():
            continue
        before = head[i - 1]
        explicit = before == "_" and i >= 2
        if not (before.isalpha() or explicit):
            continue
        rest = head[i:]
        if not explicit and not _DOTTED_RE.match(rest):
            continue
        version = _parse_version(rest)
        if version is not None:
            return head[: i - 1] if explicit else head[:i], version
    return head, None


def _is_version_segment(segment: str) -> Version | None:
    """A whole ``-`` part that is a dotted version (``cffi-1.15.1``)."""
    return _parse_version(segment) if _DOTTED_RE.match(segment) else None


def parse_target(text: str) -> Target:
    """Parse one target; raise :class:`WheelTasksError` naming what is wrong."""
    raw = text.strip()
    if not raw:
        raise WheelTasksError("empty target: name a module, e.g. cffi or cffi1.15.1-py3.12-amd64")
    if any(c.isspace() for c in raw) or "," in raw:
        raise WheelTasksError(f"{raw!r} holds several targets; pass them as separate targets")
    if "+" in raw:
        raise WheelTasksError(
            f"{raw!r}: local versions (+...) cannot be written into an image tag; pin a public version"
        )
    parts = raw.split("-")
    # The name (with any SSL suffix) runs until the part holding the version, or until
    # the first suffix part; everything after that must be a known suffix.
    name_parts: list[str] = []
    version: Version | None = None
    i = 0
    while i < len(parts):
        segment = parts[i]
        if i > 0 and _PYTHON_LIKE_RE.fullmatch(segment):
            raise _python_with_patch(raw, segment)
        if i > 0 and (_PYTHON_RE.fullmatch(segment) or find_arch(segment)):
            break
        i += 1
        if i > 1 and (version := _is_version_segment(segment)) is not None:
            break
        name, version = _split_name_version(segment)
        name_parts.append(name)
        if version is not None:
            break
    rest = parts[i:]
    python = None
    if rest and (m := _PYTHON_RE.fullmatch(rest[0])):
        python = m["python"].lower()
        rest = rest[1:]
    arch = find_arch(rest[0]) if rest else None
    if arch is not None:
        rest = rest[1:]
    if rest and _PYTHON_LIKE_RE.fullmatch(rest[0]):
        raise _python_with_patch(raw, rest[0])
    if rest:
        raise WheelTasksError(
            f"{raw!r}: unexpected {'-'.join(rest)!r}; after the version come only -py<X.Y> or -pyall, "
            f"then -<arch> with arch one of: {arch_choices()}"
        )
    name = "-".join(name_parts)
    ssl = None
    for candidate in SSL:
        suffix = "-" + candidate.value
        if name.lower().endswith(suffix):
            ssl, name = candidate, name[: -len(suffix)]
            break
    if not name:
        raise WheelTasksError(f"{raw!r} has no module name; a target starts with the module, e.g. cffi1.15.1")
    if not _NAME_RE.fullmatch(name):
        raise WheelTasksError(
            f"{raw!r}: {name!r} is not a valid module name; the grammar is "
            "<module>[-openssl|-libressl][<version>][-py<python>|-pyall][-<arch>], "
            f"with arch one of: {arch_choices()}"
        )
    module = canonicalize_name(name)
    _check_name_reads_back(raw, module)
    if version is not None and version.epoch:
        raise WheelTasksError(
            f"{raw!r}: versions with an epoch (N!) cannot be written into an image tag; pin another version"
        )
    return Target(module, ssl, version, python, arch)


def _python_with_patch(raw: str, segment: str) -> WheelTasksError:
    minor = ".".join(segment[2:].split(".")[:2])
    return WheelTasksError(
        f"{raw!r}: -{segment} names a patch release; a target's Python is major.minor (-py{minor}): "
        "the builder image brings its newest patch release"
    )


def _check_name_reads_back(raw: str, module: str) -> None:
    """A module whose normalised name holds a suffix word (``foo_amd64`` is ``foo-amd64``)
    would read back as another target from its tag: refuse it rather than mislabel it."""
    segments = module.split("-")
    for segment in segments[1:]:
        if _is_suffix(segment):
            raise WheelTasksError(
                f"{raw!r}: the module name {module!r} holds {'-' + segment!r}, which reads as a Python or arch "
                "suffix in tags; wheeltasks cannot build it"
            )
    if segments[-1] in {s.value for s in SSL} and len(segments) > 1:
        raise WheelTasksError(
            f"{raw!r}: the module name {module!r} ends in {'-' + segments[-1]!r}, which reads as an SSL suffix "
            "in tags; wheeltasks cannot build it"
        )


def split_targets(values: str | Sequence[str]) -> list[str]:
    """Split ``"a b"``, ``"a,b"`` or a list of such into single target texts."""
    items = [values] if isinstance(values, str) else list(values)
    return [t for item in items for t in re.split(r"[\s,]+", item) if t]


def module_label(module: str, ssl: SSL | None) -> str:
    """The module as written in targets and tags: keeps the SSL suffix."""
    return f"{module}-{ssl.value}" if ssl is not None else module


def join_version(label: str, version: Version | None) -> str:
    if version is None:
        return label
    # Written together only where rule 2 of the module docstring reads it back, and where
    # the last part does not then read as a suffix (``foo-py`` + ``3.12`` is not ``-py3.12``).
    # Nor as a Python with a patch number (``foo-py`` + ``3.11.2``), which parsing refuses
    # after the first part.
    last = f"{label.rsplit('-', 1)[-1]}{version}"
    python_like = "-" in label and _PYTHON_LIKE_RE.fullmatch(last)
    together = label[-1].isalpha() and _DOTTED_RE.match(str(version)) and not _is_suffix(last) and not python_like
    return f"{label}{'' if together else '_'}{version}"


def _is_suffix(segment: str) -> bool:
    return bool(_PYTHON_RE.fullmatch(segment)) or find_arch(segment) is not None


def format_target(target: Target) -> str:
    text = join_version(module_label(target.module, target.ssl), target.version)
    if target.python is not None:
        text += f"-py{target.python}"
    if target.arch is not None:
        text += f"-{target.arch.name}"
    return text


def image_tag(module: str, ssl: SSL | None, version: Version, python: str, arch: Arch | None = None) -> str:
    """The published tag ``<module><version>-py<python>``; with ``arch``, the legacy per-arch tag."""
    return format_target(Target(module, ssl, version, python, arch))
