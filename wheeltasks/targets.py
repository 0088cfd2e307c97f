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
import functools
import platform as host_platform
import re
from collections.abc import Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import WheelTasksError


class SSL(enum.Enum):
    OPENSSL = "openssl"
    LIBRESSL = "libressl"


DEFAULT_SSL = SSL.OPENSSL


def implied_ssl(ssl: SSL | None, links_ssl: bool) -> SSL | None:
    """The SSL library a target or tag names: its suffix; a module that links one and names
    none is its OpenSSL build (one module, one name; tags written before the suffix was the
    rule name no suffix)."""
    return DEFAULT_SSL if ssl is None and links_ssl else ssl


def is_exported(ssl: SSL | None) -> bool:
    """Only default-SSL (OpenSSL or no SSL) builds are written to ``wheels/``; LibreSSL builds
    are published as images only."""
    return ssl in (None, DEFAULT_SSL)


@dataclass(frozen=True)
class ArmBaseline:
    """What 32-bit ARM code may need on a platform's baseline CPU, in the terms of the ARM
    ABI's build attributes (``.ARM.attributes``): the allowed ``Tag_CPU_arch`` and
    ``Tag_FP_arch`` values, and whether NEON (``Tag_Advanced_SIMD_arch``) may be used."""

    describe: str
    cpu_archs: frozenset[int]
    fp_archs: frozenset[int]
    neon: bool = False


# ARMv6KZ (the ARM1176 of the first Raspberry Pis) and ARMv6K code; VFPv2. Not ARMv6T2
# (Thumb-2), which the ARM1176 lacks.
ARMV6_BASELINE = ArmBaseline("ARMv6 (ARM1176, VFPv2)", frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9}), frozenset({0, 1, 2}))
# Alpine's armv7: ARMv7-A with VFPv3-D16, no NEON.
ARMV7_BASELINE = ArmBaseline(
    "ARMv7-A (VFPv3-D16, no NEON)", frozenset(range(11)), frozenset({0, 1, 2, 4})
)


@dataclass(frozen=True, kw_only=True)
class Arch:
    """A CPU architecture and every name it goes by: in targets and tags (``name``, ``aliases``),
    to Docker (``platform``), to Python and wheels (``machine``), to musl (``ldso``: the loader
    ``/lib/ld-musl-<ldso>.so.1``; ``alpine``: Alpine's arch, which names its libc
    ``libc.musl-<alpine>.so.1``), to a cross toolchain (zig's target and CPU flags, Rust's
    target, the multiarch triplet CPython and Debian use for musl), to Debian (its arch and
    gnu triplet, for roots made from Debian's packages) and to QEMU (the binfmt handler
    ``qemu-<qemu>``, and the CPU an emulated check runs on where QEMU's default is newer than
    the platform's baseline). This table is the one home of these facts: the build stages
    and the fixture builders read them from :func:`shell_facts`.
    """

    name: str
    aliases: tuple[str, ...] = ()
    platform: str
    machine: str
    zig_target: str
    zig_cpu: str = ""  # zig cc flags choosing the CPU, where zig's default for the triple is wrong
    rust_target: str
    alpine: str
    ldso: str
    multiarch: str
    debian: str
    debian_gnu: str
    qemu: str
    qemu_cpu: str = ""
    # auditwheel's name of the machine, where auditwheel has no policy of its own for it
    auditwheel: str = ""
    # 32-bit ARM: the most its wheels' code may need (checked on the host, verify.py)
    arm: ArmBaseline | None = None

    @property
    def variant(self) -> str | None:
        parts = self.platform.split("/")
        return parts[2] if len(parts) > 2 else None

    @property
    def oci_architecture(self) -> str:
        return self.platform.split("/")[1]

    @property
    def auditwheel_machine(self) -> str:
        return self.auditwheel or self.machine


ARCHES: tuple[Arch, ...] = (
    Arch(name="amd64", aliases=("x86_64",), platform="linux/amd64", machine="x86_64",
         zig_target="x86_64-linux-musl", rust_target="x86_64-unknown-linux-musl", alpine="x86_64", ldso="x86_64",
         multiarch="x86_64-linux-musl", debian="amd64", debian_gnu="x86_64-linux-gnu", qemu="x86_64"),
    Arch(name="arm64v8", aliases=("arm64", "aarch64"), platform="linux/arm64/v8", machine="aarch64",
         zig_target="aarch64-linux-musl", rust_target="aarch64-unknown-linux-musl", alpine="aarch64", ldso="aarch64",
         multiarch="aarch64-linux-musl", debian="arm64", debian_gnu="aarch64-linux-gnu", qemu="aarch64"),
    # zig's 32-bit ARM baseline is ARMv7-A with NEON and 32 FP registers; Alpine's armv7 has
    # neither (VFPv3-D16), and its armhf is an ARMv6 (the first Raspberry Pi's CPU). Given as
    # zig's own -mcpu, so zig's runtime for the target (compiler_rt, memcpy) is built for the
    # same CPU as the module: clang-only flags (-Xclang -target-feature) leave it NEON.
    Arch(name="armv7", aliases=("arm", "armv7l"), platform="linux/arm/v7", machine="armv7l",
         zig_target="arm-linux-musleabihf", zig_cpu="-mcpu=generic+v7a+vfp3d16-neon-d32",
         rust_target="armv7-unknown-linux-musleabihf", alpine="armv7", ldso="armhf",
         multiarch="arm-linux-musleabihf", debian="armhf", debian_gnu="arm-linux-gnueabihf", qemu="arm",
         arm=ARMV7_BASELINE),
    # auditwheel has no armv6l policy and files 32-bit ARM under armv7l (the same musl ABI);
    # QEMU's default ARM CPU is newer than ARMv6 and would hide ARMv7 instructions.
    Arch(name="armv6", aliases=("armhf", "armv6l"), platform="linux/arm/v6", machine="armv6l",
         zig_target="arm-linux-musleabihf", zig_cpu="-mcpu=arm1176jzf_s",
         rust_target="arm-unknown-linux-musleabihf", alpine="armhf", ldso="armhf",
         multiarch="arm-linux-musleabihf", debian="armhf", debian_gnu="arm-linux-gnueabihf", qemu="arm",
         qemu_cpu="arm1176", auditwheel="armv7l", arm=ARMV6_BASELINE),
    # zig calls 32-bit x86 "x86"; musl, Debian and CPython call it i386, wheels i686.
    Arch(name="i386", aliases=("386", "i686"), platform="linux/386", machine="i686",
         zig_target="x86-linux-musl", zig_cpu="-mcpu=i686", rust_target="i686-unknown-linux-musl", alpine="x86",
         ldso="i386", multiarch="i386-linux-musl", debian="i386", debian_gnu="i386-linux-gnu", qemu="i386"),
    # Alpine's ppc64le baseline is POWER8; QEMU's default CPU is newer.
    Arch(name="ppc64le", platform="linux/ppc64le", machine="ppc64le",
         zig_target="powerpc64le-linux-musl", rust_target="powerpc64le-unknown-linux-musl", alpine="ppc64le",
         ldso="powerpc64le", multiarch="powerpc64le-linux-musl", debian="ppc64el",
         debian_gnu="powerpc64le-linux-gnu", qemu="ppc64le", qemu_cpu="power8"),
    Arch(name="s390x", platform="linux/s390x", machine="s390x",
         zig_target="s390x-linux-musl", rust_target="s390x-unknown-linux-musl", alpine="s390x", ldso="s390x",
         multiarch="s390x-linux-musl", debian="s390x", debian_gnu="s390x-linux-gnu", qemu="s390x"),
    Arch(name="riscv64", platform="linux/riscv64", machine="riscv64",
         zig_target="riscv64-linux-musl", rust_target="riscv64gc-unknown-linux-musl", alpine="riscv64",
         ldso="riscv64", multiarch="riscv64-linux-musl", debian="riscv64", debian_gnu="riscv64-linux-gnu",
         qemu="riscv64"),
)

ARCH_NAMES: tuple[str, ...] = tuple(a.name for a in ARCHES)


def shell_facts(arch: Arch) -> dict[str, str]:
    """The arch's facts as the shell side (build stages, fixture builders) names them."""
    return {
        "ARCH": arch.name,
        "PLATFORM": arch.platform,
        "MACHINE": arch.machine,
        "ZIG_TARGET": arch.zig_target,
        "ZIG_CPU": arch.zig_cpu,
        "RUST_TARGET": arch.rust_target,
        "ALPINE_ARCH": arch.alpine,
        "LDSO": arch.ldso,
        "MULTIARCH": arch.multiarch,
        "DEBIAN_ARCH": arch.debian,
        "DEBIAN_GNU": arch.debian_gnu,
        "QEMU": arch.qemu,
        "QEMU_CPU": arch.qemu_cpu,
    }


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


def native_machines(arch: Arch) -> tuple[str, ...]:
    """The machines of the table whose CPUs run ``arch``'s code without emulation."""
    return tuple(dict.fromkeys(a.machine for a in ARCHES if runs_natively(arch, a.machine)))


def arches_tsv() -> str:
    """The table for the shell side that cannot import this package (``.ci/services.sh``
    runs before it is installed): :func:`shell_facts` and the machines that run the arch
    natively (``NATIVE``, space separated), one tab-separated row an arch, a header first.
    ``wheeltasks/data/arches.tsv`` holds it (tests/test_targets.py keeps it current)."""
    rows = [{**shell_facts(arch), "NATIVE": " ".join(native_machines(arch))} for arch in ARCHES]
    return "".join("\t".join(row) + "\n" for row in [list(rows[0]), *(list(r.values()) for r in rows)])


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
    # By the version's own spelling (str): equal Versions (1.0, 1.0.0) keep theirs.
    return _join_spelled(label, str(version))


@functools.lru_cache(maxsize=4096)
def _join_spelled(label: str, version: str) -> str:
    # Written together only where rule 2 of the module docstring reads it back, and where
    # the last part does not then read as a suffix (``foo-py`` + ``3.12`` is not ``-py3.12``).
    # Nor as a Python with a patch number (``foo-py`` + ``3.11.2``), which parsing refuses
    # after the first part.
    last = f"{label.rsplit('-', 1)[-1]}{version}"
    python_like = "-" in label and _PYTHON_LIKE_RE.fullmatch(last)
    together = label[-1].isalpha() and _DOTTED_RE.match(version) and not _is_suffix(last) and not python_like
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
