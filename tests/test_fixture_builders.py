"""The fixture builder images themselves: one multi-platform tag, musl on amd64, arm64 under QEMU."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.fixtures_docker import FIXTURE_PYTHON

pytestmark = pytest.mark.e2e

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)

# Prints the version, the machine and the first libc-specific platform tag pip accepts:
# musllinux on musl and manylinux on glibc, found from the interpreter's own ELF loader.
PROBE = (
    "import platform, sys; from pip._vendor.packaging.tags import sys_tags; "
    "tag = next(t.platform for t in sys_tags() if not t.platform.startswith('linux_')); "
    "print(sys.version.split()[0], platform.machine(), tag)"
)


def _run(client: Any, image: str, platform: str, command: list[str]) -> str:
    output = client.containers.run(image, command, platform=platform, network_mode="host", remove=True)
    return bytes(output).decode().strip()


def test_builder_tag_is_an_index_with_amd64_and_arm64(builder_image: str, fixture_registry: str) -> None:
    repository, tag = builder_image.removeprefix(f"{fixture_registry}/").rsplit(":", 1)
    response = requests.get(
        f"http://{fixture_registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(INDEX_TYPES)},
        timeout=10,
    )
    response.raise_for_status()
    index = response.json()
    assert index["mediaType"] in INDEX_TYPES
    platforms = {
        (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant")) for m in index["manifests"]
    }
    assert {("linux", "amd64", None), ("linux", "arm64", "v8")} <= platforms


def test_amd64_builder_is_musl_python(docker_client: Any, builder_image: str) -> None:
    docker_client.images.pull(builder_image, platform="linux/amd64")
    version, machine, platform_tag = _run(docker_client, builder_image, "linux/amd64", ["python3", "-c", PROBE]).split()
    assert version.startswith(FIXTURE_PYTHON + ".")
    assert machine == "x86_64"
    assert platform_tag == "musllinux_1_2_x86_64", platform_tag
    # auditwheel reads the musl version through Alpine's libc name; `ldd` is musl's.
    assert _run(docker_client, builder_image, "linux/amd64", ["ls", "/lib/libc.musl-x86_64.so.1"])
    assert "musl libc" in _run(docker_client, builder_image, "linux/amd64", ["sh", "-c", "ldd --version 2>&1 || true"])


def test_arm64_builder_runs_under_qemu(docker_client: Any, builder_image: str) -> None:
    docker_client.images.pull(builder_image, platform="linux/arm64/v8")
    version, machine, platform_tag = _run(
        docker_client, builder_image, "linux/arm64/v8", ["python3", "-c", PROBE]
    ).split()
    assert version.startswith(FIXTURE_PYTHON + ".")
    assert machine == "aarch64"
    assert platform_tag.startswith(("manylinux_", "musllinux_")) and platform_tag.endswith("_aarch64"), platform_tag
