"""The newest Python from the builder repository's tags (the original asked Docker Hub)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.fixtures_registry import RegistryServer
from tests.helpers import make_wheel
from wheeltasks import builders
from wheeltasks.errors import WheelTasksError
from wheeltasks.imageformat import config_blob, image_manifest, layer_tar
from wheeltasks.job import make_job
from wheeltasks.oci import OCI_MANIFEST
from wheeltasks.registry import RegistryClient
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import get_arch


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("python:{python}-alpine{alpine}", ("docker.io", "library/python", "{python}-alpine{alpine}")),
        ("me/py:{python}", ("docker.io", "me/py", "{python}")),
        ("127.0.0.1:5000/f/builder:py{python}", ("127.0.0.1:5000", "f/builder", "py{python}")),
        ("ghcr.io/o/b:{python}-musl", ("ghcr.io", "o/b", "{python}-musl")),
    ],
)
def test_builder_repository(template: str, expected: tuple[str, str, str]) -> None:
    assert builders.builder_repository(template) == expected


def test_a_template_without_a_tag_is_an_error() -> None:
    with pytest.raises(WheelTasksError, match="has no tag"):
        builders.builder_repository("127.0.0.1:5000/builder")


def test_tag_pythons() -> None:
    tags = ["3.12-alpine3.22", "3.13-alpine3.22", "3.13-alpine3.21", "3.14.1-alpine3.22", "3.99-alpine3.22",
            "latest", "3.15-alpine3.22", "3.15rc1-alpine3.22", "2.7-alpine3.22"]
    assert builders.tag_pythons(tags, "{python}-alpine{alpine}", "3.22") == ["3.12", "3.13", "3.15"]


def settings_for(tmp_path: Path, template: str, **env: str) -> Settings:
    base = {"HOME": str(tmp_path), "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"), "PYPI_INDEX": "http://127.0.0.1:9/s/",
            "BUILDER_IMAGE": template, "PYTHON_VERSIONS": "3.11 3.12"}
    return Settings.load({}, {**base, **env}, {})


def test_newest_python_from_a_real_registry(tmp_path: Path, registry_plain: RegistryServer) -> None:
    client = RegistryClient(registry_plain.host, docker_config=str(tmp_path / "none.json"))
    repo = "bld/python"
    job = make_job(settings_for(tmp_path, "x:{python}"), module="m", version=Version("1"),
                   python="3.12", arch=get_arch("amd64"), kind=Kind.SHARED)
    layer = layer_tar([make_wheel(tmp_path / "w", "m", "1.0", "musllinux_1_2_x86_64")])
    config = config_blob(job.arch, layer, {}, None)
    client.put_blob(repo, layer)
    client.put_blob(repo, config)
    for tag in ("3.11-alpine3.22", "3.13-alpine3.22", "3.14-alpine3.21", "latest"):
        client.put_manifest(repo, tag, OCI_MANIFEST, image_manifest(config, layer, {}))
    settings = settings_for(tmp_path, f"{registry_plain.host}/{repo}:{{python}}-alpine{{alpine}}", ALPINE_VERSION="3.22")
    assert builders.newest_builder_python(settings) == "3.13"  # newer than PYTHON_VERSIONS' 3.12; 3.14 is another Alpine
    # Cached: a new tag is not seen until the cache expires or CLEAN_CACHE.
    client.put_manifest(repo, "3.14-alpine3.22", OCI_MANIFEST, image_manifest(config, layer, {}))
    assert builders.newest_builder_python(settings) == "3.13"
    cleaned = settings_for(tmp_path, f"{registry_plain.host}/{repo}:{{python}}-alpine{{alpine}}",
                           ALPINE_VERSION="3.22", CLEAN_CACHE="1")
    assert builders.newest_builder_python(cleaned) == "3.14"


def test_unreachable_builder_registry_falls_back_to_python_versions(tmp_path: Path, closed_port: int) -> None:
    settings = settings_for(tmp_path, unreachable(closed_port))
    assert builders.newest_builder_python(settings) == "3.12"


def test_each_platform_builder_is_named_by_its_digest(tmp_path: Path, registry_plain: RegistryServer) -> None:
    """A build names its platform's builder by digest: one local tag cannot stand for two platforms."""
    from wheeltasks.build import build_args
    from wheeltasks.images import push_wheels

    settings = settings_for(tmp_path, f"{registry_plain.host}/pin/python-musl-wheels:demo1.0-py{{python}}",
                            WHEELS_REGISTRY=f"{registry_plain.host}/pin")
    client = RegistryClient(registry_plain.host, docker_config=str(tmp_path / "none.json"))
    digests = {}
    for arch, machine in (("amd64", "x86_64"), ("arm64", "aarch64")):
        job = make_job(settings, module="demo", version=Version("1.0"), python="3.12", arch=get_arch(arch),
                       kind=Kind.SHARED)
        wheel = make_wheel(tmp_path / arch, "demo", "1.0", f"musllinux_1_2_{machine}")
        digests[arch] = push_wheels(client, job, [wheel], index_url="http://127.0.0.1:9/s/").manifest_digest
    name = f"{registry_plain.host}/pin/python-musl-wheels"
    assert builders.pinned(settings, "3.12", get_arch("arm64")) == f"{name}@{digests['arm64']}"
    assert builders.pinned(settings, "3.12", get_arch("amd64")) == f"{name}@{digests['amd64']}"
    # A platform the index lacks, and a builder nobody can ask: by tag.
    assert builders.pinned(settings, "3.12", get_arch("s390x")) == f"{name}:demo1.0-py3.12"
    # The plan pins each job's builders (builders.pin_all), and the build names them so.
    pins = builders.pin_all(settings, [("3.12", get_arch("arm64")), ("3.12", get_arch("amd64"))])
    arm = make_job(settings, module="m", version=Version("1"), python="3.12", arch=get_arch("arm64"), kind=Kind.SHARED,
                   builder=pins[("3.12", get_arch("arm64"))], build_arch=get_arch("amd64"),
                   build_builder=pins[("3.12", get_arch("amd64"))])
    args = build_args(settings, arm, cross=True)
    assert args["BUILDER"] == f"{name}@{digests['arm64']}" and args["BUILD_BUILDER"] == f"{name}@{digests['amd64']}"


TEMPLATE = "127.0.0.1:9/nothing/here:{python}"  # only the cache can answer (and it does: nothing is asked)


def unreachable(port: int) -> str:
    """A builder template on a loopback port nothing listens on: the fallback is what answers."""
    return f"127.0.0.1:{port}/nothing/here:{{python}}"


@pytest.mark.parametrize(
    "entry",
    [
        {"at": "now", "pythons": ["3.14"]},
        {"at": None, "pythons": ["3.14"]},
        {"at": True, "pythons": ["3.14"]},
        {"at": float("inf"), "pythons": ["3.14"]},
        {"at": 1e300, "pythons": ["3.14"]},  # from the future
        {"pythons": ["3.14"]},
        {"at": "NOW", "pythons": "3.14"},  # a string: its characters are no Pythons
        {"at": "NOW", "pythons": [3.14]},
        {"at": "NOW", "pythons": ["3.14", "2"]},
        {"at": "NOW", "pythons": ["3.99"]},
        {"at": "NOW", "pythons": [["3.14"]]},
        "3.14",
        ["3.14"],
    ],
)
def test_a_cache_entry_of_the_wrong_shape_is_ignored(tmp_path: Path, entry: Any, closed_port: int) -> None:
    settings = settings_for(tmp_path, unreachable(closed_port))
    key = f"{settings.builder_image} {settings.alpine_version}"
    if isinstance(entry, dict) and entry.get("at") == "NOW":
        entry = {**entry, "at": time.time()}
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / builders.CACHE_FILE).write_text(json.dumps({key: entry}, allow_nan=True))
    assert builders.newest_builder_python(settings) == "3.12"  # PYTHON_VERSIONS' newest, as with no cache


@pytest.mark.parametrize("content", [b"[1, 2]", b"not json", b"\xff\xfe", b"[" * 100_000, b'"text"'])
def test_a_cache_file_of_the_wrong_shape_is_ignored(tmp_path: Path, content: bytes, closed_port: int) -> None:
    settings = settings_for(tmp_path, unreachable(closed_port))
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / builders.CACHE_FILE).write_bytes(content)
    assert builders.newest_builder_python(settings) == "3.12"


def test_a_good_cache_entry_is_used(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TEMPLATE)
    key = f"{settings.builder_image} {settings.alpine_version}"
    settings.cache_dir.mkdir(parents=True)
    (settings.cache_dir / builders.CACHE_FILE).write_text(json.dumps({key: {"at": time.time(), "pythons": ["3.13", "3.14"]}}))
    assert builders.newest_builder_python(settings) == "3.14"


def test_a_fifo_in_place_of_the_cache_is_not_read(tmp_path: Path, closed_port: int) -> None:
    settings = settings_for(tmp_path, unreachable(closed_port))
    settings.cache_dir.mkdir(parents=True)
    os.mkfifo(settings.cache_dir / builders.CACHE_FILE)
    started = time.monotonic()
    assert builders.newest_builder_python(settings) == "3.12"
    assert time.monotonic() - started < 20  # the fallback's own look-up, never a blocked read


def test_clear_cache_removes_the_builder_pythons(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TEMPLATE)
    settings.cache_dir.mkdir(parents=True)
    cached = settings.cache_dir / builders.CACHE_FILE
    cached.write_text("{}")
    leftover = settings.cache_dir / f".{builders.CACHE_FILE}.x1y2.part"
    leftover.write_text("half")
    assert builders.clear_cache(settings) == [cached, leftover]
    assert builders.clear_cache(settings) == []
