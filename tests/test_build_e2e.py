"""End-to-end: build → repair → export on the real engine, fixture builders and index.

Uses the session fixtures of tests/fixtures_docker.py (``docker_client``,
``builder_template``: the multi-platform fixture builder tag in the local registry) and
tests/fixtures_index.py (``index_server``: pypiserver with the fixture sdists). Each
build runs once per module (module-scoped fixtures) and several tests read its result.
"""

from __future__ import annotations

import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from packaging.utils import (
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from wheeltasks import builders, pipeline
from wheeltasks.errors import BuildError
from wheeltasks.export import export_dir
from wheeltasks.job import Job, Mode, make_job
from wheeltasks.plan import Plan
from wheeltasks.recipes import load_recipe
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import get_arch, host_machine
from wheeltasks.workdir import State

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).parent / "fixtures"
PYTHON = "3.11"
CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt",)


def ca_bundle() -> str:
    """The host's CA bundle (containers behind a TLS-intercepting proxy need it)."""
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(name) and Path(os.environ[name]).is_file():
            return os.environ[name]
    return next((c for c in CA_CANDIDATES if Path(c).is_file()), "")


@dataclass
class Project:
    """A project folder (scripts/, wheels/, work folder) and Settings for it."""

    root: Path
    env: dict[str, str]

    def settings(self, **flags: Any) -> Settings:
        return Settings.load(config={}, env=self.env, flags=flags)

    def job(self, module: str, version: str, arch: str, kind: Kind = Kind.SHARED, settings: Settings | None = None) -> Job:
        """A job as the plan makes it, its builders pinned by digest (one local tag cannot stand
        for two platforms); built emulated where this machine does not run the platform."""
        settings = settings or self.settings()
        target, here = get_arch(arch), get_arch(host_machine())
        pins = builders.pin_all(settings, [(PYTHON, target), (PYTHON, here)])
        return make_job(
            settings, module=module, version=Version(version), python=PYTHON, arch=target, kind=kind,
            recipe=load_recipe(settings, module, None), mode=Mode.NATIVE if target == here else Mode.EMULATED,
            builder=pins[(PYTHON, target)], build_arch=here, build_builder=pins[(PYTHON, here)],
        )


def make_project(root: Path, recipes: Path | None, index: str | None, builder: str) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    if recipes is not None:
        shutil.copytree(recipes, root / "scripts")
    env = {
        "HOME": str(root / "home"),
        "WHEELTASKS_PROJECT_DIR": str(root),
        "WHEELTASKS_CACHE_DIR": str(root / "cache"),
        "BUILDER_IMAGE": builder,
        "CA_BUNDLE": ca_bundle(),
    }
    if index is not None:
        env["PYPI_INDEX"] = index
    return Project(root, env)


def flow(settings: Settings, job: Job, steps: tuple[str, ...] = ("build", "repair", "import-check", "export")) -> list[Path]:
    """What `inv build` runs for one job (build, repair, export); the exported wheels."""
    pipeline.run(settings, Plan((job,)), steps=steps)
    if settings.noop or "export" not in steps:
        return []
    return [export_dir(settings, job) / wheel.name for wheel in job.work.result_wheels()]


def members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def platform_tags(wheel: Path) -> set[str]:
    return {tag.platform for tag in parse_wheel_filename(wheel.name)[3]}


def only(paths: list[Path], project: str) -> Path:
    found = [p for p in paths if canonicalize_name(parse_wheel_filename(p.name)[0]) == project]
    assert len(found) == 1, paths
    return found[0]


def run_in_builder(client: docker.DockerClient, image: str, platform: str, wheels: Path, script: str) -> str:
    """Run ``script`` in a fresh container of the builder with ``wheels`` at /wheels."""
    # By the ID of the platform's image: the engine keeps one image per tag, which the
    # pulls of other platforms replace.
    image_id = client.images.pull(image, platform=platform).id
    output = client.containers.run(
        image_id,
        entrypoint=["/bin/sh", "-c"],
        command=[script],
        network_mode="host",
        volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
        environment={"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"},
        remove=True,
        stdout=True,
        stderr=True,
    )
    return output.decode() if isinstance(output, bytes) else str(output)


IMPORT_WTZLIB = (
    "set -e; python3 -m pip install --no-index --find-links /wheels wtzlib; "
    "python3 -c 'import platform, wtzlib; print(\"WTIMPORT\", platform.machine(), wtzlib.crc(b\"abc\"))'"
)
CRC_ABC = 891568578  # zlib.crc32(b"abc")


# ---- shared module-scoped state --------------------------------------------------------


@pytest.fixture(scope="module")
def versions(fixture_dists: Any) -> dict[str, str]:
    """Fixture package versions, from the sdists the index serves."""
    found = {}
    for sdist in fixture_dists.source_packages:
        name, version = parse_sdist_filename(sdist.name)
        found[str(name)] = str(version)
    assert {"wtzlib", "wtdep"} <= found.keys(), found
    return found


@pytest.fixture(scope="module")
def wtzlib_version(versions: dict[str, str]) -> str:
    return versions["wtzlib"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, index_server: str, builder_template: str) -> Project:
    return make_project(tmp_path_factory.mktemp("project"), FIXTURES / "recipes", index_server, builder_template)


@pytest.fixture(scope="module")
def timings() -> Iterator[dict[str, float]]:
    times: dict[str, float] = {}
    yield times
    print("\nbuild timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))


@pytest.fixture(scope="module")
def built(project: Project, wtzlib_version: str, timings: dict[str, float]) -> Callable[[str, Kind], tuple[Job, list[Path]]]:
    """``built(arch, kind)``: wtzlib's exported wheels for that arch and kind (built once)."""
    cache: dict[tuple[str, Kind], tuple[Job, list[Path]]] = {}

    def get(arch: str, kind: Kind) -> tuple[Job, list[Path]]:
        if (arch, kind) not in cache:
            # Both kinds export to wheels/<arch>/; a wheels folder per kind keeps both
            # results for the assertions.
            # BuildKit's layer cache outlives test sessions; a cached RUN step prints
            # nothing, so the cheap native builds (whose logs are checked) bypass it.
            settings = project.settings(
                wheels_dir=str(project.root / f"wheels-{kind.value}"), build_no_cache=arch == "amd64"
            )
            job = project.job("wtzlib", wtzlib_version, arch, kind, settings)
            started = time.monotonic()
            cache[arch, kind] = (job, flow(settings, job))
            timings[f"wtzlib {arch} {kind.value}"] = time.monotonic() - started
        return cache[arch, kind]

    return get


# ---- (a) native musl build ---------------------------------------------------------------


# wtzlib links libz and libffi; libz.so.1 is on auditwheel's musllinux/manylinux
# whitelists (never bundled), libffi is not: a repaired wheel carries wtzlib.libs/libffi*.


def test_shared_amd64_is_musllinux_and_imports(
    built: Callable[[str, Kind], tuple[Job, list[Path]]], project: Project, docker_client: docker.DockerClient, builder_template: str
) -> None:
    _job, exported = built("amd64", Kind.SHARED)
    wheel = only(exported, "wtzlib")
    assert wheel.parent == project.root / "wheels-shared" / "amd64"
    assert platform_tags(wheel) == {"musllinux_1_2_x86_64"}
    assert any(m.startswith("wtzlib.libs/libffi") for m in members(wheel)), members(wheel)
    out = run_in_builder(docker_client, builder_template.format(python=PYTHON), "linux/amd64", wheel.parent, IMPORT_WTZLIB)
    assert f"WTIMPORT x86_64 {CRC_ABC}" in out


def test_mod_build_ran_before_pip_wheel(built: Callable[[str, Kind], tuple[Job, list[Path]]]) -> None:
    job, _ = built("amd64", Kind.SHARED)
    log = job.work.build_log.read_text()
    marker = log.index("WTMARKER mod_build ran: MODULE=wtzlib")
    assert "SSL=openssl KIND=shared WHEELS_DIR=/wheels" in log
    assert log.index("wheeltasks: python3 -m pip wheel -v --wheel-dir /wheels", marker) > marker


def test_repairing_again_gives_the_same_bytes(
    built: Callable[[str, Kind], tuple[Job, list[Path]]], project: Project
) -> None:
    """A second repair + export of the same build is no conflict in wheels/ (SOURCE_DATE_EPOCH)."""
    job, exported = built("amd64", Kind.SHARED)
    wheel = only(exported, "wtzlib")
    before = wheel.read_bytes()
    settings = project.settings(wheels_dir=str(project.root / "wheels-shared"))
    assert flow(settings, job, ("repair", "export"))
    assert wheel.read_bytes() == before


def test_no_shared_amd64_is_plain_linux(
    built: Callable[[str, Kind], tuple[Job, list[Path]]], docker_client: docker.DockerClient, builder_template: str
) -> None:
    _job, exported = built("amd64", Kind.NO_SHARED)
    wheel = only(exported, "wtzlib")
    assert platform_tags(wheel) == {"linux_x86_64"}
    assert not any(".libs/" in m for m in members(wheel)), members(wheel)
    # The builder has libffi in its prefix, so the unbundled wheel imports there.
    out = run_in_builder(docker_client, builder_template.format(python=PYTHON), "linux/amd64", wheel.parent, IMPORT_WTZLIB)
    assert f"WTIMPORT x86_64 {CRC_ABC}" in out


# ---- (b) emulated arm64 --------------------------------------------------------------------


def test_shared_arm64_under_qemu_imports(
    built: Callable[[str, Kind], tuple[Job, list[Path]]], project: Project, docker_client: docker.DockerClient, builder_template: str
) -> None:
    _job, exported = built("arm64", Kind.SHARED)
    wheel = only(exported, "wtzlib")
    assert wheel.parent == project.root / "wheels-shared" / "arm64v8"
    tags = platform_tags(wheel)
    assert tags == {"musllinux_1_2_aarch64"}, tags  # the arm64 builder is musl, as on amd64
    assert any(m.startswith("wtzlib.libs/libffi") for m in members(wheel)), members(wheel)
    out = run_in_builder(docker_client, builder_template.format(python=PYTHON), "linux/arm64/v8", wheel.parent, IMPORT_WTZLIB)
    assert f"WTIMPORT aarch64 {CRC_ABC}" in out


# ---- (c) recipes ---------------------------------------------------------------------------


def test_wheel_built_in_script_skips_pip_wheel(
    project: Project, versions: dict[str, str], timings: dict[str, float]
) -> None:
    settings = project.settings(wheels_dir=str(project.root / "wheels-wtdep"), build_no_cache=True)
    job = project.job("wtdep", versions["wtdep"], "amd64", Kind.SHARED, settings)
    started = time.monotonic()
    exported = flow(settings, job)
    timings["wtdep amd64 shared"] = time.monotonic() - started
    log = job.work.build_log.read_text()
    assert "WTMARKER built in script: wtdep" in log
    assert "the recipe built the wheel (WHEEL_BUILT_IN_SCRIPT)" in log
    # The default `pip wheel` would have built the wtzlib dependency too.
    assert [canonicalize_name(parse_wheel_filename(p.name)[0]) for p in exported] == ["wtdep"]


# ---- (d) NOOP ------------------------------------------------------------------------------


def test_noop_builds_nothing(project: Project, wtzlib_version: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = project.settings(noop=True, wheels_dir=str(project.root / "wheels-noop"))
    job = project.job("wtzlib", wtzlib_version, "armv7", Kind.SHARED, settings)
    assert flow(settings, job) == []
    out = capsys.readouterr().out
    assert "docker buildx build --platform linux/arm/v7 --target" in out and "--network host" in out
    assert not job.work.root.exists()
    assert not (project.root / "wheels-noop").exists()


# ---- (e) failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipes", "version", "expected"),
    [
        (FIXTURES / "recipes", "99.0.0", "wtzlib==99.0.0"),
        (FIXTURES / "recipes-failing", None, "WTMARKER recipe failing on purpose"),
    ],
    ids=["missing-version", "failing-recipe"],
)
def test_failed_build_leaves_nothing(
    tmp_path: Path,
    index_server: str,
    builder_template: str,
    wtzlib_version: str,
    recipes: Path,
    version: str | None,
    expected: str,
) -> None:
    failing = make_project(tmp_path / "failing", recipes, index_server, builder_template)
    settings = failing.settings()
    job = failing.job("wtzlib", version or wtzlib_version, "amd64", Kind.SHARED, settings)
    with pytest.raises(BuildError) as caught:
        flow(settings, job)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert "failed" in message and str(job.work.build_log) in message
    assert expected in message  # the log's tail is in the error
    assert not job.work.built.exists()
    assert not (job.work.root / "built.partial").exists()
    assert not settings.wheels_dir.exists() or not any(settings.wheels_dir.rglob("*.whl"))


# ---- index credentials -----------------------------------------------------------------------


def test_index_credentials_are_a_secret(tmp_path: Path, index_server: str, builder_template: str, wtzlib_version: str) -> None:
    """Credentials reach pip through the pipindex secret, never a build arg or a file left behind."""
    with_credentials = index_server.replace("http://", "http://wtuser:wt-s3cret-pw@", 1)
    private = make_project(tmp_path / "private", FIXTURES / "recipes", with_credentials, builder_template)
    # Secrets are not part of BuildKit's cache key: without BUILD_NO_CACHE an earlier
    # build of the same arguments would answer from the layer cache and pip would not run.
    settings = private.settings(build_no_cache=True)
    job = private.job("wtzlib", wtzlib_version, "amd64", Kind.NO_SHARED, settings)
    flow(settings, job, ("build",))
    assert job.work.state() is State.BUILT
    log = job.work.build_log.read_text()
    assert "Looking in indexes: http://wtuser:****@127.0.0.1" in log  # pip used the secret's URL
    leftovers = [p for p in job.work.root.rglob("*") if p.is_file() and b"wt-s3cret-pw" in p.read_bytes()]
    assert leftovers == []


# ---- (f) a real package from the public index ------------------------------------------------


@pytest.mark.network
def test_cffi_from_public_index_on_musl(
    tmp_path: Path, builder_template: str, docker_client: docker.DockerClient, timings: dict[str, float]
) -> None:
    """cffi compiled from source (NO_BINARY) against the builder's musl libffi."""
    public = make_project(tmp_path / "public", None, None, builder_template)
    settings = public.settings(no_binary=True, build_no_cache=True)
    job = public.job("cffi", "1.17.1", "amd64", Kind.SHARED, settings)
    started = time.monotonic()
    exported = flow(settings, job)
    timings["cffi amd64 shared (public index)"] = time.monotonic() - started
    wheel = only(exported, "cffi")
    assert platform_tags(wheel) == {"musllinux_1_2_x86_64"}
    assert "--no-binary cffi" in job.work.build_log.read_text()
    out = run_in_builder(
        docker_client,
        builder_template.format(python=PYTHON),
        "linux/amd64",
        wheel.parent,
        "set -e; python3 -m pip install --no-index --find-links /wheels cffi; "
        "python3 -c 'import cffi; ffi = cffi.FFI(); ffi.cdef(\"int abs(int);\"); "
        "print(\"WTCFFI\", ffi.dlopen(None).abs(-7))'",
    )
    assert "WTCFFI 7" in out
