"""Test plug-ins: real services the tests start on 127.0.0.1 (index, registry, Docker fixtures)."""

pytest_plugins = [
    "tests.fixtures_index",
    "tests.fixtures_registry",
    "tests.fixtures_docker",
]
