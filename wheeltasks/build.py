"""The build step: ``docker buildx build`` of the package's Dockerfile for one job.

One platform per call, ``--output type=local`` into the staging folder the pipeline
gives it. The full BuildKit output goes to the job's ``build.log``. The step knows
nothing of the flow (NOOP, NO_BUILD, reuse): the pipeline decides whether it runs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from contextlib import nullcontext
from importlib import resources
from pathlib import Path

from packaging.utils import canonicalize_name

from . import console, docker_engine, running
from .errors import BuildError
from .files import copy_atomic, private_file, wheels_in
from .job import Job, Mode
from .settings import Settings
from .targets import DEFAULT_SSL, shell_facts
from .urls import split_credentials
from .verify import AUDITWHEEL_REQUIREMENT, libc_exclude

DOCKERFILE = Path(str(resources.files("wheeltasks") / "data" / "Dockerfile"))
HEARTBEAT_SECONDS = 60.0
# Where the index URL with credentials is during a build (outside the build context).
SECRET_PLACEHOLDER = Path("<private temporary folder>/pipindex")


def has_index_credentials(settings: Settings) -> bool:
    return split_credentials(settings.pypi_index)[1] is not None


LIB = Path(str(resources.files("wheeltasks") / "data" / "lib"))
NATIVE_STAGE = "wheels"
# The folder of a cross build's output with the wheels it repaired on the build platform.
REPAIRED_HERE = "repaired"
# The arch facts the cross stage reads (ARGs of data/Dockerfile).
CROSS_FACTS = ("ZIG_TARGET", "ZIG_CPU", "ALPINE_ARCH", "MACHINE", "RUST_TARGET", "MULTIARCH", "DEBIAN_GNU", "LDSO")
CROSS_STAGE = "cross-wheels"


def build_args(settings: Settings, job: Job, cross: bool = False, fresh: str = "") -> dict[str, str]:
    """The Dockerfile's build args (a pure function of the job). Never credentials: those go
    in as a secret. ``fresh`` (BUILD_NO_CACHE) is new for each build, so the module's step is
    not taken from BuildKit's cache while the builders' set-up and the toolchain are."""
    index, _ = split_credentials(settings.pypi_index)
    from_source = settings.no_binary or (job.ssl is not None and job.ssl is not DEFAULT_SSL)
    # The toolchain's names of the target (wheeltasks.targets: the one table).
    toolchain = {k: v for k, v in shell_facts(job.arch).items() if k in CROSS_FACTS} if cross else {}
    if cross:
        toolchain["AUDITWHEEL"] = AUDITWHEEL_REQUIREMENT
        toolchain["AUDITWHEEL_EXCLUDE"] = " ".join(sorted(libc_exclude(job.arch)))
    return {
        "BUILDER": job.builder,
        # The builder of the engine's own platform, where the cross stage runs.
        "BUILD_BUILDER": job.build_builder,
        "PYTHON": job.python,
        "MODULE": job.module,
        "VERSION": str(job.version),
        "LABEL": job.label,
        "SSL": job.ssl_library.value,
        "KIND": job.kind.value,
        "NO_BINARY": "1" if from_source else "",
        "DEPENDS": " ".join(dict.fromkeys(dep.module for dep in job.depends)),
        "RECIPE": recipe_file(job) or "",
        "APK": " ".join(job.recipe.apk),
        "PIP_INDEX_URL": index,
        "NO_CACHE": (fresh or "1") if settings.build_no_cache else "",
        **toolchain,
    }


def recipe_file(job: Job) -> str | None:
    """The name of the job's recipe in the build context (PEP 503 normalised)."""
    path = job.recipe.path
    return f"{canonicalize_name(path.stem)}.sh" if path else None


def build_command(
    settings: Settings, job: Job, out: Path, secret: Path | None = None, cross: bool = False, fresh: str = ""
) -> list[str]:
    """The exact ``docker buildx build`` command for a job (printed under NOOP); ``cross``
    builds in the cross stage (the build platform's builder, a zig toolchain)."""
    start = job.route.buildx_build() if job.route is not None else ["docker", "buildx", "build"]
    command = [
        *start,
        "--platform", job.platform,
        "--target", CROSS_STAGE if cross else NATIVE_STAGE,
        "--network", "host",
        "--progress", "plain",
        "--output", f"type=local,dest={out}",
    ]
    for name, value in build_args(settings, job, cross, fresh).items():
        command += ["--build-arg", f"{name}={value}"]
    if settings.ca_bundle:
        command += ["--secret", f"id=ca,src={Path(settings.ca_bundle).expanduser().resolve()}"]
    if has_index_credentials(settings):
        command += ["--secret", f"id=pipindex,src={secret or SECRET_PLACEHOLDER}"]
    command += ["-f", str(DOCKERFILE), str(job.work.context)]
    return command


def prepare_context(job: Job, imports: list[Path]) -> Path:
    """Fill the context with the job's recipe and the wheels offered to pip."""
    context = job.work.context
    shutil.rmtree(context, ignore_errors=True)
    (context / "recipe").mkdir(parents=True)
    (context / "imports").mkdir()
    shutil.copytree(LIB, context / "lib")
    name = recipe_file(job)
    if job.recipe.path is not None and name is not None:
        shutil.copyfile(job.recipe.path, context / "recipe" / name)
    for wheel in imports:
        copy_atomic(wheel, context / "imports" / wheel.name)
    return context


def _run_logged(command: list[str], log_file: Path, job: Job) -> tuple[int, float]:
    """Run with all output in the log; a heartbeat on the console for long builds."""
    started = time.monotonic()
    with log_file.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = running.start(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            with running.process(process):
                while True:
                    try:
                        code = process.wait(timeout=HEARTBEAT_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        console.progress(job.target, "build", f"still building after {time.monotonic() - started:.0f} s")
        except BaseException:
            running.kill(process)
            process.wait()
            raise
        if running.cancelled.is_set():
            raise KeyboardInterrupt  # stopped by Ctrl-C in another thread: not a build failure
        elapsed = time.monotonic() - started
        log.write(f"\nwheeltasks: exit {code} after {elapsed:.1f} s\n")
    return code, elapsed


def build(settings: Settings, job: Job, out: Path, imports: list[Path], cross: bool = False) -> list[Path]:
    """Build the job's wheels into ``out`` (an empty staging folder); return them.

    ``imports`` are wheels offered to pip first (dependencies); ``cross`` compiles in the
    cross stage. Anything that is not a wheel is dropped from ``out``; a failure raises
    :class:`BuildError` with the log's tail.
    """
    docker_engine.check_build(job.arch, job.engine)
    job.work.root.mkdir(parents=True, exist_ok=True)
    prepare_context(job, imports)
    log = job.work.cross_log if cross else job.work.build_log
    how = "cross-compiled" if cross else "native" if job.mode is Mode.NATIVE else "emulated"
    console.progress(job.target, "build", f"{job.kind.value} on {job.platform} ({how}); log: {log}")
    secret_text = settings.pypi_index if has_index_credentials(settings) else None
    fresh = uuid.uuid4().hex if settings.build_no_cache else ""
    with private_file(secret_text, "pipindex") if secret_text else nullcontext() as secret:
        code, elapsed = _run_logged(build_command(settings, job, out, secret, cross, fresh), log, job)
    wheels = wheels_in(out)
    if code != 0 or not wheels:
        why = f"exit {code}" if code != 0 else "no wheel in the output"
        raise BuildError(
            f"{how} build of {job.target} ({job.kind.value}) failed ({why}) after {elapsed:.0f} s; "
            f"full log: {log}; last lines:\n{console.log_tail(log)}"
        )
    # The wheels, and those a cross build repaired on the build platform (REPAIRED_HERE).
    for extra in out.iterdir():
        if extra.suffix != ".whl" and extra.name != REPAIRED_HERE:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    console.progress(job.target, "build", f"done in {elapsed:.1f} s: {', '.join(w.name for w in wheels)}")
    return wheels_in(out)
