"""Fast tests of the build pipeline's pure parts and file handling (no Docker needed)."""

from __future__ import annotations

import os
import re
import sysconfig
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from wheeltasks import build as build_step
from wheeltasks import docker_engine, export, repair
from wheeltasks.errors import WheelTasksError
from wheeltasks.job import Job, make_job
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import SSL, get_arch

INDEX = "http://127.0.0.1:9/simple/"


def make_settings(tmp_path: Path, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    base = {
        "HOME": str(tmp_path / "home"),
        "WHEELTASKS_PROJECT_DIR": str(tmp_path),
        "PYPI_INDEX": INDEX,
        "BUILDER_IMAGE": "127.0.0.1:5000/builder:py{python}",
    }
    return Settings.load(config={}, env={**base, **(env or {})}, flags=flags)


def make(
    settings: Settings,
    module: str = "wtzlib",
    arch: str = "amd64",
    kind: Kind = Kind.SHARED,
    ssl: SSL | None = None,
    version: str = "1.0",
) -> Job:
    return make_job(settings, module=module, ssl=ssl, version=Version(version), python="3.11", arch=get_arch(arch), kind=kind)


def fake_wheel(folder: Path, name: str, payload: dict[str, bytes] | None = None) -> Path:
    """A wheel file with the given name (tags are all the checks read) and members."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    dist = "-".join(name.split("-")[:2])
    members = dict(payload or {"pkg/__init__.py": b""})
    members[f"{dist}.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
    members[f"{dist}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
    # auditwheel walks the files RECORD lists.
    record = "".join(f"{member},,\n" for member in members) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return path


def option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == name]


# ---- build_command ---------------------------------------------------------------------


def test_build_command_shape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, arch="arm64")
    context = build_step.context_dir(job)
    command = build_step.build_command(settings, job, context)
    assert command[:3] == ["docker", "buildx", "build"]
    assert option(command, "--platform") == ["linux/arm64/v8"]
    assert option(command, "--network") == ["host"]
    assert option(command, "--output") == [f"type=local,dest={build_step.partial_dir(job)}"]
    assert command[-1] == str(context)
    assert option(command, "-f") == [str(build_step.DOCKERFILE)]
    args = dict(a.split("=", 1) for a in option(command, "--build-arg"))
    assert args["BUILDER"] == "127.0.0.1:5000/builder:py3.11"
    assert args["PYTHON"] == "3.11"
    assert args["MODULE"] == "wtzlib"
    assert args["VERSION"] == "1.0"
    assert args["KIND"] == "shared"
    assert args["NO_BINARY"] == "" and args["NO_CACHE"] == ""
    assert args["PIP_INDEX_URL"] == INDEX
    assert "--no-cache" not in command
    assert "--secret" not in command


def test_build_command_no_cache_and_no_binary(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, env={"BUILD_NO_CACHE": "yes", "NO_BINARY": "1"})
    command = build_step.build_command(settings, make(settings), tmp_path)
    args = dict(a.split("=", 1) for a in option(command, "--build-arg"))
    assert "--no-cache" in command
    assert args["NO_CACHE"] == "1"  # the Dockerfile then bypasses the cache mounts
    assert args["NO_BINARY"] == "1"


def test_libressl_builds_from_source(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, module="cryptography", ssl=SSL.LIBRESSL)
    args = dict(a.split("=", 1) for a in option(build_step.build_command(settings, job, tmp_path), "--build-arg"))
    assert args["NO_BINARY"] == "1"
    assert args["SSL"] == "libressl"
    assert args["LABEL"] == "cryptography-libressl"


def test_secrets_never_build_args(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    secret_index = "https://user:s3cret@127.0.0.1:8443/simple/"
    settings = make_settings(tmp_path, env={"PYPI_INDEX": secret_index, "CA_BUNDLE": str(ca)})
    job = make(settings)
    command = build_step.build_command(settings, job, tmp_path)
    assert not any("s3cret" in word for word in command)
    args = dict(a.split("=", 1) for a in option(command, "--build-arg"))
    assert args["PIP_INDEX_URL"] == "https://127.0.0.1:8443/simple/"
    secrets = option(command, "--secret")
    assert f"id=ca,src={ca.resolve()}" in secrets
    assert f"id=pipindex,src={build_step.index_secret_file(job)}" in secrets
    assert not build_step.index_secret_file(job).is_relative_to(build_step.context_dir(job))


def test_depends_from_project_recipe(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "wtdep.sh").write_text('mod_depends="wtzlib cryptography-${SSL}"\n')
    settings = make_settings(tmp_path)
    args = dict(
        a.split("=", 1)
        for a in option(build_step.build_command(settings, make(settings, "wtdep"), tmp_path), "--build-arg")
    )
    assert args["DEPENDS"] == "wtzlib cryptography"


def test_package_paramiko_recipe_depends(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert build_step.depends_modules(settings, make(settings, "paramiko")) == ("cryptography", "pynacl", "bcrypt")


def test_context_overlays_project_recipes(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "CFFI.sh").write_text("# project cffi\n")
    settings = make_settings(tmp_path)
    job = make(settings, "cffi")
    fake_wheel(job.imports_dir, "pycparser-2.22-py3-none-any.whl")
    context = build_step.prepare_context(settings, job)
    assert (context / "scripts" / "cffi.sh").read_text() == "# project cffi\n"
    assert (context / "scripts" / "paramiko.sh").is_file()
    assert (context / "imports" / "pycparser-2.22-py3-none-any.whl").is_file()


def test_noop_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path, noop=True)
    job = make(settings)
    assert build_step.build(settings, job) == []
    assert repair.repair(settings, job) == []
    assert export.export(settings, job) == []
    out = capsys.readouterr().out
    assert "docker buildx build --platform linux/amd64" in out
    assert not settings.work_dir.exists()
    assert not settings.wheels_dir.exists()


def test_missing_ca_bundle_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(WheelTasksError, match="CA bundle"):
        make_settings(tmp_path, env={"CA_BUNDLE": str(tmp_path / "nope.pem")})


def test_dockerfile_has_no_syntax_line_and_a_scratch_stage() -> None:
    text = build_step.DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert "\nFROM scratch\n" in text
    assert "--mount=type=secret,id=ca" in text and "--mount=type=secret,id=pipindex" in text
    assert "--mount=type=cache" in text


# ---- engine checks ---------------------------------------------------------------------


def binfmt(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_platform_native_needs_no_qemu(tmp_path: Path) -> None:
    assert docker_engine.platform_problem(get_arch("amd64"), "x86_64", tmp_path) is None
    assert docker_engine.platform_problem(get_arch("i386"), "x86_64", tmp_path) is None


def test_platform_without_handler(tmp_path: Path) -> None:
    problem = docker_engine.platform_problem(get_arch("arm64"), "x86_64", tmp_path)
    assert problem is not None and "qemu-aarch64" in problem and "update-binfmts --enable" in problem


def test_platform_handler_states(tmp_path: Path) -> None:
    binfmt(tmp_path, "qemu-arm", "disabled\ninterpreter /x\nflags: F\n")
    binfmt(tmp_path, "qemu-riscv64", "enabled\ninterpreter /x\nflags: P\n")
    binfmt(tmp_path, "qemu-s390x", "enabled\ninterpreter /x\nflags: PF\n")
    assert "disabled" in (docker_engine.platform_problem(get_arch("armv7"), "x86_64", tmp_path) or "")
    assert "fix-binary" in (docker_engine.platform_problem(get_arch("riscv64"), "x86_64", tmp_path) or "")
    assert docker_engine.platform_problem(get_arch("s390x"), "x86_64", tmp_path) is None


# ---- export ----------------------------------------------------------------------------


def test_export_copies_and_keeps_identical(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings)
    wheel = fake_wheel(job.repaired_dir, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    fake_wheel(job.repaired_dir, "wtdep-1.0-py3-none-any.whl")
    first = export.export(settings, job)
    dest = settings.wheels_dir / "amd64" / wheel.name
    assert dest in first and dest.read_bytes() == wheel.read_bytes()
    before = dest.stat().st_mtime_ns
    assert export.export(settings, job) == first
    assert dest.stat().st_mtime_ns == before  # identical: left alone
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_export_conflict_and_force(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings)
    wheel = fake_wheel(job.repaired_dir, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    other = fake_wheel(job.repaired_dir, "aaa-1.0-py3-none-any.whl")
    dest_dir = settings.wheels_dir / "amd64"
    dest_dir.mkdir(parents=True)
    (dest_dir / wheel.name).write_bytes(b"something else")
    with pytest.raises(WheelTasksError, match="different contents"):
        export.export(settings, job)
    assert (dest_dir / wheel.name).read_bytes() == b"something else"
    assert not (dest_dir / other.name).exists()  # a conflict writes nothing at all
    forced = make_settings(tmp_path, force=True)
    export.export(forced, job)
    assert (dest_dir / wheel.name).read_bytes() == wheel.read_bytes()


def test_export_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    job = make(settings)
    fake_wheel(job.repaired_dir, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export.export(settings, job)
    assert list((settings.wheels_dir / "amd64").iterdir()) == []


def test_export_skips_libressl_and_uses_pulled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    libre = make(settings, "cryptography", ssl=SSL.LIBRESSL)
    fake_wheel(libre.repaired_dir, "cryptography-1.0-cp311-abi3-musllinux_1_2_x86_64.whl")
    assert export.export(settings, libre) == []
    job = make(settings, arch="arm64")
    fake_wheel(job.pulled_dir, "wtzlib-1.0-cp311-cp311-musllinux_1_2_aarch64.whl")
    assert [p.parent.name for p in export.export(settings, job)] == ["arm64v8"]


def test_export_without_wheels_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(WheelTasksError, match="inv build"):
        export.export(settings, make(settings))


# ---- repair verification -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kind", "name", "problem"),
    [
        ("amd64", Kind.SHARED, "m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", None),
        ("amd64", Kind.SHARED, "m-1.0-py3-none-any.whl", None),
        ("arm64", Kind.SHARED, "m-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", None),
        ("amd64", Kind.NO_SHARED, "m-1.0-cp311-cp311-linux_x86_64.whl", None),
        ("amd64", Kind.SHARED, "m-1.0-cp311-cp311-linux_x86_64.whl", "not repaired"),
        ("arm64", Kind.SHARED, "m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl", "not for aarch64"),
        ("armv7", Kind.NO_SHARED, "m-1.0-cp311-cp311-linux_aarch64.whl", "not for armv7l"),
        ("amd64", Kind.SHARED, "m-1.0-cp311-cp311-macosx_11_0_x86_64.whl", "not Linux"),
    ],
)
def test_tag_problem(tmp_path: Path, arch: str, kind: Kind, name: str, problem: str | None) -> None:
    job = make(make_settings(tmp_path), arch=arch, kind=kind)
    found = repair.tag_problem(job, name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_verify_rejects_mismatched_wheels(tmp_path: Path) -> None:
    job = make(make_settings(tmp_path), arch="arm64")
    good = fake_wheel(tmp_path / "w", "ok-1.0-py3-none-any.whl")
    bad = fake_wheel(tmp_path / "w", "m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    repair.verify(job, [good])
    with pytest.raises(WheelTasksError, match="not for aarch64"):
        repair.verify(job, [good, bad])


def host_extension() -> bytes:
    folder = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
    return next(folder.glob("_json*.so")).read_bytes()


def test_verify_reads_the_binaries(tmp_path: Path) -> None:
    """A wheel tagged aarch64 that holds an x86_64 extension is caught by auditwheel."""
    job = make(make_settings(tmp_path), arch="arm64", kind=Kind.NO_SHARED)
    liar = fake_wheel(
        tmp_path / "w",
        "m-1.0-cp311-cp311-linux_aarch64.whl",
        {"m/_json.cpython-311-aarch64-linux-gnu.so": host_extension()},
    )
    with pytest.raises(WheelTasksError, match="no aarch64 binaries"):
        repair.verify(job, [liar])


def test_repair_no_shared_keeps_wheels(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, kind=Kind.NO_SHARED)
    wheel = fake_wheel(job.built_dir, "m-1.0-cp311-cp311-linux_x86_64.whl")
    assert repair.repair(settings, job) == [job.repaired_dir / wheel.name]
    assert (job.repaired_dir / wheel.name).read_bytes() == wheel.read_bytes()


def test_repair_failure_keeps_previous_output(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, arch="arm64", kind=Kind.NO_SHARED)
    fake_wheel(job.built_dir, "m-1.0-cp311-cp311-linux_x86_64.whl")
    with pytest.raises(WheelTasksError, match="not for aarch64"):
        repair.repair(settings, job)
    assert not job.repaired_dir.exists()
    assert not repair.partial_dir(job).exists()


def test_repair_without_build_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(WheelTasksError, match="inv build"):
        repair.repair(settings, make(settings))


def test_no_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    docker_engine.client.cache_clear()
    try:
        with pytest.raises(WheelTasksError, match=r"no Docker engine answers at .*missing\.sock: start dockerd"):
            docker_engine.client()
    finally:
        docker_engine.client.cache_clear()


def test_missing_buildx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI at all
    docker_engine.buildx_version.cache_clear()
    try:
        with pytest.raises(WheelTasksError, match="buildx is missing: install the docker-buildx plugin"):
            docker_engine.buildx_version()
    finally:
        docker_engine.buildx_version.cache_clear()


@pytest.mark.parametrize(
    ("attrs", "platform", "ok"),
    [
        ({"Os": "linux", "Architecture": "amd64"}, "linux/amd64", True),
        ({"Os": "linux", "Architecture": "arm64", "Variant": "v8"}, "linux/arm64/v8", True),
        ({"Os": "linux", "Architecture": "arm64"}, "linux/arm64/v8", True),
        ({"Os": "linux", "Architecture": "arm", "Variant": "v6"}, "linux/arm/v7", False),
        ({"Os": "linux", "Architecture": "amd64"}, "linux/arm64/v8", False),
    ],
)
def test_image_matches_platform(attrs: dict[str, object], platform: str, ok: bool) -> None:
    assert repair.image_matches(attrs, platform) is ok
