"""From a requirements file to an installable index and a wheel set image, end to end: real
distributions from the public index, for amd64, arm64 and armv7, on the fixture builders and
the real registry.

The file has a pure distribution (six), a range (idna>=3,<4), one on the stable ABI
(psutil: the index has its abi3 musllinux wheels for x86_64 and aarch64, none for armv7,
which is built), a per-Python C extension (markupsafe) and one a marker leaves out on armv7
(pyyaml). One `build -r` takes or builds every wheel of each platform's closure; pip in
each platform's own builder installs the whole file from the index the run wrote (as `inv
index` does), served on loopback, and what it installs is what the run resolved; the wheel
set image, used by the Dockerfile lines the run and `snippet -r` print, installs the same
set on each platform.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.utils import canonicalize_name

from tests.fixtures_registry import RegistryServer
from tests.helpers import e2e_env, wheeltasks_cli
from tests.test_cross_e2e import run_in_builder
from tests.test_simpleindex import serve

pytestmark = [pytest.mark.docker, pytest.mark.network]

REQUIREMENTS = """\
# an application's requirements
six
idna>=3,<4
psutil
markupsafe
pyyaml ; platform_machine != "armv7l"
"""
PLATFORMS = {"amd64": "linux/amd64", "arm64v8": "linux/arm64/v8", "armv7": "linux/arm/v7"}
IMPORTS = "import six, idna, psutil, markupsafe"

Run = tuple[Path, dict[str, str], dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, builder_template: str, registry_plain: RegistryServer) -> Run:
    root = tmp_path_factory.mktemp("requirements")
    env = e2e_env(root, builder_template, ARCHES=" ".join(PLATFORMS), NO_PULL_WHEELS="1",
                  WHEELS_REGISTRY=f"{registry_plain.host}/reqs", DO_PUSH="1")
    (root / "requirements.txt").write_text(REQUIREMENTS)
    done = wheeltasks_cli(env, "build", "-r", "requirements.txt", "--json")
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads(done.stdout)
    # The run ends with the lines a Dockerfile needs (as `snippet -r` prints them).
    (wheel_set,) = report["wheel_sets"]
    assert f"FROM --platform=$TARGETPLATFORM {wheel_set['image']} AS " in done.stderr
    return root, env, report


def platform_image(image: str, platform: str) -> str:
    """``image`` (a multi-platform tag on a plain-HTTP registry) by its manifest for ``platform``."""
    host, _, rest = image.partition("/")
    repo, _, tag = rest.rpartition(":")
    index = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", timeout=30,
                         headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                                            "application/vnd.docker.distribution.manifest.list.v2+json"}).json()
    os_, arch, *variant = platform.split("/")
    for entry in index["manifests"]:
        p = entry["platform"]
        if (p["os"], p["architecture"], p.get("variant", "")) == (os_, arch, variant[0] if variant else ""):
            return f"{host}/{repo}@{entry['digest']}"
    raise AssertionError(f"{image} has no {platform} manifest")


def closure(report: dict[str, Any], arch: str) -> set[tuple[str, str]]:
    return {(j["module"], j["version"]) for j in report["jobs"] if j["arch"] == arch}


def test_each_platform_gets_its_closure_built_only_where_the_index_has_none(run: Run) -> None:
    root, _, report = run
    names = {arch: {name for name, _ in closure(report, arch)} for arch in PLATFORMS}
    assert names["amd64"] == names["arm64v8"] == {"six", "idna", "psutil", "markupsafe", "pyyaml"}
    assert names["armv7"] == {"six", "idna", "psutil", "markupsafe"}  # the marker, for armv7l
    versions = {name: version for arch in PLATFORMS for name, version in closure(report, arch)}
    assert versions["idna"].startswith("3.")
    results = {(j["module"], j["arch"]): j["result"] for j in report["jobs"]}
    assert results[("psutil", "armv7")] == "built"  # no abi3 wheel for armv7 on the index
    assert results[("psutil", "arm64v8")] == results[("six", "armv7")] == "from the index"
    assert report["built"] < len(report["jobs"]) / 2  # the index's wheels are taken
    for arch in PLATFORMS:
        exported = {canonicalize_name(w.name.split("-")[0]) for w in (root / "wheels" / arch).glob("*.whl")}
        assert exported == names[arch], arch


def test_pip_on_each_platform_installs_the_file_from_the_written_index(run: Run, docker_client: Any,
                                                                       builder_image: str) -> None:
    root, _, report = run
    assert (root / "index" / "index.html").is_file()  # the run of -r FILE wrote it, as `inv index` does
    script = (
        "set -e; python3 -m pip install -q --index-url {url} --report /tmp/report.json -r /wheels/requirements.txt; "
        "python3 -c 'import json; print(\"INSTALLED\", json.dumps([[i[\"metadata\"][\"name\"], "
        "i[\"metadata\"][\"version\"]] for i in json.load(open(\"/tmp/report.json\"))[\"install\"]]))'; "
        f"python3 -c '{IMPORTS}; print(\"IMPORTED\")'"
    )
    with serve(root / "index") as served:
        for arch, platform in PLATFORMS.items():
            out = run_in_builder(docker_client, builder_image, platform, root, script.format(url=served.url))
            line = next(line for line in out.splitlines() if line.startswith("INSTALLED "))
            installed = {(canonicalize_name(name), version) for name, version in json.loads(line.split(" ", 1)[1])}
            # pip's own resolution on the platform is the run's closure for it.
            assert installed == closure(report, arch), arch
            assert "IMPORTED" in out


def test_the_wheel_set_image_installs_the_set_through_the_printed_snippet(run: Run, builder_image: str) -> None:
    root, env, report = run
    (wheel_set,) = report["wheel_sets"]
    assert wheel_set["platforms"] == list(PLATFORMS.values())
    done = wheeltasks_cli(env, "snippet", "-r", "requirements.txt")
    assert done.returncode == 0, done.stderr
    assert f"FROM --platform=$TARGETPLATFORM {wheel_set['image']} AS " in done.stdout
    consumer = root / "consumer"
    consumer.mkdir()
    (consumer / "requirements.txt").write_text(REQUIREMENTS)
    # The snippet's final stage is python:3.11-alpine, which no registry here has: the fixture
    # builder is that image here (this engine's BuildKit has no named contexts to map it), by
    # its platform's digest (the engine's image store keeps one platform per tag).
    assert "\nFROM python:3.11-alpine\n" in done.stdout
    for platform in PLATFORMS.values():
        base = platform_image(builder_image, platform)
        dockerfile = done.stdout.replace("\nFROM python:3.11-alpine\n", f"\nFROM {base}\n")
        (consumer / "Dockerfile").write_text(dockerfile + f"RUN python3 -c '{IMPORTS}'\n")
        build = subprocess.run(
            ["docker", "buildx", "build", "--platform", platform, "--network", "host", "--output", "type=cacheonly",
             str(consumer)],
            capture_output=True, text=True, timeout=900)
        assert build.returncode == 0, build.stderr[-3000:]
