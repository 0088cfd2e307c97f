"""How Docker and OCI spell a platform: the variant a platform has when it names none,
containerd's normal form (``linux/arm64/v8`` is ``linux/arm64``), and which architecture
of the table (:data:`wheeltasks.targets.ARCHES`) a platform is.

The CPU spellings a platform may use besides the OCI ones are the table's own (the machine
``uname -m`` prints, Debian's name for the arch); the default variants are containerd's
rule (github.com/containerd/platforms, ``normalize.go``), written down once here for the
registry side (image indexes, :func:`oci_platform_key`) and the buildx side
(:func:`platform_key`) alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from .targets import ARCHES, Arch

# The variant an OCI architecture has when a platform names none, and whether containerd's
# normal form writes it out: linux/arm64 is linux/arm64/v8 and linux/amd64 is linux/amd64/v1
# (both written without it), but linux/arm is written linux/arm/v7.
DEFAULT_VARIANTS: Mapping[str, tuple[str, bool]] = {"amd64": ("v1", False), "arm64": ("v8", False), "arm": ("v7", True)}


def _spellings() -> dict[str, Arch]:
    # Where two arches share a spelling (Debian's armhf), the first row of the table wins:
    # containerd reads armhf as ARMv7 too.
    found: dict[str, Arch] = {}
    for arch in ARCHES:
        for spelling in (arch.machine, arch.debian):
            found.setdefault(spelling.lower(), arch)
    return found


_SPELLINGS = _spellings()


def default_variant(architecture: str) -> str:
    """The variant a platform of this OCI architecture has when it names none ("" for none)."""
    return DEFAULT_VARIANTS.get(architecture, ("", False))[0]


def platform_of(arch: Arch) -> dict[str, str]:
    """The arch as an OCI platform (``{"os": "linux", "architecture": "arm", "variant": "v7"}``)."""
    platform = {"architecture": arch.oci_architecture, "os": "linux"}
    if arch.variant:
        platform["variant"] = arch.variant
    return platform


def oci_platform_key(platform: object) -> tuple[str, str, str] | None:
    """(os, architecture, variant) of an OCI platform, with the variant Docker assumes when
    one is missing; None for anything that is not a platform."""
    if not platform or not isinstance(platform, Mapping):
        return None
    os_name, architecture = str(platform.get("os", "")), str(platform.get("architecture", ""))
    return os_name, architecture, str(platform.get("variant") or default_variant(architecture))


def platform_key(text: str) -> str:
    """A platform in containerd's normal form, so ``linux/arm64/v8`` equals ``linux/arm64``
    and ``linux/aarch64`` equals both."""
    parts = text.strip().lower().split("/")
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise ValueError(f"{text!r} is not a platform like linux/arm64")
    os_name, architecture = parts[0], parts[1]
    spelled = _SPELLINGS.get(architecture)
    if spelled is not None:
        architecture = spelled.oci_architecture
    variant = parts[2] if len(parts) == 3 else (spelled.variant if spelled is not None else None) or ""
    default, written = DEFAULT_VARIANTS.get(architecture, ("", False))
    if not variant and written:
        variant = default
    elif variant == default and not written:
        variant = ""
    return "/".join(p for p in (os_name, architecture, variant) if p)


_ARCH_BY_KEY: dict[str, Arch] = {platform_key(a.platform): a for a in ARCHES}


def arch_of(platform: str) -> Arch | None:
    """The wheeltasks architecture of a Docker platform (any spelling), or None."""
    try:
        return _ARCH_BY_KEY.get(platform_key(platform))
    except ValueError:
        return None
