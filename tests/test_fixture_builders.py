"""The fixture builder images themselves: one multi-platform tag of musl CPython 3.11 builders.

linux/amd64 is compiled natively; the seven foreign ones are cross-compiled with zig against
their own root's musl and run here under QEMU (linux/386 natively). All must look alike to
the product (same prefix, PATH, Alpine's libc name), and the foreign ones must also serve as
the target root of a cross build. Three kinds (tests/fixtures/builders/build.sh): amd64 has
OpenSSL and a cc, arm64, armv7 and i386 ("full") a cc and the pip tools for builds and repairs
on the platform (QEMU; i386 runs on the x86_64 CPU), the other four ("minimal") only what a
target root and an import check need.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from packaging.utils import parse_wheel_filename

from tests.fixtures_docker import FIXTURE_PYTHON
from wheeltasks.targets import Arch, get_arch

pytestmark = pytest.mark.docker

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Builder:
    arch: Arch  # the product's facts: platform, machine, Alpine's and musl's names, multiarch
    kind: str  # native, full or minimal
    musl: str  # the root's musl version (Debian's)

    @property
    def platform(self) -> str:
        return self.arch.platform

    @property
    def machine(self) -> str:
        return self.arch.machine

    @property
    def alpine(self) -> str:
        return self.arch.alpine

    @property
    def ldso(self) -> str:
        return self.arch.ldso

    @property
    def triple(self) -> str:
        return self.arch.multiarch

    @property
    def compiles(self) -> bool:
        """A root for builds on its platform: a cc, make and pkgconf."""
        return self.kind in ("native", "full")

    @property
    def has_cc(self) -> bool:
        """The prefix's musl cc: every root with Debian's musl-dev, which depends on gcc (all
        but armv6, whose musl is compiled from source)."""
        return self.compiles or self.arch.name != "armv6"


# Debian 12's musl is 1.2.3; riscv64 exists only in Debian 13 (1.2.5); the ARMv6 root's musl
# is compiled from Debian 12's source package.
AMD64 = Builder(get_arch("amd64"), "native", "1.2.3")
ALL = (
    AMD64,
    Builder(get_arch("arm64v8"), "full", "1.2.3"),
    Builder(get_arch("armv7"), "full", "1.2.3"),
    Builder(get_arch("armv6"), "minimal", "1.2.3"),
    Builder(get_arch("i386"), "full", "1.2.3"),
    Builder(get_arch("ppc64le"), "minimal", "1.2.3"),
    Builder(get_arch("s390x"), "minimal", "1.2.3"),
    Builder(get_arch("riscv64"), "minimal", "1.2.5"),
)
BUILDERS = [pytest.param(b, id=b.machine) for b in ALL]
FOREIGN = [pytest.param(b, id=b.machine) for b in ALL if b is not AMD64]
COMPILING = [pytest.param(b, id=b.machine) for b in ALL if b.compiles and b is not AMD64]

# What the product relies on, read inside the image. Importing the modules is part of the
# probe: a missing one fails the container.
FACTS = r"""
import glob, json, os, platform, re, struct, subprocess, sys, sysconfig
import zlib, ctypes, hashlib
from pip._vendor.packaging.tags import sys_tags
def run(*cmd):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        return str(exc)
    return done.stdout + done.stderr
def has(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None
print(json.dumps({
    "version": sys.version.split()[0],
    "machine": platform.machine(),
    "bits": struct.calcsize("P") * 8,
    # the first libc-specific tag pip accepts: musllinux on musl, manylinux on glibc
    "tag": next(t.platform for t in sys_tags() if not t.platform.startswith("linux_")),
    "executable": os.path.realpath(sys.executable),
    "path": os.environ["PATH"].split(":"),
    "libc_links": glob.glob("/lib/libc.musl-*.so.1"),
    # musl's loader takes ":" and newlines between folders
    "ld_paths": {p: [d for d in re.split(r"[:\n]", open(p).read()) if d] for p in glob.glob("/etc/ld-musl-*.path")},
    "ldd": run("sh", "-c", "ldd --version 2>&1 || true"),
    "patchelf": run("patchelf", "--version"),
    "shared": sysconfig.get_config_var("Py_ENABLE_SHARED"),
    "cc": sysconfig.get_config_var("CC"),
    "multiarch": sysconfig.get_config_var("MULTIARCH"),
    "modules": {m: has(m) for m in ("_ssl", "auditwheel", "wheel", "setuptools")},
    "which": {name: run("sh", "-c", "command -v " + name).strip() for name in ("cc", "gcc", "pip", "python3")},
}))
"""


def _run(
    client: Any, images: dict[str, str], builder: Builder, command: list[str], volumes: dict[str, Any] | None = None
) -> str:
    # On the platform's baseline CPU where QEMU's default is newer (ARMv6: an ARM1176).
    cpu = {"QEMU_CPU": builder.arch.qemu_cpu} if builder.arch.qemu_cpu else {}
    output = client.containers.run(
        images[builder.platform],
        command,
        platform=builder.platform,
        network_mode="host",
        remove=True,
        volumes=volumes or {},
        environment={"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore", **cpu},
    )
    return bytes(output).decode().strip()


def _sh(
    client: Any, images: dict[str, str], builder: Builder, script: str, volumes: dict[str, Any] | None = None
) -> str:
    return _run(client, images, builder, ["/bin/sh", "-c", script], volumes)


def _index(builder_image: str, fixture_registry: str) -> dict[str, Any]:
    repository, tag = builder_image.removeprefix(f"{fixture_registry}/").rsplit(":", 1)
    response = requests.get(
        f"http://{fixture_registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": ", ".join(INDEX_TYPES)},
        timeout=10,
    )
    response.raise_for_status()
    index: dict[str, Any] = response.json()
    return index


def _platform(manifest: dict[str, Any]) -> str:
    p = manifest["platform"]
    return "/".join(filter(None, (p["os"], p["architecture"], p.get("variant"))))


@pytest.fixture(scope="module")
def images(docker_client: Any, builder_image: str, fixture_registry: str) -> dict[str, str]:
    """platform -> the builder pinned by digest. The engine keeps one image per tag: the
    tag fetched for another platform (here or by a parallel session) would replace it."""
    repository = builder_image.rsplit(":", 1)[0]
    pinned = {_platform(m): f"{repository}@{m['digest']}" for m in _index(builder_image, fixture_registry)["manifests"]}
    for reference in pinned.values():
        docker_client.images.pull(reference)
    return pinned


def test_builder_tag_is_an_index_of_every_platform(builder_image: str, fixture_registry: str) -> None:
    index = _index(builder_image, fixture_registry)
    assert index["mediaType"] in INDEX_TYPES
    assert {_platform(m) for m in index["manifests"]} == {b.platform for b in ALL}


@pytest.mark.parametrize("builder", BUILDERS)
def test_builder_is_a_musl_python_laid_out_alike(docker_client: Any, images: dict[str, str], builder: Builder) -> None:
    facts = json.loads(_run(docker_client, images, builder, ["python3", "-c", FACTS]).splitlines()[-1])
    assert facts["version"].startswith(FIXTURE_PYTHON + ".")
    # armv6l: checked on an ARM1176. i386 runs natively on this x86_64 kernel, which Docker
    # does not ask to answer as a 32-bit one: the interpreter is 32-bit, pip's tag says i686.
    assert facts["machine"] == ("x86_64" if builder.arch.name == "i386" else builder.machine)
    assert facts["bits"] == (64 if builder.arch.name in ("amd64", "arm64v8", "ppc64le", "s390x", "riscv64") else 32)
    assert facts["tag"] == f"musllinux_1_2_{builder.machine}"
    assert facts["executable"].startswith("/opt/musl/bin/python3")
    assert facts["path"][0] == "/opt/musl/bin"
    # The prefix's musl compiler first on PATH where the root has a gcc (see has_cc).
    compiler = {"cc": "/opt/musl/bin/cc", "gcc": "/opt/musl/bin/gcc"} if builder.has_cc else {"cc": "", "gcc": ""}
    assert facts["which"] == {**compiler, "pip": "/opt/musl/bin/pip", "python3": "/opt/musl/bin/python3"}
    # auditwheel reads the musl version through Alpine's libc name, and the libraries to
    # bundle through the loader's path file; `ldd` is musl's.
    assert facts["libc_links"] == [f"/lib/libc.musl-{builder.alpine}.so.1"]
    assert facts["ld_paths"][f"/etc/ld-musl-{builder.ldso}.path"][0] == "/opt/musl/lib"
    assert f"Version {builder.musl}" in facts["ldd"]
    assert facts["shared"] == 1
    assert facts["cc"] == "/opt/musl/bin/musl-cc"
    assert facts["multiarch"] == builder.triple
    # TLS only where pip reaches the public index; the pip tools where a cc is (cross.sh).
    assert facts["modules"] == {
        "_ssl": builder.kind == "native",
        "auditwheel": builder.has_cc,
        "wheel": builder.has_cc,
        "setuptools": builder.has_cc,
    }
    if builder.has_cc:
        patchelf = tuple(int(x) for x in re.findall(r"\d+", facts["patchelf"])[:3])
        assert patchelf >= (0, 14, 5), facts["patchelf"]  # auditwheel's minimum (Debian 12 has 0.14.3)


AUDITWHEEL_LD_PATHS = (
    "from auditwheel.lddtree import load_ld_paths; from auditwheel.libc import Libc; "
    "import json; print(json.dumps(['/' + p.lstrip('/') for p in load_ld_paths(Libc.MUSL)['conf']]))"
)


@pytest.mark.parametrize("builder", [pytest.param(AMD64, id=AMD64.machine), *COMPILING])
def test_auditwheel_looks_for_libraries_in_the_prefix(
    docker_client: Any, images: dict[str, str], builder: Builder
) -> None:
    """auditwheel bundles what the loader's path file names; an extension built without an
    rpath (a cross build) must still have its libffi found in /opt/musl/lib."""
    paths = json.loads(_run(docker_client, images, builder, ["python3", "-c", AUDITWHEEL_LD_PATHS]))
    assert paths[0] == "/opt/musl/lib", paths
    assert f"/usr/lib/{builder.triple}" in paths


@pytest.mark.parametrize("builder", FOREIGN)
def test_foreign_builder_is_a_target_root(docker_client: Any, images: dict[str, str], builder: Builder) -> None:
    """What a cross build stage needs from /sysroot: musl's headers and crt files, kernel
    headers, the prefix's headers, libraries and build description, and no host paths."""
    needed = [
        f"/usr/include/{builder.triple}/stdio.h",
        f"/usr/lib/{builder.triple}/libc.so",
        "/opt/musl/share/kinclude/linux/version.h",
        "/opt/musl/share/kinclude/asm/unistd.h",
        *(f"/opt/musl/share/musl-libc/{f}" for f in ("crt1.o", "crti.o", "crtn.o", "Scrt1.o", "libc.so", "libm.a")),
        *(f"/opt/musl/include/{h}" for h in ("zlib.h", "ffi.h", "python3.11/Python.h")),
        *(f"/opt/musl/lib/{lib}" for lib in ("libz.so", "libffi.so", "libpython3.11.so.1.0", "libpython3.so")),
        f"/opt/musl/lib/python3.11/_sysconfigdata__linux_{builder.triple}.py",
    ]
    script = (
        f'for f in {" ".join(needed)}; do [ -e "$f" ] || echo "MISSING $f"; done; '
        # The build description and scripts (busybox's grep knows no -I: ELF files, whose
        # debug information names the build folder as any compiler's does, are left out).
        "for f in /opt/musl/lib/python3.11/_sysconfigdata_* /opt/musl/lib/python3.11/config-3.11-*/Makefile "
        "/opt/musl/lib/pkgconfig/* /opt/musl/bin/*; do [ -f \"$f\" ] || continue; "
        "[ \"$(head -c 4 \"$f\" | tr -d '\\000')\" = \"$(printf '\\177ELF')\" ] && continue; "
        "grep -l -e /tmp/mmdebstrap -e /var/cache/wheeltasks \"$f\" | sed 's/^/HOSTPATH /'; done; true"
    )
    out = _sh(docker_client, images, builder, script).splitlines()
    assert [line for line in out if line.startswith(("MISSING", "HOSTPATH"))] == []
    # Read on the host (a minimal root has no readelf): Alpine's libc name on both sides.
    libc = f"libc.musl-{builder.alpine}.so.1"
    assert _dynamic(docker_client, images, builder, "/opt/musl/share/musl-libc/libc.so", "DT_SONAME") == [libc]
    assert libc in _dynamic(docker_client, images, builder, "/opt/musl/lib/libpython3.11.so.1.0", "DT_NEEDED")


def _dynamic(client: Any, images: dict[str, str], builder: Builder, path: str, tag: str) -> list[str]:
    """The values of one dynamic tag (DT_SONAME, DT_NEEDED) of an ELF file in the image."""
    container = client.containers.create(images[builder.platform], ["true"], platform=builder.platform)
    try:
        stream, _ = container.get_archive(path)
        archive = b"".join(stream)
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.next()
        assert member is not None and member.isfile(), path
        extracted = tar.extractfile(member)
        assert extracted is not None
        data = extracted.read()
    section = ELFFile(io.BytesIO(data)).get_section_by_name(".dynamic")
    assert isinstance(section, DynamicSection), path
    field = {"DT_SONAME": "soname", "DT_NEEDED": "needed"}[tag]
    return [str(getattr(entry, field)) for entry in section.iter_tags(tag)]


@pytest.mark.parametrize("builder", FOREIGN)
def test_every_elf_file_loads_against_the_roots_own_musl(
    docker_client: Any, images: dict[str, str], builder: Builder
) -> None:
    """zig bundles newer musl headers (1.2.5) than Debian 12's musl (1.2.3): musl's loader,
    run as ldd, relocates each file and names any symbol this libc lacks."""
    script = r"""
ldd --version 2>&1 | sed -n 's/^Version /MUSL /p'
n=0
for f in $(find /opt/musl -type f \( -name '*.so*' -o -path '/opt/musl/bin/*' \)); do
    [ "$(head -c4 "$f" | tail -c3)" = ELF ] || continue
    n=$((n + 1))
    case $f in
        */lib/python3*) LD_PRELOAD=/opt/musl/lib/libpython3.11.so.1.0 ldd "$f" ;;
        *) ldd "$f" ;;
    esac 2>&1 | grep -e Error -e 'not found' | sed "s|^|BAD $f: |"
done
echo "ELF $n"
"""
    out = _sh(docker_client, images, builder, script).splitlines()
    assert f"MUSL {builder.musl}" in out  # the root's own musl (Debian 12's: 1.2.3), not zig's 1.2.5
    assert [line for line in out if line.startswith("BAD")] == []
    count = int(next(line for line in out if line.startswith("ELF ")).split()[1])
    assert count >= 45, out  # python, libpython, the libraries and every extension module


SETUP_PY = """\
from setuptools import Extension, setup
setup(name="wtext", version="1.0", ext_modules=[Extension("wtext", ["wtext.c"], libraries=["z"])])
"""
WTEXT_C = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <zlib.h>
static PyObject *crc(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uLong value = crc32(0L, (const Bytef *)view.buf, (uInt)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(value);
}
static PyMethodDef methods[] = {{"crc", crc, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wtext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_wtext(void) { return PyModule_Create(&module); }
"""


@pytest.mark.parametrize("builder", COMPILING)
def test_c_extension_builds_under_qemu_and_repairs_to_musllinux(
    docker_client: Any, images: dict[str, str], builder: Builder, tmp_path: Path
) -> None:
    """The emulated path of the product: the image's own cc under QEMU, then auditwheel."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "setup.py").write_text(SETUP_PY)
    (src / "wtext.c").write_text(WTEXT_C)
    script = (
        "set -e; cp -r /src /tmp/wtext; cd /tmp/wtext; "
        "python3 -m pip wheel --no-build-isolation --no-deps --wheel-dir /tmp/built . >/dev/null; "
        "echo NEEDED $(cd /tmp/wtext && readelf -d build/lib*/wtext*.so | sed -n 's/.*(NEEDED).*\\[\\(.*\\)\\]/\\1/p'); "
        "python3 -m auditwheel repair --wheel-dir /out /tmp/built/*.whl >/dev/null 2>&1; "
        "python3 -m pip install -q --no-index /out/*.whl; "
        'cd /; python3 -c \'import platform, wtext; print("WTEXT", platform.machine(), wtext.crc(b"abc"))\''
    )
    lines = _sh(
        docker_client,
        images,
        builder,
        script,
        {str(src): {"bind": "/src", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
    ).splitlines()
    needed = next(line for line in lines if line.startswith("NEEDED")).split()[1:]
    assert f"libc.musl-{builder.alpine}.so.1" in needed and "libz.so.1" in needed, needed
    # zlib.crc32(b"abc"); i386 runs on the x86_64 kernel, which answers uname as itself.
    machine = "x86_64" if builder.arch.name == "i386" else builder.machine
    assert f"WTEXT {machine} 891568578" in lines
    (wheel,) = out.glob("*.whl")
    assert {t.platform for t in parse_wheel_filename(wheel.name)[3]} == {f"musllinux_1_2_{builder.machine}"}
    with zipfile.ZipFile(wheel) as zf:
        assert any(name.startswith("wtext") and name.endswith(".so") for name in zf.namelist())
