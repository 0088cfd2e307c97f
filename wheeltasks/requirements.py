"""-r FILE: a requirements file's whole closure for each job Python and platform.

pip's own resolver does it (``pip install --dry-run --ignore-installed --report``), run on
this machine as the target (``pip_as_target.py``): markers are evaluated for the target
(``platform_machine``, ``python_version``, ``sys_platform``…), the wheels it may pick are the
target's (wheeltags.target_tags), and ``Requires-Python`` is checked for the job's Python.
Pins, ranges, extras, ``-c`` constraints, nested ``-r`` files and the file's ``--index-url``
lines are pip's to read. Source distributions take part by their metadata (pip builds it
here); their wheels are built for the target later, in the job. Each platform and Python is
resolved once, side by side.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from .errors import RemoteError, WheelTasksError, first_line
from .index import index_url
from .settings import Settings
from .targets import Arch
from .urls import redact
from .wheeltags import target_tags

RUNNER = Path(__file__).with_name("pip_as_target.py")
# What pip says when it could not reach the index (beside "no matching distribution").
_REMOTE_SIGNS = re.compile(
    r"NewConnectionError|Max retries exceeded|ConnectTimeout|ReadTimeout|Could not fetch URL|"
    r"SSLError|ProxyError|HTTP error (?:401|403|429|5\d\d)|Connection refused|Name or service not known"
)


@dataclass(frozen=True)
class Pinned:
    """One distribution of a closure: its version, and those of the closure it needs on the target."""

    name: NormalizedName
    version: Version
    needs: tuple[NormalizedName, ...]


@dataclass(frozen=True)
class Closure:
    """A requirements file resolved for one Python and platform, dependencies first."""

    python: str
    arch: Arch
    pinned: tuple[Pinned, ...]


def marker_environment(arch: Arch, python: str) -> dict[str, str]:
    """PEP 508's marker environment of a CPython ``python`` on musl Linux on ``arch``.
    The patch release is not known before the build (the builder's Python): ``.0``."""
    full = f"{python}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": arch.machine,
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "platform_python_implementation": "CPython",
        "python_version": python,
        "sys_platform": "linux",
    }


def check_file(path: Path) -> Path:
    """The requirements file, or a clear error (before any pip starts)."""
    if not path.exists():
        raise WheelTasksError(f"requirements file {path} does not exist")
    if not path.is_file():
        raise WheelTasksError(f"requirements file {path} is not a file")
    try:
        path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WheelTasksError(f"requirements file {path} cannot be read: {first_line(exc)}") from None
    return path.resolve()


def pip_command(path: Path, arch: Arch, python: str) -> list[str]:
    """The pip run that resolves ``path`` for the target (the index comes in the environment)."""
    target = {"markers": marker_environment(arch, python), "tags": [str(t) for t in target_tags(arch, python)]}
    return [
        sys.executable, str(RUNNER), json.dumps(target),
        "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
        "--no-input", "--disable-pip-version-check", "--retries", "1",
        "--python-version", python, "-r", str(path),
    ]  # fmt: skip


def _environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_INDEX_URL"] = index_url(settings)  # the environment: never on a command line
    if settings.ca_bundle:
        env["PIP_CERT"] = settings.ca_bundle
    return env


def _failure(path: Path, arch: Arch, python: str, stderr: str) -> WheelTasksError:
    """pip's errors as one line: the index unreachable is a remote failure, the rest the user's."""
    said = "; ".join(_errors(stderr)[:2]) or (stderr.strip().splitlines() or ["pip failed"])[-1]
    where = f"{path} for Python {python} on {arch.name}"
    if _REMOTE_SIGNS.search(stderr):
        return RemoteError(f"resolving {where}: the index could not be reached or refused: {redact(said)}")
    return WheelTasksError(f"resolving {where}: {redact(said)}")


_FROM_LINE = re.compile(r"\(from line \d+ of [^)]*\)")


def _errors(stderr: str) -> list[str]:
    """pip's ERROR lines, each with where in the file it is (pip says it on a line below)."""
    errors: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("ERROR:"):
            errors.append(line.removeprefix("ERROR:").strip())
        elif errors and line[:1].isspace():
            where = _FROM_LINE.search(line)
            if where and where[0] not in errors[-1]:
                errors[-1] += " " + where[0]
    return errors


def closure_of(report: Mapping[str, Any], arch: Arch, python: str) -> tuple[Pinned, ...]:
    """The distributions of pip's report, each with those of the report it needs on the
    target (its ``Requires-Dist`` for the extras asked of it, markers for the target);
    dependencies first."""
    environment = marker_environment(arch, python)
    items: dict[NormalizedName, tuple[Version, list[str], list[NormalizedName]]] = {}
    for item in report.get("install", []):
        metadata = item["metadata"]
        try:
            version = Version(metadata["version"])
        except InvalidVersion:
            raise WheelTasksError(f"{metadata['name']} has a version packaging cannot read: {metadata['version']!r}") from None
        extras = [canonicalize_name(e) for e in item.get("requested_extras") or ()]
        items[canonicalize_name(metadata["name"])] = (version, list(metadata.get("requires_dist") or ()), extras)
    needs: dict[NormalizedName, tuple[NormalizedName, ...]] = {}
    for name, (_version, requires, extras) in items.items():
        needed: dict[NormalizedName, None] = {}
        for text in requires:
            wanted = _needed(text, environment, extras)
            if wanted is not None and wanted in items and wanted != name:
                needed[wanted] = None
        needs[name] = tuple(needed)
    return tuple(Pinned(name, items[name][0], needs[name]) for name in _dependencies_first(needs))


def _needed(text: str, environment: Mapping[str, str], extras: Iterable[NormalizedName]) -> NormalizedName | None:
    try:
        requirement = Requirement(text)
    except (InvalidRequirement, InvalidMarker):
        return None  # pip read it; one it resolved without cannot be an edge of the closure
    marker: Marker | None = requirement.marker
    if marker is not None and not any(marker.evaluate({**environment, "extra": e}) for e in ("", *extras)):
        return None
    return canonicalize_name(requirement.name)


def _dependencies_first(needs: Mapping[NormalizedName, tuple[NormalizedName, ...]]) -> list[NormalizedName]:
    """Each name after the names it needs (a cycle, which pip allows, is cut where it closes)."""
    done: dict[NormalizedName, None] = {}
    for root in sorted(needs):
        stack = [(root, iter(needs[root]))]
        visiting = {root}
        while stack:
            name, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                visiting.discard(name)
                done.setdefault(name, None)
            elif dep not in done and dep not in visiting:
                visiting.add(dep)
                stack.append((dep, iter(needs[dep])))
    return list(done)


def resolve_one(settings: Settings, path: Path, arch: Arch, python: str) -> Closure:
    """``path`` resolved by pip for CPython ``python`` on ``arch``."""
    try:
        done = subprocess.run(pip_command(path, arch, python), capture_output=True, text=True,
                              env=_environment(settings), cwd=path.parent, check=False)
    except OSError as exc:
        raise WheelTasksError(f"cannot run pip to resolve {path}: {first_line(exc)}") from None
    if done.returncode != 0:
        raise _failure(path, arch, python, done.stderr)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        raise WheelTasksError(f"pip gave no report resolving {path}: {first_line(done.stderr or done.stdout)}") from None
    return Closure(python, arch, closure_of(report, arch, python))


def resolve_file(settings: Settings, path: Path, pythons: Iterable[str], arches: Iterable[Arch]) -> list[Closure]:
    """The closure of ``path`` for each Python and platform, resolved side by side."""
    path = check_file(path)
    wanted = [(python, arch) for python in pythons for arch in arches]
    with ThreadPoolExecutor(max_workers=max(1, min(len(wanted), os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda pa: resolve_one(settings, path, pa[1], pa[0]), wanted))
