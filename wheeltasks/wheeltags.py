"""Which wheels a job's platform and Python accept, by ``packaging.tags`` for the target (a
CPython of the job's Python on musl on the job's machine), never for the host.

In pip's order of preference: the most specific tag first (``cp312-cp312-musllinux_1_2_*``),
then abi3 of older Pythons, then ``py3-none-*`` and ``py3-none-any``. Where ``linux_*``
(unrepaired) tags count depends on the use: a no-shared job accepts them, a wheel taken from
the index for a shared job must be repaired (musllinux) or pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename

from .targets import Arch

MUSLLINUX_MINORS = (2, 1, 0)  # musllinux_1_2 ... 1_0: what a musl 1.2 platform accepts


def _version(python: str) -> tuple[int, int]:
    major, minor = (int(part) for part in python.split(".")[:2])
    return major, minor


@functools.cache
def target_tags(arch: Arch, python: str, *, unrepaired: bool = True) -> tuple[Tag, ...]:
    """The tags a CPython ``python`` on musl on ``arch`` accepts, most preferred first;
    ``linux_<machine>`` ones only with ``unrepaired``."""
    version = _version(python)
    platforms = [f"musllinux_1_{m}_{arch.machine}" for m in MUSLLINUX_MINORS]
    if unrepaired:
        platforms.append(f"linux_{arch.machine}")
    tags = (*cpython_tags(version, platforms=platforms), *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms))
    return tuple(dict.fromkeys(tags))


@functools.cache
def target_ranks(arch: Arch, python: str, *, unrepaired: bool = True) -> Mapping[Tag, int]:
    """:func:`target_tags` as tag -> rank (0: most preferred)."""
    return {tag: rank for rank, tag in enumerate(target_tags(arch, python, unrepaired=unrepaired))}


@functools.cache
def target_platforms(arch: Arch, python: str, *, unrepaired: bool = True) -> frozenset[str]:
    """The platform parts of :func:`target_tags` (``musllinux_1_2_aarch64``, ``any``, ...)."""
    return frozenset(tag.platform for tag in target_tags(arch, python, unrepaired=unrepaired))


@functools.lru_cache(maxsize=4096)
def _parsed(filename: str) -> tuple[NormalizedName, frozenset[Tag]] | None:
    """A wheel file name's distribution and tags (``packaging``); None for a name that is not a wheel's."""
    try:
        name, _version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return name, frozenset(tags)


def wheel_tags(filename: str) -> frozenset[Tag]:
    """The tags of a wheel file name; none for a name that is not a wheel's."""
    parsed = _parsed(filename)
    return parsed[1] if parsed else frozenset()


def preference(filename: str, accepted: Iterable[Tag] | Mapping[Tag, int]) -> int | None:
    """Where a wheel ranks among the accepted tags, in order or as :func:`target_ranks` gives
    them (0: most preferred); None when it is not accepted."""
    ranks = accepted if isinstance(accepted, Mapping) else {t: r for r, t in enumerate(accepted)}
    found = [ranks[tag] for tag in wheel_tags(filename) if tag in ranks]
    return min(found) if found else None


def is_pure(filename: str) -> bool:
    """A wheel that serves every platform: every tag ``*-none-any``."""
    tags = wheel_tags(filename)
    return bool(tags) and all(t.abi == "none" and t.platform == "any" for t in tags)


def abi3_floor(filename: str) -> tuple[int, int] | None:
    """The oldest Python an abi3 wheel serves (``cp38-abi3-…``: 3.8), None for other wheels."""
    floors = []
    for tag in wheel_tags(filename):
        if tag.abi == "abi3" and tag.interpreter.startswith("cp3") and tag.interpreter[3:].isdigit():
            floors.append((3, int(tag.interpreter[3:])))
    return min(floors) if floors else None


def distribution(filename: str) -> NormalizedName:
    """The distribution a wheel file is of (PEP 503 normalised); for a name that is not a
    wheel's, its first part."""
    parsed = _parsed(filename)
    return parsed[0] if parsed else canonicalize_name(filename.split("-", 1)[0])
