"""A requirements file's wheel set: one multi-platform image holding, per platform, every
wheel of the file's closure (``-r FILE``), so a Dockerfile needs one ``COPY --from``.

It is pushed at the end of a run with push, per Python and kind, into the kind's
repository, at ``<IMAGE_TAG>-py<python>`` (else ``requirements-<hash>-py<python>``, the hash
of the resolved set on every platform: the same closure gives the same tag). A platform
whose jobs did not all end well gets no manifest in it, and the run says so. The module
images are pushed by their jobs as for targets; the set's layer is its own (one tar of all
the wheels), its blobs content-addressed like every other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import WheelTasksError
from .imageformat import wheels_created
from .images import PushResult, push_platform
from .plan import WheelSet
from .registry import RegistryClient
from .settings import Kind, Settings
from .wheeltags import distribution


@dataclass(frozen=True)
class SetImage:
    """One Python and kind of a requirements file: its tag and its platforms' sets."""

    tag: str
    python: str
    kind: Kind
    sets: tuple[WheelSet, ...]

    def image(self, settings: Settings) -> str:
        return settings.repository(self.kind).image(self.tag)


def set_images(settings: Settings, sets: Iterable[WheelSet]) -> list[SetImage]:
    """The plan's wheel sets by file, Python and kind, each with its tag."""
    grouped: dict[tuple[Path, str, Kind], list[WheelSet]] = {}
    for one in sets:
        grouped.setdefault((one.file, one.python, one.kind), []).append(one)
    images = []
    for (_, python, kind), of_python in grouped.items():
        if settings.image_tag:
            base = settings.image_tag
        else:
            resolved = sorted(f"{s.arch.name} {j.module}=={j.version}" for s in of_python for j in s.jobs)
            base = "requirements-" + hashlib.sha256("\n".join(resolved).encode()).hexdigest()[:12]
        images.append(SetImage(f"{base}-py{python}", python, kind, tuple(of_python)))
    return images


def sets_of_jobs(settings: Settings, images: Iterable[SetImage]) -> dict[tuple[str, str, Kind], list[str]]:
    """Job.key -> the wheel set images its wheel goes into (for ``resolve -r FILE --json``)."""
    found: dict[tuple[str, str, Kind], list[str]] = {}
    for image in images:
        for one in image.sets:
            for job in one.jobs:
                found.setdefault(job.key, []).append(image.image(settings))
    return found


def wheels_of(one: WheelSet) -> list[Path]:
    """One wheel per distribution of the set, from its jobs' results (which may hold their
    dependencies' wheels too: the first of each distribution is kept)."""
    names = {canonicalize_name(module) for module in one.names}
    chosen: dict[str, Path] = {}
    for job in one.jobs:
        for wheel in job.work.result_wheels():
            name = distribution(wheel.name)
            if name in names:
                chosen.setdefault(name, wheel)
    return list(chosen.values())


def push_set(client: RegistryClient, settings: Settings, image: SetImage, one: WheelSet) -> PushResult:
    wheels = wheels_of(one)
    missing = sorted(set(map(canonicalize_name, one.names)) - {distribution(w.name) for w in wheels})
    if missing:
        raise WheelTasksError(f"the wheel set {image.image(settings)} lacks {', '.join(missing)} on {one.arch.name}")
    annotations = {
        "org.opencontainers.image.title": f"wheels of {one.file.name}",
        "io.wheeltasks.requirements": one.file.name,
        "io.wheeltasks.python": image.python,
        "io.wheeltasks.kind": image.kind.value,
    }
    labels = {
        **annotations,
        "io.wheeltasks.arch": one.arch.name,
        "org.opencontainers.image.description": (
            f"{image.kind.value} musl wheels of every distribution {one.file.name} needs, for Python {image.python} "
            f"on {one.arch.platform}"
        ),
        **({"org.opencontainers.image.created": created} if (created := wheels_created(wheels)) else {}),
    }
    return push_platform(client, settings.repository(image.kind), image.tag, one.arch, wheels, labels, annotations)


def ended_well(one: WheelSet, failed: Sequence[tuple[object, ...]]) -> bool:
    return not any(job.key in failed for job in one.jobs)
