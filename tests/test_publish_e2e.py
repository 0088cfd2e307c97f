"""The whole product on real services: fixture builders in Docker (musl on amd64, and on
arm64 under QEMU), the fixture index, and Debian's docker-registry on 127.0.0.1.

`inv all --push` publishes every image of the fixture default set; an immediate second
run builds and uploads nothing; a consumer Dockerfile installs from a wheel image; a
legacy per-arch tag is pulled and used; a wrong password is one clear line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.fixtures_registry import PASSWORD, RegistryServer
from tests.helpers import make_settings
from wheeltasks.builders import pinned
from wheeltasks.targets import get_arch

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
# wtdep needs wtzlib's wheel image first; wtzlib builds with no recipe at all.
RECIPES = {"wtdep.sh": 'mod_depends="wtzlib"\n'}


def project(tmp_path: Path, builder_template: str, index_server: str, registry: str) -> dict[str, str]:
    """A project folder with the fixture recipes, and the environment that configures it."""
    scripts = tmp_path / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    for name, text in RECIPES.items():
        (scripts / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DO_", "NO_", "WHEELS_", "PYPI_"))}
    env.update(
        WHEELTASKS_PROJECT_DIR=str(tmp_path),
        WHEELTASKS_CACHE_DIR=str(tmp_path / "cache"),
        BUILDER_IMAGE=builder_template,
        PYPI_INDEX=index_server,
        WHEELS_REGISTRY=registry,
        DEFAULT_MODULES="wtzlib wtdep",
        CORE_MODULES="wtzlib",
        PYTHON_VERSIONS="3.11",
        ARCHES="amd64 arm64v8",
    )
    return env


def inv(env: dict[str, str], *args: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), *args],
        cwd=env["WHEELTASKS_PROJECT_DIR"], env=env, capture_output=True, text=True, timeout=timeout,
    )
    sys.stderr.write(done.stderr[-4000:])
    return done


def summary(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if "summary:" in line]
    assert lines, done.stderr[-3000:]
    return lines[-1]


def skopeo_raw(image: str) -> dict[str, object]:
    done = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    data: dict[str, object] = json.loads(done.stdout)
    return data


def platforms(index: dict[str, object]) -> set[str]:
    manifests = index["manifests"]
    assert isinstance(manifests, list)
    return {"/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"],
                                   m["platform"].get("variant")))) for m in manifests}


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
    builder_template: str,
    index_server: str,
    registry_plain: RegistryServer,
) -> tuple[dict[str, str], subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`inv all --push` run twice on a fresh project."""
    tmp_path = tmp_path_factory.mktemp("all-push")
    env = project(tmp_path, builder_template, index_server, f"{registry_plain.host}/e2e")
    first = inv(env, "all", "--push")
    second = inv(env, "all", "--push")
    return env, first, second


def test_all_push_publishes_every_image(
    published: tuple[dict[str, str], subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]],
) -> None:
    env, first, _ = published
    assert first.returncode == 0, first.stderr[-3000:]
    # 2 modules x 1 Python x 2 arches x 2 kinds, core (wtzlib) first: the shared jobs build,
    # and the no-shared ones take their wheels as built (the kinds build alike).
    assert "built 4, reused 0 from existing images, took 4 from other jobs' builds" in summary(first)
    registry = env["WHEELS_REGISTRY"]
    for repo in ("python-musl-wheels", "python-alpine-wheels"):
        for tag in ("wtzlib1.0.0-py3.11", "wtdep1.0.0-py3.11"):
            index = skopeo_raw(f"{registry}/{repo}:{tag}")
            assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
            assert platforms(index) == {"linux/amd64", "linux/arm64/v8"}
    built = [line for line in first.stderr.splitlines() if line.startswith("[job]")]
    assert [line.split()[1].startswith("wtzlib") for line in built] == [True] * 4 + [False] * 4
    # The shared amd64 wheel is a musllinux one in wheels/amd64, with libz bundled.
    exported = sorted(p.name for p in (Path(env["WHEELTASKS_PROJECT_DIR"]) / "wheels" / "amd64").glob("*.whl"))
    assert "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_x86_64.whl" in exported
    # The arm64 builder is musl too: its shared wheel is a musllinux one.
    exported = sorted(p.name for p in (Path(env["WHEELTASKS_PROJECT_DIR"]) / "wheels" / "arm64v8").glob("*.whl"))
    assert "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_aarch64.whl" in exported


def test_second_run_builds_and_uploads_nothing(
    published: tuple[dict[str, str], subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]],
) -> None:
    _, first, second = published
    assert second.returncode == 0, second.stderr[-3000:]
    assert summary(second).startswith("wheeltasks: summary: built 0, reused 8 from existing images")
    assert "uploaded 0 blob(s) (0 bytes) and 0 manifest(s)" in summary(second)
    assert "uploaded 0 blob(s)" not in summary(first)


def test_consumer_dockerfile_installs_from_the_wheel_image(
    published: tuple[dict[str, str], subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]],
    builder_template: str,
    tmp_path: Path,
) -> None:
    env, first, _ = published
    assert first.returncode == 0
    image = f"{env['WHEELS_REGISTRY']}/python-musl-wheels:wtdep1.0.0-py3.11"
    # The arm64 builder by its digest: the engine keeps one image per tag, and an earlier test
    # may have left the tag on the amd64 image, which the docker driver would take as it is.
    builder = pinned(make_settings(tmp_path, {"BUILDER_IMAGE": builder_template}), "3.11", get_arch("arm64v8"))
    assert "@sha256:" in builder
    (tmp_path / "Dockerfile").write_text(
        f"FROM --platform=$TARGETPLATFORM {image} AS w\n"
        f"FROM {builder}\n"
        "COPY --from=w / /wheels/\n"
        "RUN python3 -m pip install --no-index --find-links /wheels wtdep"
        " && python3 -c 'import wtdep, wtzlib, platform; print(\"CONSUMED\", platform.machine())'\n"
    )
    done = subprocess.run(
        ["docker", "buildx", "build", "--platform", "linux/arm64", "--network", "host", "--progress", "plain",
         "--no-cache", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CONSUMED aarch64" in done.stderr


def test_legacy_per_arch_tag_is_pulled_and_used(
    published: tuple[dict[str, str], subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]],
    tmp_path: Path,
    builder_template: str,
    index_server: str,
    registry_plain: RegistryServer,
) -> None:
    """Old images had one tag per arch: a dependency published only that way is used."""
    from wheeltasks.imageformat import canonical_json, image_manifest, layer_tar
    from wheeltasks.oci import OCI_MANIFEST, sha256_digest
    from wheeltasks.registry import RegistryClient

    env, first, _ = published
    assert first.returncode == 0
    # Publish wtzlib's amd64 wheel, marked by a zip comment, only as a legacy tag.
    built = Path(env["WHEELTASKS_PROJECT_DIR"]) / "wheels" / "amd64" / "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_x86_64.whl"
    marked = tmp_path / "legacy" / built.name
    marked.parent.mkdir()
    marked.write_bytes(built.read_bytes())
    with zipfile.ZipFile(marked, "a") as zf:
        zf.comment = b"from the legacy tag"
    client = RegistryClient(registry_plain.host)
    layer = layer_tar([marked])
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}})
    client.put_blob("legacy/python-musl-wheels", layer)
    client.put_blob("legacy/python-musl-wheels", config)
    client.put_manifest("legacy/python-musl-wheels", "wtzlib1.0.0-py3.11-amd64", OCI_MANIFEST,
                        image_manifest(config, layer, {}))

    env = project(tmp_path / "p", builder_template, index_server, f"{registry_plain.host}/legacy")
    done = inv(env, "build", "wtdep-py3.11-amd64")
    assert done.returncode == 0, done.stderr[-3000:]
    # The planner puts wtzlib (wtdep's mod_depends) first; its job finds the legacy tag,
    # so it is not built, and wtdep's build is offered that wheel.
    assert f"1 wheel(s) from {registry_plain.host}/legacy/python-musl-wheels:wtzlib1.0.0-py3.11" in done.stderr
    assert "built 1, reused 1 from existing images" in summary(done)
    exported = Path(env["WHEELTASKS_PROJECT_DIR"]) / "wheels" / "amd64" / built.name
    assert exported.read_bytes() == marked.read_bytes()  # offered to pip, not rebuilt


def test_wrong_password_is_one_line_and_never_shown(
    tmp_path: Path, builder_template: str, index_server: str, registry_basic: RegistryServer
) -> None:
    env = project(tmp_path, builder_template, index_server, f"{registry_basic.host}/e2e")
    env.update(REGISTRY_USERNAME="wheeler", REGISTRY_PASSWORD="not-" + PASSWORD, NO_BUILD="1")
    done = inv(env, "pull-existing", "wtzlib1.0.0-py3.11-amd64")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("wheeltasks: registry ")
    assert "refused the credentials" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
