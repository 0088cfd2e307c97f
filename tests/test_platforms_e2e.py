"""Every platform, proven (issue 17), and foreign jobs at native cost (issue 18).

wtzlib (the fixture index: zlib from the root) and psutil (its sdist from the public index,
served by the fixture index: the i386 jobs build natively in their builder, which has no
TLS; compiled from source: kernel headers) are built for all eight platforms, both kinds, cross-compiled on
this amd64 engine against the fixture builders' roots. Each wheel carries its own
machine's tag, passed the host verification (the run would fail otherwise), installs with
pip on its own platform (QEMU on the platform's baseline CPU: an ARM1176 for armv6) and
imports; one multi-platform wheel image holds all eight, and a consumer Dockerfile installs
it on each. An armv6 wheel built for ARMv7 is caught. The repair on the build platform gives
what a repair in the target's own container gives.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from packaging.utils import parse_wheel_filename

from tests.fixtures_registry import RegistryServer
from tests.helpers import e2e_env, make_settings, wheeltasks_cli
from wheeltasks.builders import pinned
from wheeltasks.targets import ARCHES, Arch, get_arch

pytestmark = pytest.mark.docker

ALL = " ".join(a.name for a in ARCHES)
PARAMS = [pytest.param(a, id=a.name) for a in ARCHES]
Jobs = dict[tuple[str, str, str], dict[str, Any]]


def jobs_of(done: subprocess.CompletedProcess[str]) -> Jobs:
    return {(j["module"], j["arch"], j["kind"]): j for j in json.loads(done.stdout)["jobs"]}


def platform_tags(wheel: Path) -> set[str]:
    return {tag.platform for tag in parse_wheel_filename(wheel.name)[3]}


@pytest.fixture(scope="module")
def everywhere(
    tmp_path_factory: pytest.TempPathFactory, builder_template: str, index_server: str
) -> tuple[Path, Jobs]:
    """wtzlib and psutil for the eight platforms, both kinds, CROSS=always (amd64: native):
    the shared jobs build, the no-shared ones take their build as it was before the repair."""
    root = tmp_path_factory.mktemp("everywhere")
    jobs: Jobs = {}
    for module, more in (("wtzlib", {}), ("psutil", {"NO_BINARY": "1"})):
        env = e2e_env(root, builder_template, NO_PULL_WHEELS="1", ARCHES=ALL, BUILD_BOTH="1", CROSS="always",
                      PYPI_INDEX=index_server, **more)
        done = wheeltasks_cli(env, "build", module, "--json")
        assert done.returncode == 0, done.stderr[-5000:]
        jobs |= jobs_of(done)
    return root, jobs


@pytest.mark.network
@pytest.mark.parametrize("arch", PARAMS)
def test_each_platform_gets_wheels_of_its_own_machine(everywhere: tuple[Path, Jobs], arch: Arch) -> None:
    root, jobs = everywhere
    for module in ("wtzlib", "psutil"):
        for kind, tag in (("shared", f"musllinux_1_2_{arch.machine}"), ("no-shared", f"linux_{arch.machine}")):
            job = jobs[(module, arch.name, kind)]
            # i386 runs on this x86_64 engine's CPU: a native job, like amd64.
            native = arch.name in ("amd64", "i386")
            if kind == "shared":
                assert job["built_as"] == ("native" if native else "cross"), job
            else:  # the shared job's build, as it was before the repair: the kinds build alike
                shared = jobs[(module, arch.name, "shared")]
                assert (job["source"], job["took"], job["built_as"]) == ("reuse", shared["target"], None), job
            # The repair ran on the build platform (no QEMU) for every foreign shared job.
            assert job["repaired"] == ("none" if kind == "no-shared" else
                                       "container" if native else "build platform"), job
            wheels = [w for w in (root / "wheels" / arch.name).glob(f"{module}-*.whl") if tag in platform_tags(w)]
            assert len(wheels) == 1, sorted(p.name for p in (root / "wheels" / arch.name).iterdir())
            assert platform_tags(wheels[0]) <= {tag, *(f"musllinux_1_{m}_{arch.machine}" for m in (0, 1))}
            assert "import-check" in job["step_seconds"]


INSTALL = """
set -e
for kind in shared no-shared; do
    python3 -m pip install -q --no-index --find-links /wheels/$kind --target /tmp/$kind wtzlib psutil
    PYTHONPATH=/tmp/$kind python3 -c 'import platform, psutil, wtzlib; print("WTIMPORT", "'$kind'", platform.machine(), wtzlib.crc(b"abc"), psutil.cpu_count() > 0)'
done
"""


@pytest.mark.network
@pytest.mark.parametrize("arch", PARAMS)
def test_each_wheel_installs_with_pip_and_imports_on_its_platform(
    everywhere: tuple[Path, Jobs], arch: Arch, docker_client: Any, builder_template: str, tmp_path: Path
) -> None:
    root, _ = everywhere
    for kind, tag in (("shared", "musllinux_1_2_"), ("no-shared", "linux_")):
        folder = tmp_path / kind
        folder.mkdir()
        for wheel in (root / "wheels" / arch.name).glob("*.whl"):
            if any(p.startswith(tag) for p in platform_tags(wheel)):
                shutil.copy(wheel, folder)
    builder = pinned(make_settings(tmp_path, {"BUILDER_IMAGE": builder_template}), "3.11", arch)
    image_id = docker_client.images.pull(builder).id  # by digest: this platform's image
    # pip on the platform's baseline CPU: an ARM1176 says armv6l (QEMU's default ARM would say
    # armv7l and refuse the armv6l wheels, as a Raspberry Pi 1 would refuse armv7l ones).
    cpu = {"QEMU_CPU": arch.qemu_cpu} if arch.qemu_cpu else {}
    out = bytes(docker_client.containers.run(
        image_id, ["sh", "-c", INSTALL], network_mode="host", remove=True,
        volumes={str(tmp_path): {"bind": "/wheels", "mode": "ro"}},
        environment={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", **cpu},
    )).decode()
    # i386 runs natively here: the kernel names its own machine, pip still takes i686 wheels.
    machine = "x86_64" if arch.name == "i386" else arch.machine
    for kind in ("shared", "no-shared"):
        assert f"WTIMPORT {kind} {machine} 891568578 True" in out, out


@pytest.mark.network
def test_one_image_holds_all_eight_platforms_and_a_consumer_installs_it(
    everywhere: tuple[Path, Jobs], builder_template: str, index_server: str, registry_plain: RegistryServer,
    tmp_path: Path,
) -> None:
    root, _ = everywhere
    env = e2e_env(root, builder_template, NO_PULL_WHEELS="1", ARCHES=ALL, PYPI_INDEX=index_server,
                  WHEELS_REGISTRY=f"{registry_plain.host}/all")
    done = wheeltasks_cli(env, "push", "wtzlib", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    (job,) = {j["image"] for j in json.loads(done.stdout)["jobs"]}
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{job}"],
                         capture_output=True, text=True, check=True, timeout=60)
    index = json.loads(raw.stdout)
    have = {"/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"))))
            for m in index["manifests"]}
    assert have == {a.platform for a in ARCHES}
    settings = make_settings(tmp_path, {"BUILDER_IMAGE": builder_template})
    for arch in ARCHES:
        context = tmp_path / arch.name
        context.mkdir()
        cpu = f"QEMU_CPU={arch.qemu_cpu} " if arch.qemu_cpu else ""
        (context / "Dockerfile").write_text(
            f"FROM --platform=$TARGETPLATFORM {job} AS wheels\n"
            f"FROM {pinned(settings, '3.11', arch)}\n"
            "COPY --from=wheels / /wheels/\n"
            f"RUN {cpu}python3 -m pip install -q --no-index --find-links /wheels wtzlib"
            f" && {cpu}python3 -c 'import wtzlib; print(\"CONSUMED\", wtzlib.crc(b\"abc\"))'\n"
        )
        built = subprocess.run(
            ["docker", "buildx", "build", "--platform", arch.platform, "--network", "host", "--progress", "plain",
             "--no-cache", str(context)], capture_output=True, text=True, timeout=900,
        )
        assert built.returncode == 0, built.stderr[-3000:]
        assert "CONSUMED 891568578" in built.stderr, arch.name


def test_an_armv6_wheel_built_for_armv7_is_refused(tmp_path: Path, builder_template: str, index_server: str) -> None:
    """A recipe that compiles for ARMv7: the wheel would crash a Raspberry Pi 1 with an illegal
    instruction, and nothing in an emulated build catches that. The checks do: the ARM build
    attributes where the linker keeps the objects' own (GNU ld), and the import on an ARM1176
    in any case (zig's lld keeps the first input's attributes, its crt files' ARMv6 ones, so
    the file says ARMv6 while its code is ARMv7)."""
    env = e2e_env(tmp_path / "p", builder_template, NO_PULL_WHEELS="1", ARCHES="armv6", CROSS="always",
                  PYPI_INDEX=index_server)
    (tmp_path / "p" / "scripts").mkdir()
    (tmp_path / "p" / "scripts" / "wtzlib.sh").write_text('mod_build() { export CFLAGS="${CFLAGS:-} -mcpu=cortex_a7"; }\n')
    done = wheeltasks_cli(env, "build", "wtzlib")
    assert done.returncode == 3, done.stderr[-3000:]
    assert "wtzlib" in done.stderr
    assert ".so is built for ARMv7, not ARMv6" in done.stderr or (
        "does not import on linux/arm/v6" in done.stderr and "Illegal instruction" in done.stderr), done.stderr[-3000:]
    assert not list((tmp_path / "p" / "wheels").rglob("*.whl")) if (tmp_path / "p" / "wheels").exists() else True


def elf_facts(wheel: Path) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per ELF file of a wheel: its NEEDED libraries and its RPATH/RUNPATH entries."""
    facts = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if not data.startswith(b"\x7fELF"):
                continue
            needed: list[str] = []
            paths: list[str] = []
            for section in ELFFile(io.BytesIO(data)).iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_NEEDED":
                            needed.append(tag.needed)
                        elif tag.entry.d_tag in ("DT_RPATH", "DT_RUNPATH"):
                            paths.append(getattr(tag, "rpath", "") or getattr(tag, "runpath", ""))
            facts[name] = (tuple(sorted(needed)), tuple(paths))
    return facts


@pytest.mark.network
@pytest.mark.parametrize("arch", ["arm64v8", "armv7"])
@pytest.mark.parametrize("module", ["wtzlib", "psutil"])
def test_a_repair_on_the_build_platform_matches_one_in_the_targets_container(
    everywhere: tuple[Path, Jobs], builder_template: str, index_server: str, tmp_path: Path, module: str, arch: str
) -> None:
    """The same file name and tag, the same bundled libraries (libc references renamed), the
    same NEEDED and RPATH entries, whichever way auditwheel ran."""
    _, jobs = everywhere
    job = jobs[(module, arch, "shared")]
    assert job["repaired"] == "build platform"
    here = {w.name: w for w in Path(job["work_dir"], "repaired").glob("*.whl")}
    # The same build, repaired the other way: what the build left, without the build's repair.
    project = tmp_path / "p"
    work = project / ".wheeltasks" / "shared" / job["tag"] / arch
    shutil.copytree(Path(job["work_dir"], "built"), work / "built")
    shutil.rmtree(work / "built" / "repaired")
    env = e2e_env(project, builder_template, NO_PULL_WHEELS="1", ARCHES=arch, CROSS="always",
                  **({"PYPI_INDEX": index_server} if module == "wtzlib" else {}))
    done = wheeltasks_cli(env, "repair", job["target"], "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["jobs"][0]["repaired"] == "container"
    there = {w.name: w for w in (work / "repaired").glob("*.whl")}
    assert here.keys() == there.keys()
    for name in here:
        with zipfile.ZipFile(here[name]) as a, zipfile.ZipFile(there[name]) as b:
            assert sorted(a.namelist()) == sorted(b.namelist())
            assert [n for n in a.namelist() if ".libs/" in n] == [n for n in b.namelist() if ".libs/" in n]
        assert elf_facts(here[name]) == elf_facts(there[name])
        assert get_arch(arch).machine in name
