"""Cross mode, end to end: foreign-architecture wheels compiled on the build platform with
the zig toolchain against the target builder's root, repaired and imported on the target
platform under QEMU.

The builders are the fixture's musl CPython 3.11 images (tests/fixtures/builders): the
arm64 and armv7 ones are themselves cross-built, and serve as the target roots.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import parse_wheel_filename

from tests.helpers import e2e_env, wheeltasks_cli

pytestmark = pytest.mark.docker

MACHINES = {"arm64v8": "aarch64", "armv7": "armv7l"}


def project_env(root: Path, builder_template: str, index: str | None, **more: str) -> dict[str, str]:
    return e2e_env(root, builder_template, NO_PULL_WHEELS="1", **({"PYPI_INDEX": index} if index else {}), **more)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return wheeltasks_cli(env, *args, "--json")


Jobs = dict[tuple[str, str], dict[str, Any]]


def jobs_of(done: subprocess.CompletedProcess[str]) -> Jobs:
    return {(j["module"], j["arch"]): j for j in json.loads(done.stdout)["jobs"]}


def platform_tags(wheel: Path) -> set[str]:
    return {tag.platform for tag in parse_wheel_filename(wheel.name)[3]}


def run_in_builder(client: Any, image: str, platform: str, wheels: Path, script: str) -> str:
    # By the ID of the platform's image: the engine keeps one image per tag, which the
    # pulls of other platforms (other jobs, other tests) replace.
    image_id = client.images.pull(image, platform=platform).id
    out = client.containers.run(image_id, ["sh", "-c", script], network_mode="host", remove=True,
                                volumes={str(wheels): {"bind": "/wheels", "mode": "ro"}},
                                environment={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"})
    return bytes(out).decode()


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory: pytest.TempPathFactory, builder_template: str, index_server: str) -> tuple[Path, Jobs]:
    """wtzlib and wtstatx (fixture index) for arm64 and armv7, cross-compiled (CROSS=always)."""
    root = tmp_path_factory.mktemp("cross")
    env = project_env(root, builder_template, index_server, CROSS="always", ARCHES="arm64v8 armv7")
    done = cli(env, "build", "wtzlib", "wtstatx")
    assert done.returncode == 0, done.stderr[-5000:]
    return root, jobs_of(done)


@pytest.mark.parametrize("arch", ["arm64v8", "armv7"])
def test_fixture_c_extension_cross_compiles_and_imports(
    cross_run: tuple[Path, Jobs], arch: str, docker_client: Any, builder_template: str
) -> None:
    root, jobs = cross_run
    job = jobs[("wtzlib", arch)]
    assert (job["mode"], job["built_as"], job["fell_back"]) == ("cross", "cross", None)
    assert {"build", "repair", "import-check"} <= job["step_seconds"].keys()  # repair and check timed apart
    log = Path(job["work_dir"]) / "build-cross.log"
    assert job["log"] == str(log)  # the report (and the run's table) names the cross build's log
    assert "cross-compiled on linux/amd64" in log.read_text()
    wheel = next((root / "wheels" / arch).glob("wtzlib-*.whl"))
    assert platform_tags(wheel) == {f"musllinux_1_2_{MACHINES[arch]}"}
    out = run_in_builder(docker_client, builder_template.format(python="3.11"), job["platform"], wheel.parent,
                         "set -e; python3 -m pip install -q --no-index --find-links /wheels wtzlib; "
                         "python3 -c 'import platform, wtzlib; print(\"WTIMPORT\", platform.machine(), wtzlib.crc(b\"abc\"))'")
    assert f"WTIMPORT {MACHINES[arch]} 891568578" in out


@pytest.mark.parametrize("arch", ["arm64v8", "armv7"])
def test_cross_builds_link_only_what_the_targets_libc_has(
    cross_run: tuple[Path, Jobs], arch: str, docker_client: Any, builder_template: str
) -> None:
    """The fixture roots' musl is 1.2.3 (no statx); zig's own headers are 1.2.5. Built against the
    root's headers, wtstatx leaves statx out and loads; built against zig's, it would not load."""
    root, jobs = cross_run
    assert jobs[("wtstatx", arch)]["built_as"] == "cross"
    wheel = next((root / "wheels" / arch).glob("wtstatx-*.whl"))
    out = run_in_builder(docker_client, builder_template.format(python="3.11"), jobs[("wtstatx", arch)]["platform"],
                         wheel.parent, "set -e; python3 -m pip install -q --no-index --find-links /wheels wtstatx; "
                         "python3 -c 'import wtstatx; print(\"WTSTATX\", wtstatx.uses_statx(), wtstatx.size(\"/etc/hostname\") >= 0)'")
    assert "WTSTATX False True" in out


def test_cross_and_emulated_give_the_same_wheel_names(
    cross_run: tuple[Path, Jobs], tmp_path: Path, builder_template: str, index_server: str
) -> None:
    root, _ = cross_run
    env = project_env(tmp_path / "emulated", builder_template, index_server, CROSS="never", ARCHES="arm64v8")
    done = cli(env, "build", "wtzlib")
    assert done.returncode == 0, done.stderr[-3000:]
    assert jobs_of(done)[("wtzlib", "arm64v8")]["built_as"] == "emulated"
    names = {p.name for p in (tmp_path / "emulated" / "wheels" / "arm64v8").glob("*.whl")}
    assert names == {p.name for p in (root / "wheels" / "arm64v8").glob("wtzlib-*.whl")}


def test_mod_cross_no_builds_emulated(tmp_path: Path, builder_template: str, index_server: str) -> None:
    env = project_env(tmp_path / "p", builder_template, index_server, ARCHES="arm64v8")
    (tmp_path / "p" / "scripts").mkdir()
    (tmp_path / "p" / "scripts" / "wtzlib.sh").write_text("mod_cross=no\n")
    resolved = subprocess.run([sys.executable, "-m", "wheeltasks", "resolve", "wtzlib", "--json"], cwd=tmp_path / "p",
                              env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(resolved.stdout)[0]["mode"] == "emulated"
    done = cli(env, "build", "wtzlib")
    assert done.returncode == 0, done.stderr[-3000:]
    job = jobs_of(done)[("wtzlib", "arm64v8")]
    assert (job["mode"], job["built_as"]) == ("emulated", "emulated")



# Prints what the crossenv's two venvs hold, from the module's build (the cross stage only).
TOOLS_RECIPE = """mod_build() {
    [ -n "${ZIG_TARGET:-}" ] || return 0
    for side in build cross; do
        # setuptools before pip: importing pip first turns setuptools' distutils shim off (< 3.12).
        "$side-python" -c 'import sys, sysconfig, setuptools, wheel, pip
print("WTTOOLS", sys.argv[1], sysconfig.get_platform(), pip.__version__, setuptools.__version__)' "$side"
        "$side-pip" --version | sed "s/^/WTPIP $side /"
    done
}
"""


def test_the_crossenv_gets_pip_setuptools_and_wheel_in_both_venvs(
    tmp_path: Path, builder_template: str, index_server: str
) -> None:
    """crossenv is made without installing pip itself (pip, setuptools and wheel are installed
    once per engine and copied in): its build venv (the build platform's) and its cross venv
    (the target's) both still have them, and the commands build-pip and cross-pip work."""
    env = project_env(tmp_path / "p", builder_template, index_server, CROSS="always", ARCHES="arm64v8",
                      BUILD_NO_CACHE="1")
    (tmp_path / "p" / "scripts").mkdir()
    (tmp_path / "p" / "scripts" / "wtzlib.sh").write_text(TOOLS_RECIPE)
    done = cli(env, "build", "wtzlib")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (Path(jobs_of(done)[("wtzlib", "arm64v8")]["work_dir"]) / "build-cross.log").read_text()
    tools = {line.split("WTTOOLS ", 1)[1].split()[0]: line.split("WTTOOLS ", 1)[1].split()[1:]
             for line in log.splitlines() if "WTTOOLS " in line}
    assert tools["build"][0] == "linux-x86_64" and tools["cross"][0] == "linux-aarch64", tools
    assert tools["build"][1:] == tools["cross"][1:]  # the same pip and setuptools on both sides
    assert int(tools["build"][2].split(".")[0]) >= 70  # the index's setuptools, not ensurepip's 65
    for side in ("build", "cross"):  # crossenv's cross-python runs pip from the build venv, as it always did
        assert any(f"WTPIP {side} pip {tools[side][1]} from /opt/wheeltasks-cross/venv/build/" in line
                   for line in log.splitlines()), side

# A recipe that fails only in the cross stage (ZIG_TARGET is set there alone).
FAILING_IN_CROSS = 'mod_build() { if [ -n "${ZIG_TARGET:-}" ]; then echo "WTMARKER cross fails" >&2; exit 1; fi; }\n'


def test_a_failed_cross_build_falls_back_under_auto_and_fails_under_always(
    tmp_path: Path, builder_template: str, index_server: str
) -> None:
    auto = project_env(tmp_path / "auto", builder_template, index_server, ARCHES="arm64v8")
    (tmp_path / "auto" / "scripts").mkdir()
    (tmp_path / "auto" / "scripts" / "wtzlib.sh").write_text(FAILING_IN_CROSS)
    done = cli(auto, "build", "wtzlib")
    assert done.returncode == 0, done.stderr[-3000:]
    job = jobs_of(done)[("wtzlib", "arm64v8")]
    assert (job["mode"], job["built_as"]) == ("cross", "emulated")
    assert "WTMARKER cross fails" in job["fell_back"]  # the reason, with the cross log's tail
    assert job["log"] == str(Path(job["work_dir"]) / "build.log")  # the emulated build's, which came last
    assert "1 cross build(s) fell back to emulation" in done.stderr
    assert next((tmp_path / "auto" / "wheels" / "arm64v8").glob("wtzlib-*musllinux_1_2_aarch64.whl"))

    always = project_env(tmp_path / "always", builder_template, index_server, ARCHES="arm64v8", CROSS="always")
    (tmp_path / "always" / "scripts").mkdir()
    (tmp_path / "always" / "scripts" / "wtzlib.sh").write_text(FAILING_IN_CROSS)
    failed = cli(always, "build", "wtzlib")
    assert failed.returncode == 3
    assert "WTMARKER cross fails" in failed.stderr and "cross-compiled build of" in failed.stderr
    assert not (tmp_path / "always" / "wheels").exists() or not list((tmp_path / "always" / "wheels").rglob("*.whl"))


@pytest.mark.network
@pytest.mark.parametrize("module", ["psutil", "cffi"])
def test_public_packages_cross_compile_for_arm64_and_armv7(
    module: str, tmp_path: Path, builder_template: str
) -> None:
    """psutil (kernel headers) and cffi (the root's libffi) from the public index, compiled from
    source in cross mode; the pipeline's import check runs each on its platform under QEMU."""
    env = project_env(tmp_path / "p", builder_template, None, CROSS="always", ARCHES="arm64v8 armv7", NO_BINARY="1")
    done = cli(env, "build", module)
    assert done.returncode == 0, done.stderr[-5000:]
    for arch, machine in MACHINES.items():
        job = jobs_of(done)[(module, arch)]
        assert job["built_as"] == "cross" and "import-check" in job["step_seconds"]
        check = (Path(job["work_dir"]) / "check.log").read_text()
        assert f"import {module}: ok" in check
        wheel = next((tmp_path / "p" / "wheels" / arch).glob(f"{module}-*.whl"))
        assert platform_tags(wheel) == {f"musllinux_1_2_{machine}"}


@pytest.mark.network
def test_pynacl_cross_compiles_its_bundled_libsodium(tmp_path: Path, builder_template: str) -> None:
    """PyNaCl (public index) builds libsodium with its own autoconf `configure` inside `pip
    wheel`. In the cross stage the test programs configure compiles run (the target's loader
    is there, under QEMU) and `uname -m` names the target, so it configures for the target
    instead of failing ("cannot run C compiled programs") and falling back to emulation.
    BUILD_NO_CACHE: the log is read for configure's lines, which an engine that built PyNaCl
    before answers from BuildKit's layer cache without running configure. One arch, armv7
    (32-bit, hard-float): libsodium is CI's slowest compile (4-8 min for two arches on two
    cores), and arm64's cross build of C is proven by cffi and psutil above."""
    env = project_env(tmp_path / "p", builder_template, None, CROSS="always", ARCHES="armv7",
                      NO_BINARY="1", BUILD_NO_CACHE="1")
    done = cli(env, "build", "pynacl")
    assert done.returncode == 0, done.stderr[-5000:]
    arch, machine = "armv7", MACHINES["armv7"]
    job = jobs_of(done)[("pynacl", arch)]
    assert (job["built_as"], job["fell_back"], job["repaired"]) == ("cross", None, "build platform"), job
    log = (Path(job["work_dir"]) / "build-cross.log").read_text()
    assert "checking whether we are cross compiling... no" in log
    assert f"checking host system type... {machine}" in log
    assert "import nacl: ok" in (Path(job["work_dir"]) / "check.log").read_text()
    wheel = next(w for w in (tmp_path / "p" / "wheels" / arch).glob("*.whl") if w.name.lower().startswith("pynacl-"))
    assert platform_tags(wheel) == {f"musllinux_1_2_{machine}"}
