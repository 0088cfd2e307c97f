"""Checks that a Docker engine, buildx and the job's platform can do the work.

Each check raises :class:`WheelTasksError` saying how to fix what is missing, and
caches its answer for the process: a plan of many jobs asks each engine once.
Without an :class:`Endpoint` a check is about the default engine (``DOCKER_HOST`` or
the local socket), as it always was; with one, about that engine (a buildx node's).
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.tls
from docker.utils import kwargs_from_env

from .errors import RemoteError, WheelTasksError, first_line
from .targets import Arch, find_arch, host_machine, runs_natively

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# Seconds one call to an engine may take (docker-py's own default); a node that does
# not answer in that time is reported as unreachable rather than waited for.
ENGINE_TIMEOUT = 60


@dataclass(frozen=True)
class Endpoint:
    """A Docker engine's address as a docker context holds it (hashable: clients are cached by it).

    ``tls_dir`` is the context's TLS folder (``ca.pem``, ``cert.pem``, ``key.pem``), empty
    for an engine without TLS; ``context`` names the docker context it came from, for messages.
    """

    host: str
    tls_dir: str = ""
    skip_tls_verify: bool = False
    context: str = ""

    @property
    def local(self) -> bool:
        """Whether the engine runs on this machine's kernel (a unix socket), so its binfmt is ours."""
        return self.host.startswith("unix://")

    def __str__(self) -> str:
        return f"{self.host} (context {self.context})" if self.context and self.context != self.host else self.host


def docker_host() -> str:
    """Where the docker SDK will look for the engine (DOCKER_HOST or the default socket)."""
    base_url = kwargs_from_env().get("base_url")
    return str(base_url) if base_url else "unix:///var/run/docker.sock"


@functools.cache
def client(endpoint: Endpoint | None = None) -> docker.DockerClient:
    """A docker SDK client for an engine that answers; an error saying how to start one.

    Without ``endpoint``: the default engine (an error of the user's set-up, exit 2).
    With one: that engine, a build node's (a :class:`RemoteError` naming it, exit 4).
    """
    if endpoint is None:
        return _default_client()
    try:
        engine = docker.DockerClient(
            base_url=endpoint.host,
            tls=_tls_config(endpoint),
            use_ssh_client=endpoint.host.startswith("ssh://"),  # the ssh command, as the docker CLI does
            timeout=ENGINE_TIMEOUT,
        )
        engine.ping()
    except docker.errors.DockerException as exc:
        look = f"`docker context inspect {endpoint.context}`" if endpoint.context else "the buildx node's endpoint"
        raise RemoteError(
            f"the Docker engine at {endpoint} does not answer ({first_line(exc)}): start it, fix {look}, or change BUILDERS"
        ) from exc
    return engine


def _default_client() -> docker.DockerClient:
    where = docker_host()
    hint = (
        f"no Docker engine answers at {where}: start dockerd "
        "(e.g. `dockerd --bridge=none --iptables=false &` or `systemctl start docker`) "
        "or point DOCKER_HOST at a running engine"
    )
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise WheelTasksError(f"{hint} ({first_line(exc)})") from exc
    return engine


def _tls_config(endpoint: Endpoint) -> docker.tls.TLSConfig | bool:
    """TLS for a ``tcp://`` context with TLS material, as ``docker --context`` would use it."""
    if not endpoint.tls_dir and not endpoint.skip_tls_verify:
        return False
    cert, key, ca = (_pem(endpoint, name) for name in ("cert.pem", "key.pem", "ca.pem"))
    return docker.tls.TLSConfig(
        client_cert=(cert, key) if cert and key else None,
        ca_cert=ca,
        verify=not endpoint.skip_tls_verify,
    )


def _pem(endpoint: Endpoint, name: str) -> str | None:
    path = Path(endpoint.tls_dir) / name
    return str(path) if endpoint.tls_dir and path.is_file() else None


@functools.cache
def engine_machine(endpoint: Endpoint | None = None) -> str:
    """The machine an engine runs on, as wheels spell it (``x86_64``, ``aarch64``).

    The default engine is taken to be this host (as the checks always did); any other
    engine is asked (``docker info``), since a node may be another machine.
    """
    if endpoint is None:
        return host_machine()
    reported = str(client(endpoint).info().get("Architecture") or "")
    arch = find_arch(reported)
    return arch.machine if arch is not None else reported


def engine_cpus(endpoint: Endpoint | None = None) -> int:
    """How many CPUs an engine has (``docker info``), at least 1."""
    return max(1, int(client(endpoint).info().get("NCPU") or 1))


@functools.cache
def buildx_version() -> str:
    """``docker buildx version`` output; an error saying how to install the plugin."""
    hint = (
        "buildx is missing: install the docker-buildx plugin (Debian/Ubuntu package "
        "docker-buildx or docker-buildx-plugin, or its binary in ~/.docker/cli-plugins/docker-buildx)"
    )
    try:
        done = subprocess.run(
            ["docker", "buildx", "version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelTasksError(f"{hint} ({first_line(exc)})") from exc
    if done.returncode != 0:
        raise WheelTasksError(f"{hint} ({first_line(done.stderr or done.stdout)})")
    return done.stdout.strip()


def platform_problem(arch: Arch, machine: str, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why containers of ``arch`` cannot run on a ``machine`` host, or None when they can."""
    if runs_natively(arch, machine):
        return None
    name = f"qemu-{arch.qemu}"
    fix = (
        "install qemu-user-static and binfmt-support, mount binfmt_misc "
        f"(`mount -t binfmt_misc binfmt_misc {binfmt_dir}`) and run `update-binfmts --enable`"
    )
    entry = binfmt_dir / name
    try:
        text = entry.read_text(encoding="utf-8")
    except OSError:
        return f"{arch.platform} cannot run on this {machine} host: no QEMU binfmt handler {entry}; {fix}"
    lines = text.splitlines()
    if not lines or lines[0].strip() != "enabled":
        return f"{arch.platform} cannot run on this {machine} host: {entry} is disabled; run `update-binfmts --enable {name}`"
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if "F" not in flags:
        # Without the fix-binary flag the interpreter is looked up inside the container,
        # where it does not exist ("exec format error" or "no such file").
        return (
            f"{arch.platform} cannot run in containers: {entry} lacks the F (fix-binary) flag; "
            "install Debian's qemu-user-static (it registers with F) and run `update-binfmts --enable`"
        )
    return None


@functools.cache
def check_platform(arch: Arch, endpoint: Endpoint | None = None) -> None:
    """Raise when an engine cannot run containers of ``arch`` (not native, no QEMU).

    A remote engine's binfmt handlers cannot be read from here: for those only the
    native case is decided, and buildx's platform list of the node (which names an
    emulated platform only when its QEMU handler exists) is what
    :meth:`wheeltasks.engines.Engines.route` checks.
    """
    machine = engine_machine(endpoint)
    if endpoint is not None and not endpoint.local and not runs_natively(arch, machine):
        return
    problem = platform_problem(arch, machine)
    if problem is not None:
        raise WheelTasksError(problem)


def check_build(arch: Arch, endpoint: Endpoint | None = None) -> None:
    """Everything a build of ``arch`` needs: an engine, buildx, and a way to run the platform."""
    client(endpoint)
    buildx_version()
    check_platform(arch, endpoint)
