"""pytest plugin: the Docker engine, the local registry and the fixture builder images.

Listed in ``pytest_plugins`` by the test suite's conftest (as ``tests.fixtures_docker``).
The services come from ``.ci/services.sh``; the builder images from
``tests/fixtures/builders/build.sh`` (cached by a hash of its inputs, so a session pays
for them only once per change).
Without the services a session skips these tests locally and fails in CI (``CI`` set):
CI must never pass by skipping the end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests

FIXTURE_PYTHON = "3.11"
FIXTURE_REGISTRY = os.environ.get("FIXTURE_REGISTRY", "127.0.0.1:5000")
BUILDER_REPOSITORY = "wheeltasks-fixtures/builder"
BUILDER2_REPOSITORY = "wheeltasks-fixtures/builder2"
BUILDER2_PYTHONS = ("3.11", "3.13")
BUILDERS_DIR = Path(__file__).parent / "fixtures" / "builders"
PACKAGES_DIR = Path(__file__).parent / "fixtures" / "packages"
SERVICES_HINT = "run bash .ci/services.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def _unavailable(message: str) -> NoReturn:
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A ``docker.from_env()`` client whose engine answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        _unavailable(f"no Docker engine: {SERVICES_HINT} ({exc.__class__.__name__})")
    yield client
    client.close()


@pytest.fixture(scope="session")
def fixture_registry() -> str:
    """``host:port`` of the plain-HTTP registry on loopback."""
    try:
        response = requests.get(f"http://{FIXTURE_REGISTRY}/v2/", timeout=5)
    except requests.RequestException as exc:
        _unavailable(f"no registry on {FIXTURE_REGISTRY}: {SERVICES_HINT} ({exc.__class__.__name__})")
    if response.status_code != 200:
        _unavailable(f"registry on {FIXTURE_REGISTRY} answered {response.status_code} to /v2/: {SERVICES_HINT}")
    return FIXTURE_REGISTRY


@pytest.fixture(scope="session")
def fixture_python() -> str:
    return FIXTURE_PYTHON


@pytest.fixture(scope="session")
def builder_template(docker_client: Any, fixture_registry: str) -> str:
    """The builder image template for Settings (``{python}`` is filled in per job).

    Runs the (cached) fixture build first: from scratch about 24 minutes on two cores
    (eight builders side by side, measured 1,452 s on 2026-12-07), a cached run well
    under a second.
    """
    env = {**os.environ, "FIXTURE_REGISTRY": fixture_registry}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILDERS_DIR / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        pytest.fail(f"fixture builder images failed to build (exit {result.returncode}):\n{tail}", pytrace=False)
    print(f"fixture builders ready in {time.monotonic() - started:.1f} s")
    return f"{fixture_registry}/{BUILDER_REPOSITORY}:py{{python}}"


@pytest.fixture(scope="session")
def builder2_template(builder_template: str) -> str:
    """The builders with a second Python (build.sh makes them with the others): py3.11 is the
    same multi-platform index as ``builder_template``'s, py3.13 is linux/amd64 only."""
    return builder_template.replace(f"/{BUILDER_REPOSITORY}:", f"/{BUILDER2_REPOSITORY}:")


@pytest.fixture(scope="session")
def builder_image(builder_template: str) -> str:
    """The multi-platform builder tag for :data:`FIXTURE_PYTHON`."""
    return builder_template.format(python=FIXTURE_PYTHON)
