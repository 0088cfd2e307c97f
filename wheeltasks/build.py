"""The build step: ``docker buildx build`` of the package's Dockerfile for one job.

One platform per call, ``--output type=local`` into a temporary folder that becomes the
job's ``built/`` folder only when the build succeeded, so a failed or interrupted build
never leaves wheels behind. The full BuildKit output goes to the job's ``build.log``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from packaging.utils import canonicalize_name

from . import console, docker_engine
from .errors import WheelTasksError
from .job import Job, wheels_in
from .recipes import depends, find_recipe, recipe_dirs
from .settings import Settings
from .targets import DEFAULT_SSL, parse_target
from .urls import split_credentials

DOCKERFILE = Path(str(resources.files("wheeltasks") / "data" / "Dockerfile"))
LOG_TAIL_LINES = 30
HEARTBEAT_SECONDS = 60.0


def say(job: Job, step: str, message: str) -> None:
    """A progress line for a job's step (stderr, through the console module)."""
    console.progress(job.target, step, message)


# ---- paths in the job's work folder -------------------------------------------------


def context_dir(job: Job) -> Path:
    return job.work_dir / "context"


def partial_dir(job: Job) -> Path:
    """Where buildx writes the wheels; renamed to ``built/`` on success."""
    return job.work_dir / "built.partial"


def index_secret_file(job: Job) -> Path:
    """The index URL with credentials, for the length of one build (outside the context)."""
    return job.work_dir / ".pipindex.secret"


# ---- pure parts ----------------------------------------------------------------------


def depends_modules(settings: Settings, job: Job) -> tuple[str, ...]:
    """The pip names of the recipe's ``mod_depends`` (``cryptography-openssl`` → ``cryptography``)."""
    recipe_name = job.label if find_recipe(settings, job.label) is not None else job.module
    return tuple(parse_target(text).module for text in depends(settings, recipe_name, job.ssl))


def build_args(settings: Settings, job: Job) -> dict[str, str]:
    """The Dockerfile's build args. Never credentials: those go in as a secret."""
    index, _ = split_credentials(settings.pypi_index)
    from_source = settings.no_binary or (job.ssl is not None and job.ssl is not DEFAULT_SSL)
    return {
        "BUILDER": settings.builder(job.python),
        "PYTHON": job.python,
        "MODULE": job.module,
        "VERSION": str(job.version),
        "LABEL": job.label,
        "SSL": (job.ssl or DEFAULT_SSL).value,
        "KIND": job.kind.value,
        "NO_BINARY": "1" if from_source else "",
        "DEPENDS": " ".join(depends_modules(settings, job)),
        "PIP_INDEX_URL": index,
        "NO_CACHE": "1" if settings.build_no_cache else "",
    }


def build_command(settings: Settings, job: Job, context: Path) -> list[str]:
    """The exact ``docker buildx build`` command for a job (printed under NOOP)."""
    command = [
        "docker", "buildx", "build",
        "--platform", job.platform,
        "--network", "host",
        "--progress", "plain",
        "--output", f"type=local,dest={partial_dir(job)}",
    ]
    if settings.build_no_cache:
        command.append("--no-cache")
    for name, value in build_args(settings, job).items():
        command += ["--build-arg", f"{name}={value}"]
    if settings.ca_bundle:
        command += ["--secret", f"id=ca,src={Path(settings.ca_bundle).expanduser().resolve()}"]
    if split_credentials(settings.pypi_index)[1] is not None:
        command += ["--secret", f"id=pipindex,src={index_secret_file(job)}"]
    command += ["-f", str(DOCKERFILE), str(context)]
    return command


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, width: int = 300) -> str:
    """The last lines of a log, each cut to ``width`` (BuildKit echoes whole RUN scripts)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(line if len(line) <= width else line[:width] + " [...]" for line in tail)


# ---- I/O -----------------------------------------------------------------------------


def prepare_context(settings: Settings, job: Job) -> Path:
    """Fill ``context/`` with every recipe (project over package) and the pulled imports."""
    context = context_dir(job)
    shutil.rmtree(context, ignore_errors=True)
    scripts = context / "scripts"
    imports = context / "imports"
    scripts.mkdir(parents=True)
    imports.mkdir()
    # Lowest precedence first, so the project's recipes overwrite the package's.
    for folder in reversed(recipe_dirs(settings)):
        if folder.is_dir():
            for recipe in sorted(folder.glob("*.sh")):
                shutil.copyfile(recipe, scripts / f"{canonicalize_name(recipe.stem)}.sh")
    if job.imports_dir.is_dir():
        for wheel in sorted(job.imports_dir.glob("*.whl")):
            shutil.copyfile(wheel, imports / wheel.name)
    return context


def _check_inputs(settings: Settings) -> None:
    if settings.ca_bundle and not Path(settings.ca_bundle).expanduser().is_file():
        raise WheelTasksError(
            f"CA bundle {settings.ca_bundle} does not exist: set CA_BUNDLE to a PEM file or to an empty value"
        )


def _run_logged(command: list[str], log_file: Path, job: Job) -> tuple[int, float]:
    """Run with all output in the log; a heartbeat on the console for long builds."""
    started = time.monotonic()
    with log_file.open("w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while True:
                try:
                    code = process.wait(timeout=HEARTBEAT_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    say(job, "build", f"still building after {time.monotonic() - started:.0f} s")
        except BaseException:
            process.kill()
            process.wait()
            raise
        elapsed = time.monotonic() - started
        log.write(f"\nwheeltasks: exit {code} after {elapsed:.1f} s\n")
    return code, elapsed


def build(settings: Settings, job: Job) -> list[Path]:
    """Build the job's wheels into ``job.built_dir``; return them.

    NOOP prints the command and touches nothing; NO_BUILD returns what an earlier
    build left.
    """
    context = context_dir(job)
    if settings.noop:
        print(shlex.join(build_command(settings, job, context)), flush=True)
        return []
    if settings.no_build:
        return wheels_in(job.built_dir)
    _check_inputs(settings)
    docker_engine.check_build(job.arch)

    job.work_dir.mkdir(parents=True, exist_ok=True)
    prepare_context(settings, job)
    partial = partial_dir(job)
    shutil.rmtree(partial, ignore_errors=True)
    secret = index_secret_file(job)
    if split_credentials(settings.pypi_index)[1] is not None:
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(settings.pypi_index)

    command = build_command(settings, job, context)
    say(job, "build", f"{job.kind.value} on {job.platform}; log: {job.log_file}")
    try:
        code, elapsed = _run_logged(command, job.log_file, job)
    finally:
        secret.unlink(missing_ok=True)

    wheels = wheels_in(partial)
    if code != 0 or not wheels:
        shutil.rmtree(partial, ignore_errors=True)
        why = f"exit {code}" if code != 0 else "no wheel in the output"
        raise WheelTasksError(
            f"build of {job.target} ({job.kind.value}) failed ({why}) after {elapsed:.0f} s; "
            f"full log: {job.log_file}; last lines:\n{log_tail(job.log_file)}"
        )
    # Only wheels count as output; anything else in the scratch stage is dropped.
    for extra in partial.iterdir():
        if extra.suffix != ".whl":
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    shutil.rmtree(job.built_dir, ignore_errors=True)
    partial.rename(job.built_dir)
    job.built_dir.chmod(0o755)  # buildx creates its output folder private
    say(job, "build", f"done in {elapsed:.1f} s: {', '.join(w.name for w in wheels)}")
    return sorted(job.built_dir.glob("*.whl"))
