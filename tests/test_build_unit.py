"""Fast tests of the build pipeline's pure parts and file handling (no Docker needed)."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.helpers import INDEX, fake_wheel, make_settings
from wheeltasks import build as build_step
from wheeltasks import buildx, containers, docker_engine, export, files, importcheck, pipeline, verify
from wheeltasks.errors import BuildError, WheelTasksError
from wheeltasks.files import private_file
from wheeltasks.job import Job, make_job
from wheeltasks.plan import Plan
from wheeltasks.recipes import load_recipe
from wheeltasks.runreport import RunReport
from wheeltasks.settings import Kind, Settings
from wheeltasks.steps import FULL_FLOW
from wheeltasks.targets import SSL, get_arch
from wheeltasks.workdir import State


def make(
    settings: Settings,
    module: str = "wtzlib",
    arch: str = "amd64",
    kind: Kind = Kind.SHARED,
    ssl: SSL | None = None,
    version: str = "1.0",
    depends: tuple[Job, ...] = (),
) -> Job:
    return make_job(
        settings, module=module, ssl=ssl, version=Version(version), python="3.11", arch=get_arch(arch), kind=kind,
        recipe=load_recipe(settings, module, ssl), depends=depends,
    )


def run_steps(settings: Settings, job: Job, *steps: str) -> RunReport:
    return pipeline.run(settings, Plan((job,)), steps=steps)


def option(command: list[str], name: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == name]


# ---- build_command ---------------------------------------------------------------------


def test_build_command_shape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, arch="arm64")
    out = tmp_path / "out"
    command = build_step.build_command(settings, job, out)
    assert command[:3] == ["docker", "buildx", "build"]
    assert option(command, "--platform") == ["linux/arm64/v8"]
    assert option(command, "--network") == ["host"]
    assert option(command, "--output") == [f"type=local,dest={out}"]
    assert command[-1] == str(job.work.context)
    assert option(command, "-f") == [str(build_step.DOCKERFILE)]
    args = dict(a.split("=", 1) for a in option(command, "--build-arg"))
    assert args["BUILDER"] == "127.0.0.1:5000/builder:py3.11"
    assert args["PYTHON"] == "3.11"
    assert args["MODULE"] == "wtzlib"
    assert args["VERSION"] == "1.0"
    assert args["KIND"] == "shared"
    assert args["NO_BINARY"] == "" and args["NO_CACHE"] == ""
    assert args["PIP_INDEX_URL"] == INDEX
    assert args["RECIPE"] == "" and args["DEPENDS"] == ""
    assert "--no-cache" not in command
    assert "--secret" not in command


def test_build_command_no_cache_and_no_binary(tmp_path: Path) -> None:
    """BUILD_NO_CACHE compiles the module again (issue 18): not `--no-cache`, which would make
    the builders' set-up and the cross toolchain again too, but a NO_CACHE value new for each
    build, which only the module's step reads (and the Dockerfile then bypasses the pip,
    ccache and zig object caches)."""
    settings = make_settings(tmp_path, env={"BUILD_NO_CACHE": "yes", "NO_BINARY": "1"})
    first = build_step.build_command(settings, make(settings), tmp_path, fresh="a1")
    second = build_step.build_command(settings, make(settings), tmp_path, fresh="b2")
    args = dict(a.split("=", 1) for a in option(first, "--build-arg"))
    assert "--no-cache" not in first
    assert args["NO_CACHE"] == "a1"
    assert dict(a.split("=", 1) for a in option(second, "--build-arg"))["NO_CACHE"] == "b2"
    assert args["NO_BINARY"] == "1"


def test_libressl_builds_from_source(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, module="cryptography", ssl=SSL.LIBRESSL)
    args = dict(a.split("=", 1) for a in option(build_step.build_command(settings, job, tmp_path), "--build-arg"))
    assert args["NO_BINARY"] == "1"
    assert args["SSL"] == "libressl"
    assert args["LABEL"] == "cryptography-libressl"
    assert args["RECIPE"] == "cryptography.sh"


def test_secrets_never_build_args(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    secret_index = "https://user:s3cret@127.0.0.1:8443/simple/"
    settings = make_settings(tmp_path, env={"PYPI_INDEX": secret_index, "CA_BUNDLE": str(ca)})
    job = make(settings)
    secret = tmp_path / "private" / "pipindex"
    command = build_step.build_command(settings, job, tmp_path / "out", secret)
    assert not any("s3cret" in word for word in command)
    args = dict(a.split("=", 1) for a in option(command, "--build-arg"))
    assert args["PIP_INDEX_URL"] == "https://127.0.0.1:8443/simple/"
    secrets = option(command, "--secret")
    assert f"id=ca,src={ca.resolve()}" in secrets
    assert f"id=pipindex,src={secret}" in secrets


def test_index_secret_file_is_private_and_always_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret lives outside the context and the work folder, and goes even when the build fails early."""
    settings = make_settings(tmp_path, env={"PYPI_INDEX": "https://user:s3cret@127.0.0.1:8443/simple/"})
    job = make(settings)
    seen: list[Path] = []

    def failing_run(command: list[str], log: Path, _job: Job) -> tuple[int, float]:
        src = next(o for o in option(command, "--secret") if o.startswith("id=pipindex"))
        path = Path(src.split("src=", 1)[1])
        seen.append(path)
        assert path.read_text() == settings.pypi_index
        assert path.stat().st_mode & 0o777 == 0o600
        assert not path.is_relative_to(job.work.root) and not path.is_relative_to(tmp_path)
        raise KeyboardInterrupt  # the earliest, rudest failure

    monkeypatch.setattr(build_step, "_run_logged", failing_run)
    monkeypatch.setattr(docker_engine, "check_build", lambda arch, engine=None: None)  # no engine needed for the secret
    with pytest.raises(KeyboardInterrupt):
        build_step.build(settings, job, job.work.staging("built"), [])
    assert seen and not seen[0].exists() and not seen[0].parent.exists()


@pytest.mark.parametrize("target_exists", [False, True], ids=["to-nothing", "to-a-file"])
def test_private_file_never_follows_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target_exists: bool) -> None:
    """A symlink planted where private_file puts the secret (as another process racing it
    could) is refused, not followed: the file it points at is neither made nor written."""
    folder = tmp_path / "private"
    folder.mkdir()
    target = tmp_path / "elsewhere"
    if target_exists:
        target.write_text("kept")
    (folder / "pipindex").symlink_to(target)
    monkeypatch.setattr(files.tempfile, "mkdtemp", lambda **kwargs: str(folder))
    with pytest.raises(OSError), private_file("s3cret", "pipindex"):
        pytest.fail("private_file wrote its secret through a planted symlink")
    assert (target.read_text() == "kept") if target_exists else not target.exists()
    assert not folder.exists()  # removed, however the block ended


def test_depends_are_the_planned_jobs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    dep = make(settings, "wtzlib")
    crypto = make(settings, "cryptography")
    args = build_step.build_args(settings, make(settings, "wtdep", depends=(dep, crypto)))
    assert args["DEPENDS"] == "wtzlib cryptography"


def test_context_holds_the_jobs_recipe_and_imports(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "CFFI.sh").write_text("# project cffi\n")
    settings = make_settings(tmp_path)
    job = make(settings, "cffi")
    wheel = fake_wheel(tmp_path / "offered", "pycparser-2.22-py3-none-any.whl")
    context = build_step.prepare_context(job, [wheel])
    assert sorted(p.name for p in (context / "recipe").iterdir()) == ["cffi.sh"]
    assert (context / "recipe" / "cffi.sh").read_text() == "# project cffi\n"
    assert (context / "imports" / "pycparser-2.22-py3-none-any.whl").is_file()
    assert build_step.build_args(settings, job)["RECIPE"] == "cffi.sh"


def test_noop_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path, noop=True)
    job = make(settings)
    report = run_steps(settings, job, *FULL_FLOW[:4])
    assert report.results == []
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
    assert "\nFROM scratch AS wheels\n" in text and "\nFROM scratch AS cross-wheels\n" in text
    assert "--mount=type=bind,from=target,target=/sysroot,rw" in text  # the target root, never run
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
    wheel = fake_wheel(job.work.repaired, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    fake_wheel(job.work.repaired, "wtdep-1.0-py3-none-any.whl")
    wheels = job.work.result_wheels()
    first = export.export(settings, job, wheels)
    dest = settings.wheels_dir / "amd64" / wheel.name
    assert dest in first and dest.read_bytes() == wheel.read_bytes()
    before = dest.stat().st_mtime_ns
    assert export.export(settings, job, wheels) == first
    assert dest.stat().st_mtime_ns == before  # identical: left alone
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_export_conflict_and_force(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings)
    wheel = fake_wheel(job.work.repaired, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    other = fake_wheel(job.work.repaired, "aaa-1.0-py3-none-any.whl")
    wheels = [wheel, other]
    dest_dir = settings.wheels_dir / "amd64"
    dest_dir.mkdir(parents=True)
    (dest_dir / wheel.name).write_bytes(b"something else")
    with pytest.raises(WheelTasksError, match="different contents"):
        export.export(settings, job, wheels)
    assert (dest_dir / wheel.name).read_bytes() == b"something else"
    assert not (dest_dir / other.name).exists()  # a conflict writes nothing at all
    forced = make_settings(tmp_path, force=True)
    export.export(forced, job, wheels)
    assert (dest_dir / wheel.name).read_bytes() == wheel.read_bytes()


def test_another_build_of_a_dependency_keeps_the_one_exported(tmp_path: Path) -> None:
    """A dependency's wheel that another job (or the index) already put there is no conflict."""
    settings = make_settings(tmp_path)
    job = make(settings)
    dependency = fake_wheel(job.work.repaired, "pycparser-2.22-py3-none-any.whl")
    dest_dir = settings.wheels_dir / "amd64"
    dest_dir.mkdir(parents=True)
    (dest_dir / dependency.name).write_bytes(b"built by pycparser's own job")
    export.export(settings, job, [dependency])
    assert (dest_dir / dependency.name).read_bytes() == b"built by pycparser's own job"


def test_export_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    job = make(settings)
    wheel = fake_wheel(job.work.repaired, "wtzlib-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export.export(settings, job, [wheel])
    assert list((settings.wheels_dir / "amd64").iterdir()) == []


def test_export_skips_libressl_and_uses_pulled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    libre = make(settings, "cryptography", ssl=SSL.LIBRESSL)
    fake_wheel(libre.work.repaired, "cryptography-1.0-cp311-abi3-musllinux_1_2_x86_64.whl")
    assert run_steps(settings, libre, "export").exported == 0
    job = make(settings, arch="arm64")
    wheel = fake_wheel(job.work.pulled, "wtzlib-1.0-cp311-cp311-musllinux_1_2_aarch64.whl")
    assert run_steps(settings, job, "export").exported == 1
    assert (settings.wheels_dir / "arm64v8" / wheel.name).is_file()
    assert list(settings.wheels_dir.iterdir()) == [settings.wheels_dir / "arm64v8"]


def test_export_without_wheels_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(WheelTasksError, match="inv build"):
        run_steps(settings, make(settings), "export")


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
    found = verify.tag_problem(job, name)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_verify_rejects_mismatched_wheels(tmp_path: Path) -> None:
    job = make(make_settings(tmp_path), arch="arm64")
    good = fake_wheel(tmp_path / "w", "ok-1.0-py3-none-any.whl")
    bad = fake_wheel(tmp_path / "w", "m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    verify.verify(job, [good])
    with pytest.raises(WheelTasksError, match="not for aarch64"):
        verify.verify(job, [good, bad])


def host_extension() -> bytes:
    """A compiled extension module of the Python running the tests (also inside a venv,
    where sysconfig's stdlib paths point at the venv, which holds no lib-dynload)."""
    for name in ("_json", "_ctypes", "_decimal", "math", "_ssl"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".so"):
            return Path(spec.origin).read_bytes()
    raise AssertionError("this Python has no extension module on disk to test with")


def test_verify_reads_the_binaries(tmp_path: Path) -> None:
    """A wheel tagged aarch64 that holds an x86_64 extension is caught by auditwheel."""
    job = make(make_settings(tmp_path), arch="arm64", kind=Kind.NO_SHARED)
    liar = fake_wheel(
        tmp_path / "w",
        "m-1.0-cp311-cp311-linux_aarch64.whl",
        {"m/_json.cpython-311-aarch64-linux-gnu.so": host_extension()},
    )
    with pytest.raises(WheelTasksError, match="no aarch64 binaries"):
        verify.verify(job, [liar])


def test_repair_no_shared_keeps_wheels(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, kind=Kind.NO_SHARED)
    wheel = fake_wheel(job.work.built, "m-1.0-cp311-cp311-linux_x86_64.whl")
    run_steps(settings, job, "repair")
    assert job.work.result_wheels() == [job.work.repaired / wheel.name]
    assert (job.work.repaired / wheel.name).read_bytes() == wheel.read_bytes()
    assert job.work.state() is State.REPAIRED


def test_repair_failure_keeps_previous_output(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, arch="arm64", kind=Kind.NO_SHARED)
    fake_wheel(job.work.built, "m-1.0-cp311-cp311-linux_x86_64.whl")
    previous = fake_wheel(job.work.repaired, "m-0.9-cp311-cp311-linux_aarch64.whl")
    with pytest.raises(BuildError, match="not for aarch64"):
        run_steps(settings, job, "repair")
    assert job.work.result_wheels() == [previous]
    assert not (job.work.root / "repaired.partial").exists()


def test_repair_without_build_says_what_to_do(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(WheelTasksError, match="inv build"):
        run_steps(settings, make(settings), "repair")


def test_no_engine_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    docker_engine.client.cache_clear()
    try:
        with pytest.raises(WheelTasksError, match=r"no Docker engine answers at .*missing\.sock: start dockerd"):
            docker_engine.client()
    finally:
        docker_engine.client.cache_clear()


@pytest.mark.parametrize("cli", ["none", "no plugin"])
def test_missing_buildx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cli: str) -> None:
    """Without the docker CLI, or with one that has no buildx plugin, the engines' discovery
    (which asks `docker buildx version` only when its `buildx ls` failed) says how to install it."""
    if cli == "no plugin":
        fake = tmp_path / "docker"
        fake.write_text("#!/bin/sh\necho \"docker: 'buildx' is not a docker command.\" >&2\nexit 1\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    docker_engine.buildx_version.cache_clear()
    try:
        with pytest.raises(WheelTasksError, match="buildx is missing: install the docker-buildx plugin"):
            docker_engine.buildx_version()
        with pytest.raises(WheelTasksError, match="buildx is missing: install the docker-buildx plugin"):
            buildx.discover()
    finally:
        # What the fake docker answered must not stay cached for the tests after this one.
        docker_engine.buildx_version.cache_clear()
        buildx.context_endpoint.cache_clear()


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
    assert containers.image_matches(attrs, platform) is ok


def test_import_names(tmp_path: Path) -> None:
    listed = fake_wheel(tmp_path, "nacl_x-1.0-cp311-cp311-linux_x86_64.whl",
                        {"nacl/__init__.py": b"", "nacl_x-1.0.dist-info/top_level.txt": b"_sodium\nnacl\n"})
    assert importcheck.import_names(listed) == ["nacl"]
    unlisted = fake_wheel(tmp_path, "m-1.0-cp311-cp311-linux_x86_64.whl",
                          {"m/__init__.py": b"", "single.py": b"", "_speedups.cpython-311-x86_64-linux-musl.so": b"",
                           "m.libs/libffi.so.8": b""})
    assert importcheck.import_names(unlisted) == ["m", "single"]


def test_cross_builds_name_the_toolchain_and_the_cross_stage(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    job = make(settings, arch="armv7")
    native = build_step.build_command(settings, job, tmp_path / "out")
    cross = build_step.build_command(settings, job, tmp_path / "out", cross=True)
    assert option(native, "--target") == ["wheels"] and option(cross, "--target") == ["cross-wheels"]
    args = dict(a.split("=", 1) for a in option(cross, "--build-arg"))
    assert (args["ZIG_TARGET"], args["ALPINE_ARCH"], args["MACHINE"]) == ("arm-linux-musleabihf", "armv7", "armv7l")
    assert "-neon" in args["ZIG_CPU"] and args["RUST_TARGET"] == "armv7-unknown-linux-musleabihf"
    assert "ZIG_TARGET" not in dict(a.split("=", 1) for a in option(native, "--build-arg"))
    context = build_step.prepare_context(job, [])
    assert (context / "lib" / "build.sh").is_file() and (context / "lib" / "toolchain.sh").is_file()


class _Engine:
    """Stands in for the docker SDK client in the pull of a builder image: what is checked is
    which credentials the pull is given, which needs neither an engine nor a registry."""

    def __init__(self) -> None:
        self.pulls: list[dict[str, Any]] = []
        self.images = self

    def get(self, image: str) -> Any:
        import docker.errors

        raise docker.errors.ImageNotFound(image)

    def pull(self, image: str, **kwargs: Any) -> Any:
        self.pulls.append({"image": image, **kwargs})
        return type("Image", (), {"id": "sha256:" + "1" * 64})()


def test_a_builder_pull_carries_the_docker_login_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import json

    from wheeltasks.containers import ensure_image

    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {"127.0.0.1:5000": {"auth": base64.b64encode(b"me:pull-pw").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    engine = _Engine()
    ensure_image(engine, "127.0.0.1:5000/f/builder@sha256:" + "a" * 64, "linux/amd64", 5.0)  # type: ignore[arg-type]
    ensure_image(engine, "python:3.12-alpine3.22", "linux/amd64", 5.0)  # type: ignore[arg-type]
    assert [p["auth_config"] for p in engine.pulls] == [{"username": "me", "password": "pull-pw"}, {}]


def test_a_hanging_credential_helper_does_not_hold_up_a_builder_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import time

    from wheeltasks.containers import ensure_image

    helper = tmp_path / "docker-credential-wthang"
    began = tmp_path / "helper-began"  # the deadline bounds the helper's run: measured from its start
    helper.write_text(f"#!/bin/sh\ntouch {began}\nsleep 300\n")
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "wthang"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(WheelTasksError, match=r"docker-credential-wthang did not answer within 1 s"):
        ensure_image(_Engine(), "127.0.0.1:5000/f/builder:py3.11", "linux/amd64", 1.0)  # type: ignore[arg-type]
    assert time.time() - began.stat().st_mtime < 2.5
