"""Build once, publish everywhere, end to end: on the builders with two Pythons (3.11 and
3.13, linux/amd64; 3.11 also on linux/arm64), the fixture index (pypiserver) and the real
registry. One run shows every source a job's wheel can have:

- wtzlib (a C extension, per Python): built by each Python's job;
- wtpure 1.1.0 (an sdist; the index's 1.0.0 wheel is pure): built once, by the native
  3.11 job, and taken by the 3.13 job and the arm64 job;
- wtabi (a C extension on the stable ABI; the index's 0.9.0 wheel is abi3): built by the
  3.11 job, taken by the 3.13 job, which imports it on 3.13;
- wtplain 1.5.0 (its pure wheel is on the index): downloaded, checked and imported, no build;
- wtturn 2.0.0 (its 1.0.0 wheel was pure, 2.0.0 compiles): the 3.13 job waits for the 3.11
  one, finds its wheel serves only 3.11 and builds its own, as without reuse.

Every image is complete (each tag a manifest per platform with the module's wheel), and the
one wheel of wtpure under three platform manifests went to the registry once.

A second run builds both kinds (BUILD_BOTH): the no-shared kind is the shared build without
the repair, so wtabi's no-shared jobs take the shared 3.11 job's wheel as it was built
(``linux_x86_64``) and one build serves four jobs; wtzlib, with a recipe that reads $KIND,
builds each kind itself.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures_registry import RegistryServer
from tests.helpers import e2e_env, wheeltasks_cli

pytestmark = pytest.mark.docker

TARGETS = ("wtzlib-pyall-amd64", "wtpure1.1.0-pyall-amd64", "wtpure1.1.0-py3.11-arm64",
           "wtabi-pyall-amd64", "wtplain1.5.0-pyall-amd64", "wtturn-pyall-amd64")
INDEX_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, builder2_template: str, index_server: str, registry_plain: RegistryServer
) -> tuple[Path, dict[str, str], subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("sources")
    env = e2e_env(root, builder2_template, PYTHON_VERSIONS="3.11 3.13", PYPI_INDEX=index_server, NO_PULL_WHEELS="1",
                  WHEELS_REGISTRY=f"{registry_plain.host}/sources", DO_PUSH="1")
    return root, env, wheeltasks_cli(env, "build", *TARGETS, "--json")


def jobs(done: subprocess.CompletedProcess[str]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(j["module"], j["python"], j["arch"]): j for j in json.loads(done.stdout)["jobs"]}


def test_each_job_shows_where_its_wheel_came_from(run: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]]) -> None:
    _, _, done = run
    assert done.returncode == 0, done.stderr[-5000:]
    got = {key: (j["source"], j["result"], j["took"]) for key, j in jobs(done).items()}
    assert got == {
        ("wtzlib", "3.11", "amd64"): ("build", "built", None),
        ("wtzlib", "3.13", "amd64"): ("build", "built", None),
        ("wtpure", "3.11", "amd64"): ("build", "built", None),
        ("wtpure", "3.13", "amd64"): ("reuse", "took a build", "wtpure1.1.0-py3.11-amd64"),
        ("wtpure", "3.11", "arm64v8"): ("reuse", "took a build", "wtpure1.1.0-py3.11-amd64"),
        ("wtabi", "3.11", "amd64"): ("build", "built", None),
        ("wtabi", "3.13", "amd64"): ("reuse", "took a build", "wtabi1.0.0-py3.11-amd64"),
        ("wtplain", "3.11", "amd64"): ("index", "from the index", "wtplain-1.5.0-py3-none-any.whl"),
        ("wtplain", "3.13", "amd64"): ("index", "from the index", "wtplain-1.5.0-py3-none-any.whl"),
        ("wtturn", "3.11", "amd64"): ("build", "built", None),
        # planned as a reuse (1.0.0 was pure); 2.0.0's wheel serves only 3.11: built
        ("wtturn", "3.13", "amd64"): ("build", "built", None),
    }, got
    turn = jobs(done)[("wtturn", "3.13", "amd64")]
    assert turn["planned_source"] == "reuse" and "does not serve Python 3.13" in turn["not_taken"]
    # What was taken had no build container; every wheel was imported on its job's Python.
    for key, job in jobs(done).items():
        work = Path(job["work_dir"])
        assert (work / "build.log").exists() is (job["source"] == "build"), key
        assert f"import {key[0]}: ok" in (work / "check.log").read_text(), key
    check = (Path(jobs(done)[("wtabi", "3.13", "amd64")]["work_dir"]) / "check.log").read_text()
    assert "importing on Python 3.13" in check
    report = json.loads(done.stdout)
    assert (report["built"], report["took_build"], report["from_index"]) == (6, 3, 2)
    # Eleven import checks, three containers: one per builder and platform (3.11 and 3.13 on
    # amd64, 3.11 on arm64), each check a child of the one Python there (checkers.py).
    assert report["check_containers"] == 3


def test_the_wheels_are_the_ones_a_build_would_give(run: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]]) -> None:
    root, _, done = run
    assert done.returncode == 0
    amd64 = sorted(p.name for p in (root / "wheels" / "amd64").glob("*.whl"))
    assert amd64 == [
        "wtabi-1.0.0-cp311-abi3-musllinux_1_2_x86_64.whl",  # one file for 3.11 and 3.13
        "wtplain-1.5.0-py3-none-any.whl",
        "wtpure-1.1.0-py3-none-any.whl",
        "wtturn-2.0.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        "wtturn-2.0.0-cp313-cp313-musllinux_1_2_x86_64.whl",
        "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        "wtzlib-1.0.0-cp313-cp313-musllinux_1_2_x86_64.whl",
    ]
    assert sorted(p.name for p in (root / "wheels" / "arm64v8").glob("*.whl")) == ["wtpure-1.1.0-py3-none-any.whl"]
    assert (root / "wheels" / "arm64v8" / "wtpure-1.1.0-py3-none-any.whl").read_bytes() == (
        root / "wheels" / "amd64" / "wtpure-1.1.0-py3-none-any.whl").read_bytes()


def _get(registry: RegistryServer, repo: str, reference: str, accept: str) -> dict[str, Any]:
    answer = requests.get(f"http://{registry.host}/v2/{repo}/manifests/{reference}", headers={"Accept": accept}, timeout=30)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def test_images_are_complete_and_a_shared_wheel_is_uploaded_once(
    run: tuple[Path, dict[str, str], subprocess.CompletedProcess[str]], registry_plain: RegistryServer
) -> None:
    _, _, done = run
    assert done.returncode == 0
    repo = "sources/python-musl-wheels"
    layers: dict[tuple[str, str], str] = {}
    for tag, platforms in (("wtpure1.1.0-py3.11", {"amd64", "arm64"}), ("wtpure1.1.0-py3.13", {"amd64"}),
                           ("wtabi1.0.0-py3.13", {"amd64"}), ("wtplain1.5.0-py3.13", {"amd64"})):
        index = _get(registry_plain, repo, tag, INDEX_TYPES)
        assert {m["platform"]["architecture"] for m in index["manifests"]} == platforms, tag
        for entry in index["manifests"]:
            manifest = _get(registry_plain, repo, entry["digest"], MANIFEST_TYPES)
            (layer,) = manifest["layers"]  # the module's wheel (none of these has dependencies)
            layers[(tag, entry["platform"]["architecture"])] = layer["digest"]
    pure = {layers[("wtpure1.1.0-py3.11", "amd64")], layers[("wtpure1.1.0-py3.11", "arm64")],
            layers[("wtpure1.1.0-py3.13", "amd64")]}
    assert len(pure) == 1, layers  # one blob under three platform manifests
    (digest,) = pure
    # The registry's own log of the blob uploads that completed (PUT …/blobs/uploads/…?digest=).
    uploads = [line for line in registry_plain.log.read_text().splitlines()
               if "http.request.method=PUT" in line and "/blobs/uploads/" in line
               and f"digest={digest}" in line.replace("%3A", ":")]
    assert len(uploads) == 1, uploads


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, builder2_template: str, index_server: str, registry_plain: RegistryServer
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("sources-both")
    shutil.copytree(FIXTURES / "recipes", root / "scripts")  # wtzlib.sh prints $KIND
    env = e2e_env(root, builder2_template, PYTHON_VERSIONS="3.11 3.13", PYPI_INDEX=index_server, NO_PULL_WHEELS="1",
                  WHEELS_REGISTRY=f"{registry_plain.host}/sources-both", DO_PUSH="1", BUILD_BOTH="1")
    return root, wheeltasks_cli(env, "build", "wtabi-pyall-amd64", "wtzlib-py3.11-amd64", "--json")


def test_the_no_shared_kind_takes_the_shared_build_before_its_repair(
    both: tuple[Path, subprocess.CompletedProcess[str]], registry_plain: RegistryServer
) -> None:
    root, done = both
    assert done.returncode == 0, done.stderr[-5000:]
    got = {(j["module"], j["python"], j["kind"]): (j["source"], j["result"], j["took"])
           for j in json.loads(done.stdout)["jobs"]}
    assert got == {
        ("wtabi", "3.11", "shared"): ("build", "built", None),
        ("wtabi", "3.13", "shared"): ("reuse", "took a build", "wtabi1.0.0-py3.11-amd64"),
        ("wtabi", "3.11", "no-shared"): ("reuse", "took a build", "wtabi1.0.0-py3.11-amd64"),
        ("wtabi", "3.13", "no-shared"): ("reuse", "took a build", "wtabi1.0.0-py3.11-amd64"),
        ("wtzlib", "3.11", "shared"): ("build", "built", None),
        ("wtzlib", "3.11", "no-shared"): ("build", "built", None),  # its recipe reads $KIND
    }, got
    by_key = {(j["module"], j["python"], j["kind"]): j for j in json.loads(done.stdout)["jobs"]}
    built = Path(by_key[("wtabi", "3.11", "shared")]["work_dir"]) / "built"
    (as_built,) = built.glob("wtabi-*.whl")
    assert as_built.name == "wtabi-1.0.0-cp311-abi3-linux_x86_64.whl"
    for python in ("3.11", "3.13"):
        job = by_key[("wtabi", python, "no-shared")]
        work = Path(job["work_dir"])
        assert not (work / "build.log").exists() and f"importing on Python {python}" in (work / "check.log").read_text()
    # wheels/ holds the repaired wheel and, byte for byte, the one as built: the no-shared kind's.
    exported = root / "wheels" / "amd64"
    assert sorted(p.name for p in exported.glob("wtabi-*.whl")) == [
        "wtabi-1.0.0-cp311-abi3-linux_x86_64.whl", "wtabi-1.0.0-cp311-abi3-musllinux_1_2_x86_64.whl"]
    assert (exported / as_built.name).read_bytes() == as_built.read_bytes()
    assert "KIND=no-shared" in Path(by_key[("wtzlib", "3.11", "no-shared")]["work_dir"], "build.log").read_text()
    # The no-shared image of 3.13 holds that wheel.
    repo = "sources-both/python-alpine-wheels"
    index = _get(registry_plain, repo, "wtabi1.0.0-py3.13", INDEX_TYPES)
    (entry,) = index["manifests"]
    (layer,) = _get(registry_plain, repo, entry["digest"], MANIFEST_TYPES)["layers"]
    blob = requests.get(f"http://{registry_plain.host}/v2/{repo}/blobs/{layer['digest']}", timeout=30)
    blob.raise_for_status()
    with tarfile.open(fileobj=io.BytesIO(blob.content)) as tar:
        wheels = {m.name.rsplit("/", 1)[-1]: tar.extractfile(m) for m in tar.getmembers() if m.name.endswith(".whl")}
        assert list(wheels) == [as_built.name]
        held = wheels[as_built.name]
        assert held is not None and held.read() == as_built.read_bytes()
