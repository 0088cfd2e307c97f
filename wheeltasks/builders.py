"""Which Pythons have a builder image: read from the builder repository's tags.

A target without a Python builds for "the latest Python release for which a builder image
exists" (the original system asked Docker Hub). The builder template
(``python:{python}-alpine{alpine}``) names a repository and a tag pattern; the tags that
fit the pattern name the Pythons. The answer is cached for 24 h beside the index cache;
when the registry cannot be asked, the newest of PYTHON_VERSIONS stands in, with a note.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from packaging.version import Version

from . import remote
from .errors import WheelTasksError
from .files import write_atomic
from .imagenames import split_image
from .oci import INDEX_TYPES
from .platforms import oci_platform_key, platform_of
from .registry import RegistryClient
from .settings import Settings
from .targets import Arch
from .values import check_python

log = logging.getLogger("wheeltasks.builders")
CACHE_FILE = "builder-pythons.json"
CACHE_SECONDS = 24 * 3600
# Asking the builder's registry is a convenience: never let it hold a run up for long.
DEADLINE = 20.0


def builder_repository(template: str) -> tuple[str, str, str]:
    """``(registry host, repository path, tag template)`` of a builder image template, by
    Docker's rules for image names (``python`` is ``docker.io/library/python``)."""
    name, sep, tag = template.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon was a port
        raise WheelTasksError(f"BUILDER_IMAGE={template!r} has no tag with {{python}} in it")
    host, path, _ = split_image(name)
    return host, path, tag


def tag_pythons(tags: list[str], tag_template: str, alpine: str) -> list[str]:
    """The Pythons named by the tags that fit the template (``3.12-alpine3.22``)."""
    pattern = re.escape(tag_template).replace(re.escape("{python}"), r"(?P<python>\d+\.\d+)")
    pattern = pattern.replace(re.escape("{alpine}"), re.escape(alpine))
    found = set()
    for tag in tags:
        m = re.fullmatch(pattern, tag)
        if m is None:
            continue
        try:
            found.add(check_python(m["python"], "builder tag"))
        except WheelTasksError:
            continue  # not a CPython a builder can have (3.99, 2.7)
    return sorted(found, key=Version)


def newest_builder_python(settings: Settings) -> str:
    """The newest Python with a builder image; the newest of PYTHON_VERSIONS when unknown."""
    fallback = settings.newest_default_python
    host, path, tag_template = builder_repository(settings.builder_image)
    key = f"{settings.builder_image} {settings.alpine_version}"
    cache = settings.cache_dir / CACHE_FILE
    pythons = _cached(cache, key, settings.clean_cache)
    if pythons is None:
        try:
            client = RegistryClient(host, ca_bundle=settings.ca_bundle, timeout=min(DEADLINE, settings.remote_timeout),
                                    tries=1)
            pythons = tag_pythons(client.tags(path, page_size=1000), tag_template, settings.alpine_version)
        except WheelTasksError as exc:
            # Quietly: many machines reach no public registry, and PYTHON_VERSIONS is the
            # documented answer then (`inv resolve --json` shows the Python chosen).
            log.info("could not list the builder images' tags (%s); the newest Python is %s", exc, fallback)
            return fallback
        _store(cache, key, pythons)
    if not pythons:
        return fallback
    return pythons[-1]


def _read(path: Path) -> dict[str, object]:
    """The cache file's entries; empty for a missing, unreadable or malformed file, and for
    anything that is not a regular file (a FIFO there would block the read)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached(path: Path, key: str, clean: bool) -> list[str] | None:
    """The Pythons cached for ``key`` within the last day; None when there are none. An entry
    of another shape is ignored: the cache is asked again, never trusted."""
    if clean:
        return None
    entry = _read(path).get(key)
    if not isinstance(entry, dict):
        return None
    at, pythons = entry.get("at"), entry.get("pythons")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
        return None
    if not 0 <= time.time() - at < CACHE_SECONDS:  # expired, or from the future
        return None
    if not isinstance(pythons, list) or not all(isinstance(p, str) for p in pythons):
        return None
    try:
        checked = [check_python(p, "cached builder Python") for p in pythons]
    except WheelTasksError:
        return None
    return sorted(set(checked), key=Version)


def cache_files(settings: Settings) -> tuple[Path, ...]:
    """The builder Pythons' cache file, and temporary files a stopped write may have left."""
    path = settings.cache_dir / CACHE_FILE
    leftovers = sorted(settings.cache_dir.glob(f".{CACHE_FILE}.*.part")) if settings.cache_dir.is_dir() else []
    return (path, *leftovers)


def clear_cache(settings: Settings) -> list[Path]:
    """Delete the builder Pythons' cache; return what was removed."""
    removed = []
    for path in cache_files(settings):
        try:
            if path.is_file() or path.is_symlink() or path.exists():
                path.unlink()
                removed.append(path)
        except OSError as exc:
            raise WheelTasksError(f"cannot remove the cache file {path} ({exc.strerror}): remove it by hand") from None
    return removed


def _store(path: Path, key: str, pythons: list[str]) -> None:
    data = _read(path)
    data[key] = {"at": time.time(), "pythons": pythons}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the index cache's folder too
        write_atomic(path, json.dumps(data).encode())
    except OSError:
        pass  # only a cache


# ---- one platform's image ---------------------------------------------------------------


def pin_all(settings: Settings, wanted: Iterable[tuple[str, Arch]]) -> dict[tuple[str, Arch], str]:
    """:func:`pinned` for every (Python, arch), the images looked up side by side."""
    pairs = list(dict.fromkeys(wanted))
    images = list(dict.fromkeys(settings.builder(python) for python, _ in pairs))
    timeout = min(DEADLINE, settings.remote_timeout)
    remote.call_all([functools.partial(_platform_digests, image, settings.ca_bundle, timeout) for image in images], 8)
    return {(python, arch): pinned(settings, python, arch) for python, arch in pairs}


def pinned(settings: Settings, python: str, arch: Arch) -> str:
    """The builder image of ``arch`` by its digest (``repo@sha256:…``), else its tag.

    An engine keeps one image per tag: a tag pulled for one platform and then named by a
    build for another one can hand the build the wrong platform's image (the docker
    driver's BuildKit takes a local image by its name). A digest names one platform's
    image everywhere. When the registry cannot tell, the tag is used as it is.
    """
    image = settings.builder(python)
    digests = _platform_digests(image, settings.ca_bundle, min(DEADLINE, settings.remote_timeout))
    digest = digests.get(oci_platform_key(platform_of(arch)) or ("", "", ""))
    if digest is None:
        return image
    return f"{image.rpartition(':')[0]}@{digest}"


@functools.cache
def _platform_digests(image: str, ca_bundle: str, timeout: float) -> dict[tuple[str, str, str], str]:
    """Platform -> manifest digest of a multi-platform image (asked once per process)."""
    host, path, tag = builder_repository(image)
    try:
        client = RegistryClient(host, ca_bundle=ca_bundle, timeout=timeout, tries=2)
        found = client.find_manifest(path, tag)
    except WheelTasksError as exc:
        log.info("could not read the manifest of %s (%s): builds name it by its tag", image, exc)
        return {}
    if found is None or found.media_type not in INDEX_TYPES:
        return {}
    digests: dict[tuple[str, str, str], str] = {}
    for entry in found.document().get("manifests") or []:
        key = oci_platform_key(entry.get("platform")) if isinstance(entry, dict) else None
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if key is not None and isinstance(digest, str) and digest.startswith("sha256:"):
            digests.setdefault(key, digest)
    return digests
