"""The one way a job's container runs (the repair fallback, the import check).

A container of the job's builder image (pinned by the plan, by digest) on the job's
platform and engine: the folders it reads mounted read-only, one it writes, the CA bundle
and an index URL with credentials as read-only files at ``/run/secrets/{ca,pipindex}``
(never in its environment, which ``docker inspect`` shows), the package's shell scripts at
``/wheeltasks``, the platform's baseline CPU for QEMU where it has one, its output in the
job's log, and Ctrl-C (``running``) removing it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import docker.errors
from docker.models.containers import Container
from docker.utils.socket import frames_iter

from . import docker_engine, running
from .credentials import docker_credentials
from .errors import BuildError, WheelTasksError, first_line
from .files import private_file
from .imagenames import split_image
from .job import Job
from .settings import Settings
from .urls import split_credentials

LIB = Path(str(resources.files("wheeltasks") / "data" / "lib"))
SECRETS = "/run/secrets"


@dataclass(frozen=True)
class Run:
    """What one container of a job runs: ``sh -c`` of a script (or ``command`` as it is),
    with these folders and environment."""

    command: tuple[str, ...]
    reads: Mapping[Path, str] = field(default_factory=dict)  # host folder -> path in the container
    writes: Mapping[Path, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    index: bool = False  # whether the container talks to the package index
    baseline_cpu: bool = True  # QEMU emulates the platform's baseline CPU (Arch.qemu_cpu)


def image_matches(attrs: Mapping[str, object], platform: str) -> bool:
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
    username, password = docker_credentials(split_image(image)[0], timeout=timeout)
    auth = {"username": username, "password": password} if username or password else {}
    try:
        return str(client.images.pull(image, platform=platform, auth_config=auth).id)
    except docker.errors.APIError as exc:
        raise WheelTasksError(
            f"builder image {image} for {platform} is not in the engine and cannot be pulled "
            f"({first_line(exc)}): check BUILDER_IMAGE and the registry"
        ) from exc


def run(settings: Settings, job: Job, spec: Run, log: Path) -> int:
    """Run ``spec`` in a container of the job's builder; its output goes to ``log``; the exit code."""
    client = docker_engine.client(job.engine)
    docker_engine.check_platform(job.arch, job.engine)
    volumes, environment = _mounts(settings, job, spec)
    with _index_secret(settings, spec, environment) as secret:
        if secret is not None:
            volumes[str(secret)] = {"bind": f"{SECRETS}/pipindex", "mode": "ro"}
        container = _create(client, job, list(spec.command), volumes, environment, settings.remote_timeout)
        return _run(container, job, log)


def _mounts(settings: Settings, job: Job, spec: Run) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The container's volumes and environment: the scripts, the spec's folders, the CA, and
    the platform's baseline CPU for QEMU."""
    volumes = {str(LIB): {"bind": "/wheeltasks", "mode": "ro"}}
    volumes |= {str(host.resolve()): {"bind": where, "mode": "ro"} for host, where in spec.reads.items()}
    volumes |= {str(host.resolve()): {"bind": where, "mode": "rw"} for host, where in spec.writes.items()}
    if settings.ca_bundle:
        volumes[str(Path(settings.ca_bundle).expanduser().resolve())] = {"bind": f"{SECRETS}/ca", "mode": "ro"}
    environment = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", **spec.environment}
    # Where QEMU's default CPU is newer than the platform's baseline (an ARMv6 job on an
    # ARM1176): what the wheel needs beyond the baseline traps here, not on a user's board.
    if job.arch.qemu_cpu and spec.baseline_cpu:
        environment["QEMU_CPU"] = job.arch.qemu_cpu
    return volumes, environment


@contextlib.contextmanager
def _index_secret(settings: Settings, spec: Run, environment: dict[str, str]) -> Iterator[Path | None]:
    """The index for a container that needs it: the bare URL in its environment, an URL with
    credentials only as a private file mounted for the container's life."""
    if not spec.index or not settings.pypi_index:
        yield None
        return
    bare, credentials = split_credentials(settings.pypi_index)
    environment["PIP_INDEX_URL"] = bare
    with private_file(settings.pypi_index, "pipindex") if credentials is not None else nullcontext() as secret:
        yield secret


def _run(container: Container, job: Job, log: Path) -> int:
    try:
        with running.container(container):
            container.start()
            status = container.wait()
            log.write_bytes(container.logs(stdout=True, stderr=True))
    except docker.errors.APIError as exc:
        if running.cancelled.is_set():
            raise KeyboardInterrupt from None  # removed by Ctrl-C in another thread
        raise BuildError(f"the engine could not run a container of {job.target}: {first_line(exc)}") from None
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    return int(status.get("StatusCode", 1))


def _create(
    client: docker.DockerClient,
    job: Job,
    command: list[str],
    volumes: dict[str, dict[str, str]],
    environment: dict[str, str],
    timeout: float,
    **options: Any,
) -> Container:
    with _IMAGE_LOCK:
        # By the image's ID, which is of the job's platform (no platform= needed or wanted:
        # the engine would compare it with the image's, which may lack the arm variant).
        return client.containers.create(
            ensure_image(client, job.builder, job.platform, timeout),
            entrypoint=[command[0]],
            command=command[1:],
            network_mode="host",
            volumes=volumes,
            environment=environment,
            **options,
        )


class Attached:
    """A container of a job's builder that keeps running, talked to on its standard input
    and output (the engine's attach stream: stdout and stderr in frames), until closed or
    Ctrl-C (``running``) removes it. Made by :func:`attach`; one caller at a time. The engine
    removes it once it ends."""

    def __init__(self, container: Container, sock: Any) -> None:
        self.container = container
        self._sock = sock
        self._frames = frames_iter(sock, False)  # type: ignore[no-untyped-call]
        self._buffer = b""
        self._tracked = contextlib.ExitStack()
        self._tracked.enter_context(running.container(container))

    def send(self, data: bytes) -> None:
        getattr(self._sock, "_sock", self._sock).sendall(data)

    def read_through(self, marker: bytes) -> bytes:
        """The output up to the end of the line that holds ``marker`` (EOFError: the container
        ended before it; KeyboardInterrupt: Ctrl-C removed it)."""
        while (at := self._buffer.find(marker)) < 0 or (end := self._buffer.find(b"\n", at)) < 0:
            try:
                _, data = next(self._frames)
            except StopIteration:
                if running.cancelled.is_set():
                    raise KeyboardInterrupt from None
                raise EOFError(f"the container ended before {marker!r}") from None
            self._buffer += data
        out, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
        return out

    def close(self) -> None:
        """End the container without waiting: its standard input closes, so its command ends,
        and the engine removes it (as it would if this process were killed)."""
        for end in (self._sock, getattr(self._sock, "_sock", self._sock)):  # docker-py's wrapper, the socket
            with contextlib.suppress(OSError):
                end.close()
        self._tracked.close()


def attach(settings: Settings, job: Job, spec: Run) -> Attached:
    """Start ``spec`` in a container of the job's builder, its standard input kept open."""
    client = docker_engine.client(job.engine)
    docker_engine.check_platform(job.arch, job.engine)
    volumes, environment = _mounts(settings, job, spec)
    container = _create(client, job, list(spec.command), volumes, environment, settings.remote_timeout,
                        stdin_open=True, auto_remove=True)
    try:
        sock = client.api.attach_socket(str(container.id), params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    except BaseException:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        raise
    attached = Attached(container, sock)
    try:
        container.start()
    except BaseException:
        attached.close()
        raise
    return attached


def host_ids() -> dict[str, str]:
    """The host's user and group, for a container to give back what it wrote."""
    return {"HOST_UID": str(os.getuid()), "HOST_GID": str(os.getgid())}
