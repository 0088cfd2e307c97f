"""Registry credentials from the Docker config (``docker login``) and its credential helpers.

docker-py reads the config (``docker.auth``); a helper it names runs here, within a deadline,
its output captured and never shown (it may quote a secret).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess

import docker.auth
import docker.errors
import docker.utils.config

from . import remote, running
from .errors import WheelTasksError
from .imagenames import DOCKER_HUB_ALIASES
from .oci import json_or_none


def docker_credentials(registry: str, config_path: str | None = None, timeout: float = remote.DEFAULT_TIMEOUT) -> tuple[str, str]:
    """(username, password) for ``registry`` from the Docker config and its credential helpers.

    docker-py reads the config (``docker.auth``); the helper it names runs here, not through
    docker-py's credential store, which waits for it without end and lets its stderr (which
    may quote a secret) reach ours: it gets ``timeout`` seconds, and its output is captured
    and never shown. A config that is not a regular file, or that docker-py cannot read
    (an ``auth`` that is not base64 of user:password, a JSON list), is one line.
    """
    located = docker.utils.config.find_config_file(config_path)
    path = os.fsdecode(located) if isinstance(located, (str, bytes, os.PathLike)) else None
    fix = "fix or remove it, or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
    if path is not None:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError as exc:
            raise WheelTasksError(f"cannot read the Docker config {path} ({exc.strerror}): {fix}") from None
        if not regular:  # a FIFO would block the read for good
            raise WheelTasksError(f"the Docker config {path} is not a regular file: {fix}")
    try:
        config = docker.auth.load_config(config_path=path) if path else docker.auth.AuthConfig({})
        helper = config.get_credential_store(registry)
        auths = docker.auth.AuthConfig({"auths": dict(config.auths)})
    except (docker.errors.DockerException, ValueError, TypeError, AttributeError, KeyError) as exc:
        # ValueError: binascii.Error and UnicodeDecodeError of an "auth"; the others: wrong shapes.
        raise WheelTasksError(f"cannot read the Docker config {path} ({type(exc).__name__}): {fix}") from None
    if isinstance(helper, str) and helper:
        from_helper = _helper_credentials(helper, registry, timeout)
        if from_helper is not None:
            return from_helper
    try:
        entry = docker.auth.resolve_authconfig(auths, registry=registry)
    except (docker.errors.DockerException, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise WheelTasksError(f"cannot read the Docker config {path} ({type(exc).__name__}): {fix}") from None
    if not isinstance(entry, dict):
        return "", ""
    username = entry.get("Username") or entry.get("username") or ""
    password = entry.get("Password") or entry.get("password") or ""
    return str(username), str(password)


def _helper_credentials(name: str, registry: str, timeout: float) -> tuple[str, str] | None:
    """What ``docker-credential-<name> get`` answers for ``registry`` (None: it has none),
    within ``timeout`` seconds; its stderr is read, never shown."""
    program = f"docker-credential-{name}"
    fix = f"check `docker login {registry}` and the helper, or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
    executable = shutil.which(program)
    if executable is None:
        raise WheelTasksError(
            f"the Docker credential helper {program} (named in the Docker config) is not installed: {fix}"
        )
    # The protocol's server name: Docker Hub's is its v1 index URL (as the docker CLI asks).
    server = docker.auth.INDEX_URL if registry in DOCKER_HUB_ALIASES else registry
    try:
        process = running.start(
            [executable, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise WheelTasksError(f"the Docker credential helper {program} could not start ({exc.strerror}): {fix}") from None
    try:
        with running.process(process):
            out, _ = process.communicate(server.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(process)
        raise WheelTasksError(
            f"the Docker credential helper {program} did not answer within {timeout:g} s (REMOTE_TIMEOUT) "
            f"for registry {registry}: stopped it; {fix}"
        ) from None
    except BaseException:
        _end(process)
        raise
    if process.returncode != 0:
        if b"credentials not found" in out:
            return None
        raise WheelTasksError(
            f"the Docker credential helper {program} failed (exit {process.returncode}) for registry {registry}: {fix}"
        )
    answer = json_or_none(out)
    if not isinstance(answer, dict) or not all(isinstance(answer.get(k, ""), str) for k in ("Username", "Secret")):
        raise WheelTasksError(f"the Docker credential helper {program} answered something that is not credentials: {fix}")
    username, secret = answer.get("Username", ""), answer.get("Secret", "")
    if username == docker.auth.TOKEN_USERNAME:
        return "", ""  # an identity token, which this client does not use (as before: docker-py's IdentityToken)
    return (username, secret) if username or secret else None


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill a helper and all it started (its process group), and close its pipes unread: a
    child that outlived it must not keep us reading."""
    running.kill(process)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.wait(5)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
