"""The import check: a job's wheels installed for its platform and imported there.

A wheel that builds but cannot load (a missing library, a libc symbol the target lacks, the
wrong machine, an instruction the platform's baseline CPU lacks) fails here, not in a
user's image. Only the import is emulated: the wheels (the job's own, then its
dependencies' among the offered ones, each compatible with the target by ``packaging.tags``)
are unpacked on the host, their ``.data`` purelib and platlib included, into the job's
``check/`` folder, which a container of the job's builder imports from on the job's
platform (QEMU for a foreign one, on the platform's baseline CPU). No-shared wheels link
the system's libraries: the container gets the recipe's Alpine packages first, as the
build did. Then, in the same container, the job's test command (the recipe's ``mod_test``,
else TEST_COMMAND; cibuildwheel's ``test-command``), with ``{module}`` and ``{version}``
filled in: its failure is the job's, with the log's tail. A job without a test command is
checked in the container the run's other checks of its builder, platform and Alpine
packages share (``checkers.py``); one with a test command gets a container of its own.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from . import console, containers
from .checkers import Checkers
from .errors import BuildError
from .files import clear
from .job import Job
from .settings import Kind, Settings
from .verify import of_module
from .wheeltags import distribution, target_tags, wheel_tags

TEST_FAILED = 86  # check.sh's exit code when the imports passed and the test command failed


def chosen(job: Job, wheels: Iterable[Path], offered: Iterable[Path], *, unrepaired: bool = True) -> list[Path]:
    """One wheel per distribution for the target: the job's own wheels first, then the offered
    ones; ``linux_*`` ones only with ``unrepaired``."""
    accepted = frozenset(target_tags(job.arch, job.python, unrepaired=unrepaired))
    picked: dict[str, Path] = {}
    for wheel in (*wheels, *offered):
        if wheel_tags(wheel.name) & accepted:
            picked.setdefault(distribution(wheel.name), wheel)
    return list(picked.values())


def unpack(wheel: Path, dest: Path) -> None:
    """Install a wheel's importable files into ``dest`` as an installer would (its scripts,
    headers and data files are not needed to import it)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or not parts or ".." in parts or info.filename.startswith("/"):
                continue
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))


def import_names(wheel: Path) -> list[str]:
    """The top-level names a wheel installs: its ``top_level.txt``, else its files' first parts."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        listed = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        if listed:
            text = archive.read(listed[0]).decode("utf-8", errors="replace")
            tops = [line.strip() for line in text.splitlines()]
        else:
            tops = [n.split("/", 1)[0] for n in names]
    found: list[str] = []
    for top in tops:
        base = top.split(".", 1)[0] if top.endswith((".py", ".so")) else top
        if base.isidentifier() and not base.startswith("_") and base not in found:
            found.append(base)
    return found


def import_check(
    settings: Settings, job: Job, wheels: list[Path], offered: list[Path], checkers: Checkers | None = None
) -> None:
    """Unpack the job's wheels (and ``offered`` dependency wheels) for its platform, and import
    the module in its builder there: in a container the run's ``checkers`` share, where the job
    has no test command; else in one of its own."""
    own = [w for w in wheels if of_module(job, w)]
    if not own:
        raise BuildError(f"{job.target}: no wheel of {job.module} among {', '.join(w.name for w in wheels)}")
    names = import_names(own[0])
    test = test_command(settings, job)
    if not names and not test:
        return  # nothing importable (a wheel of data or scripts), nothing to test
    site = job.work.check
    clear(site)
    site.mkdir(parents=True)
    try:
        for wheel in chosen(job, wheels, offered):
            unpack(wheel, site)
        log = job.work.check_log
        console.progress(job.target, "import-check", f"import {', '.join(names) or 'nothing'} on {job.platform}"
                         + (f", then test: {test}" if test else ""))
        apk = " ".join(job.recipe.apk) if job.kind is Kind.NO_SHARED else ""
        code = checkers.check(job, site, names, apk, log) if checkers is not None and not test else None
        if code is None:
            spec = containers.Run(
                command=("/bin/sh", "/wheeltasks/check.sh", *names),
                reads={site: "/check"},
                environment={"APK": apk, "TEST_COMMAND": test, "TEST_FAILED": str(TEST_FAILED)},
            )
            if checkers is not None:
                checkers.ran_alone()
            code = containers.run(settings, job, spec, log)
    finally:
        clear(site)
    if code == TEST_FAILED and test:
        raise BuildError(
            f"the test command of {job.target} failed on {job.platform} ({test}); full log: {log}; "
            f"last lines:\n{console.log_tail(log)}"
        )
    if code != 0:
        raise BuildError(
            f"the wheel of {job.target} does not import on {job.platform} (exit {code}); full log: {log}; "
            f"last lines:\n{console.log_tail(log)}"
        )


def test_command(settings: Settings, job: Job) -> str:
    """The job's test command (its recipe's ``mod_test``, else TEST_COMMAND), placeholders filled."""
    command = job.recipe.test or settings.test_command
    return command.replace("{module}", job.module).replace("{version}", str(job.version))
