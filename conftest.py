"""Test plug-ins: real services the tests start on 127.0.0.1 (index, registry, Docker fixtures).

Markers say what a test needs, and are given from the fixtures it uses (so they cannot
be forgotten): ``docker`` for the Docker engine and the fixture builders, ``services``
for servers a test starts on 127.0.0.1 (pypiserver, static index, docker-registry, the
fault servers, a rate limiter) and for a loopback port a test reaches where nothing listens.
``network`` (the public package index) is marked by hand. Tests with none of them are
pure and run in seconds: ``python3 -m pytest -m 'not docker and not services and not network'``.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures_index",
    "tests.fixtures_registry",
    "tests.fixtures_docker",
    "tests.fixtures_engines",
    "tests.fault_servers",
]

DOCKER_FIXTURES = frozenset({
    "docker_client", "fixture_registry", "builder_template", "builder_image", "first_engine", "second_engine",
})
SERVICE_FIXTURES = frozenset({
    "fixture_dists", "pypiserver_process", "index_server", "make_index_server", "static_index",
    "registry_factory", "registry_plain", "registry_basic", "registry_token", "registry_restartable",
    "fault_server", "closed_port", "rate_limiter",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & DOCKER_FIXTURES:
            item.add_marker(pytest.mark.docker)
        if used & SERVICE_FIXTURES:
            item.add_marker(pytest.mark.services)


@pytest.fixture(autouse=True)
def _nothing_is_being_stopped() -> None:
    """A test that stopped a run in this process (Ctrl-C, SIGTERM) leaves wheeltasks.running's
    "cancelled" set, which refuses every later staging folder and copy: each test starts
    with nothing being stopped, as each command does."""
    from wheeltasks import running

    running.reset()
