"""inv snippet: the Dockerfile lines that use the published wheel images of a plan's jobs.

One ``FROM --platform=$TARGETPLATFORM <image> AS <stage>`` per published tag (a tag is
multi-platform: one line serves every arch), then the final stage: ``COPY --from=<stage> /
/wheels/`` per stage and one ``pip install --no-index --find-links /wheels`` of the modules
asked for, pinned. Each image holds its dependencies' wheels too (see images.py), so only
the tags no other job of the plan was planned for are copied. A final stage has one Python:
with several, one block per Python, each final stage named ``py<python>``.

For a requirements file (``-r FILE``): its wheel set image (wheelset.py) is the one stage
copied, and pip installs the file itself from it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from pathlib import Path

from packaging.version import Version

from .errors import WheelTasksError
from .job import Job
from .settings import Kind, Settings
from .wheelset import SetImage

_STAGE_BAD = re.compile(r"[^a-z0-9_.-]+")


def stage_name(tag: str) -> str:
    """A Docker stage name for a tag: BuildKit's ``[a-z][a-z0-9_.-]*`` (a letter first)."""
    return "wheels-" + _STAGE_BAD.sub("-", tag.lower())


def _check_one_kind(jobs: Sequence[Job]) -> None:
    kinds = {job.kind for job in jobs}
    if len(kinds) > 1:
        raise WheelTasksError(
            "a snippet uses one kind of wheel images: give --no-shared for the no-shared ones, else neither "
            "(not --both)"
        )


def _copied(jobs: Sequence[Job]) -> list[Job]:
    """One job per tag whose image the final stage copies: tags that some arch was asked for
    itself, not only as another job's dependency (its wheels are in that job's image)."""
    needed = {dep.key for job in jobs for dep in job.depends}
    by_tag: dict[str, Job] = {}
    for job in jobs:
        if job.key not in needed:
            by_tag.setdefault(job.tag, job)
    return list(by_tag.values())


def _block(jobs: Sequence[Job], python: str, wanted: Collection[str], final_name: str) -> list[str]:
    copied = _copied(jobs)
    seen: dict[str, Job] = {}
    for job in copied:
        other = seen.setdefault(job.module, job)
        if other.tag != job.tag:
            raise WheelTasksError(
                f"{other.tag} and {job.tag} cannot share a final stage: their wheels are of one project ({job.module}); "
                "ask for one of them"
            )
    lines: list[str] = []
    for job in copied:
        platforms = " ".join(dict.fromkeys(j.platform for j in jobs if j.tag == job.tag))
        lines.append(f"# {job.label} {job.version} for Python {python}, built for {platforms}")
        lines.append(f"FROM --platform=$TARGETPLATFORM {job.image} AS {stage_name(job.tag)}")
    kind = copied[0].kind
    lines += ["", f"# The final stage should be python:{python}-alpine (or an image made from it): the wheels are for "
              f"CPython {python} on musl."]
    if kind is Kind.NO_SHARED:
        apk = " ".join(dict.fromkeys(p for j in jobs for p in j.recipe.apk))
        if apk:
            lines.append(f"# No-shared wheels link Alpine's libraries: apk add the runtime packages of {apk}.")
    lines.append(f"FROM python:{python}-alpine{f' AS {final_name}' if final_name else ''}")
    lines += [f"COPY --from={stage_name(job.tag)} / /wheels/" for job in copied]
    pins: dict[str, str] = {}
    for job in (*copied, *jobs):  # a copied tag's version first: its image is copied
        if job.module in wanted:
            pins.setdefault(job.module, f"{job.module}=={job.version}")
    lines.append(f"RUN pip install --no-index --find-links /wheels {' '.join(pins.values())}")
    return lines


def dockerfile_lines(jobs: Sequence[Job], wanted: Collection[str]) -> str:
    """The snippet of a plan's ``jobs``; ``wanted``: the modules the user named (installed)."""
    if not jobs:
        raise WheelTasksError("the targets resolve to no job (every arch excluded?): nothing to use")
    _check_one_kind(jobs)
    pythons = sorted({job.python for job in jobs}, key=Version)
    blocks: list[list[str]] = []
    for python in pythons:
        name = f"py{python}" if len(pythons) > 1 else ""
        blocks.append(_block([j for j in jobs if j.python == python], python, wanted, name))
    if len(pythons) > 1:
        blocks[0].insert(0, "# One final stage per Python: build one with docker build --target py<python>.")
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


def wheel_set_lines(settings: Settings, images: Sequence[SetImage], file: Path) -> str:
    """The snippet of a requirements file: its wheel set image, then pip installs the file."""
    if not images:
        raise WheelTasksError(f"{file} resolves to no job (every arch excluded?): nothing to use")
    _check_one_kind([job for image in images for one in image.sets for job in one.jobs])
    blocks: list[list[str]] = []
    for image in sorted(images, key=lambda i: Version(i.python)):
        name = f"py{image.python}" if len(images) > 1 else ""
        platforms = " ".join(one.arch.platform for one in image.sets)
        stage = stage_name(image.tag)
        blocks.append([
            f"# Every wheel {file.name} needs, for Python {image.python}, built for {platforms}",
            f"FROM --platform=$TARGETPLATFORM {image.image(settings)} AS {stage}",
            "",
            f"FROM python:{image.python}-alpine{f' AS {name}' if name else ''}",
            f"COPY --from={stage} / /wheels/",
            f"COPY {file.name} /tmp/{file.name}",
            f"RUN pip install --no-index --find-links /wheels -r /tmp/{file.name}",
        ])
    if len(images) > 1:
        blocks[0].insert(0, "# One final stage per Python: build one with docker build --target py<python>.")
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"
