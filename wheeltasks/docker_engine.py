"""Checks that the Docker engine, buildx and the job's platform can do the work.

Each check raises :class:`WheelTasksError` saying how to fix what is missing, and
caches its answer for the process: a plan of many jobs asks the engine once.
"""

from __future__ import annotations

import functools
import platform as host_platform
import subprocess
from pathlib import Path

import docker
import docker.errors
from docker.utils import kwargs_from_env

from .errors import WheelTasksError
from .targets import Arch, find_arch

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")

# The qemu-user binfmt handler (``/proc/sys/fs/binfmt_misc/qemu-<name>``) per machine.
QEMU_NAMES: dict[str, str] = {
    "x86_64": "x86_64",
    "aarch64": "aarch64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i686": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# Machines a host CPU runs without emulation (32-bit modes of 64-bit CPUs).
NATIVE_ALSO: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"i686"}),
    "aarch64": frozenset({"armv7l", "armv6l"}),
}


def docker_host() -> str:
    """Where the docker SDK will look for the engine (DOCKER_HOST or the default socket)."""
    base_url = kwargs_from_env().get("base_url")
    return str(base_url) if base_url else "unix:///var/run/docker.sock"


@functools.cache
def client() -> docker.DockerClient:
    """A docker SDK client for an engine that answers; an error saying how to start one."""
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
        raise WheelTasksError(f"{hint} ({_first_line(exc)})") from exc
    return engine


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
        raise WheelTasksError(f"{hint} ({_first_line(exc)})") from exc
    if done.returncode != 0:
        raise WheelTasksError(f"{hint} ({_first_line(done.stderr or done.stdout)})")
    return done.stdout.strip()


def host_machine() -> str:
    """The host's machine name as Python wheels spell it (``x86_64``, ``aarch64``)."""
    arch = find_arch(host_platform.machine())
    return arch.machine if arch is not None else host_platform.machine()


def platform_problem(arch: Arch, machine: str, binfmt_dir: Path = BINFMT_DIR) -> str | None:
    """Why containers of ``arch`` cannot run on a ``machine`` host, or None when they can."""
    if arch.machine == machine or arch.machine in NATIVE_ALSO.get(machine, frozenset()):
        return None
    name = f"qemu-{QEMU_NAMES.get(arch.machine, arch.machine)}"
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
def check_platform(arch: Arch) -> None:
    """Raise when this host cannot run containers of ``arch`` (not native, no QEMU)."""
    problem = platform_problem(arch, host_machine())
    if problem is not None:
        raise WheelTasksError(problem)


def check_build(arch: Arch) -> None:
    """Everything a build of ``arch`` needs: an engine, buildx, and a way to run the platform."""
    client()
    buildx_version()
    check_platform(arch)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
