"""The tasks as users run them: `inv`, the `wheeltasks` command, and a chaining repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_index import PypiServer
from wheeltasks.check import check
from wheeltasks.index import IndexClient
from wheeltasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cli_env(tmp_path: Path, index_server: str) -> dict[str, str]:
    """The user's environment with the fixture index and a private cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_", "WHEELS_", "DO_", "NO_"))}
    env.update(PYPI_INDEX=index_server, WHEELTASKS_CACHE_DIR=str(tmp_path / "cache"), PYTHON_VERSIONS="3.11 3.12")
    return env


def inv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", *args]


def wheeltasks(*args: str) -> list[str]:
    return [sys.executable, "-m", "wheeltasks", *args]


def test_chained_into_another_repository(tmp_path: Path, cli_env: dict[str, str]) -> None:
    project = tmp_path / "other"
    project.mkdir()
    (project / "tasks.py").write_text(
        textwrap.dedent(
            """
            from invoke import Collection, task
            import wheeltasks

            @task
            def hello(c):
                print("hello")

            ns = Collection(hello)
            ns.add_collection(wheeltasks.ns, name="wheels")
            """
        )
    )
    (project / "invoke.yaml").write_text("wheeltasks:\n  python_versions: ['3.11']\n  arches: [armv7]\n")
    env = {k: v for k, v in cli_env.items() if k != "PYTHON_VERSIONS"}
    listed = run(inv("--list"), project, env)
    assert "wheels.resolve" in listed.stdout and "wheels.build" in listed.stdout

    # configuration file only
    done = run(inv("wheels.resolve", "wtplain", "--json"), project, env)
    assert done.returncode == 0, done.stderr
    (job,) = json.loads(done.stdout)
    assert (job["target"], job["platform"]) == ("wtplain1.5.0-py3.11-armv7", "linux/arm/v7")
    # environment beats configuration; a flag beats the environment
    done = run(inv("wheels.resolve", "wtplain", "--json"), project, {**env, "PYTHON_VERSIONS": "3.12"})
    assert json.loads(done.stdout)[0]["python"] == "3.12"
    done = run(
        inv("wheels.resolve", "wtplain", "--json", "--python-versions=3.13"), project, {**env, "PYTHON_VERSIONS": "3.12"}
    )
    assert json.loads(done.stdout)[0]["python"] == "3.13"
    # ...and the work folders are the other repository's own
    assert json.loads(done.stdout)[0]["work_dir"].startswith(str(project))


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("cffi1.0-sparc64", "unexpected 'sparc64'"),
        ("wtplain-openssl", "does not link an SSL library"),
        ("wtplain9.9-amd64", "9.9 is not on"),
        ("no-such-project-xyz", "not found on"),
        ("wtplain-py3.12-sparc", "unexpected 'sparc'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, cli_env: dict[str, str], target: str, fragment: str) -> None:
    done = run(inv("-r", str(ROOT), "resolve", target), tmp_path, cli_env)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wheeltasks: ") and fragment in lines[0]
    assert "Traceback" not in done.stderr


def test_push_without_a_registry_fails_before_building(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = run(inv("-r", str(ROOT), "build", "wtplain-amd64", "--push"), tmp_path, cli_env)
    assert done.returncode == 2 and "no registry configured: set WHEELS_REGISTRY" in done.stderr
    assert not (tmp_path / ".wheeltasks").exists()  # nothing was started


def test_bad_switch_value_exits_2(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = run(wheeltasks("resolve", "wtplain", "--json"), tmp_path, {**cli_env, "NOOP": "perhaps"})
    assert done.returncode == 2 and "NOOP='perhaps'" in done.stderr and "Traceback" not in done.stderr


def test_wheeltasks_command_takes_several_targets(tmp_path: Path, cli_env: dict[str, str]) -> None:
    done = run(
        wheeltasks("resolve", "--both", "wtplain-amd64", "wt-fix-name1.2-amd64", "WT_Fix.Name-arm64", "--json"),
        tmp_path,
        {**cli_env, "WT_FIX_NAME": "x"},
    )
    if "1.2 is not on" not in done.stderr:
        pytest.fail(f"a missing pinned version must be refused: {done.stderr}")
    done = run(wheeltasks("resolve", "--both", "wtplain-amd64", "WT_Fix.Name-arm64", "--json"), tmp_path, cli_env)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)
    assert [(j["target"], j["kind"]) for j in jobs] == [
        ("wtplain1.5.0-py3.12-amd64", "shared"),
        ("wtplain1.5.0-py3.12-amd64", "no-shared"),
        ("wt-fix-name0.3.0-py3.12-arm64v8", "shared"),
        ("wt-fix-name0.3.0-py3.12-arm64v8", "no-shared"),
    ]
    # The readable table names every job.
    table = run(wheeltasks("resolve", "wtplain-amd64,wtplain-i386"), tmp_path, cli_env)
    assert "wtplain1.5.0-py3.12-amd64" in table.stdout and "wtplain1.5.0-py3.12-i386" in table.stdout


def fake_wheel(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as zf:
        zf.writestr("x.py", "")


def check_settings(tmp_path: Path, index: str, **flags: Any) -> Settings:
    env = {"HOME": str(tmp_path), "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"), "PYPI_INDEX": index}
    flags = {"modules": "wtplain WT_Fix.Name", "core_modules": "", "project_dir": str(tmp_path), **flags}
    return Settings.load({}, env, flags)


def test_check_compares_the_index_with_wheels(tmp_path: Path, make_index_server: Callable[[], PypiServer]) -> None:
    server = make_index_server()
    fake_wheel(tmp_path / "wheels" / "amd64", "wtplain-1.5.0-py3-none-any.whl")
    fake_wheel(tmp_path / "wheels" / "armv7", "wt_fix_name-0.2.0-cp312-cp312-musllinux_1_2_armv7l.whl")
    client = IndexClient(check_settings(tmp_path, server.url))
    rows = [r.to_json() for r in check(check_settings(tmp_path, server.url), client)]
    assert rows == [
        {"module": "wtplain", "ssl": None, "index_version": "1.5.0", "local_version": "1.5.0",
         "registry_version": None, "outdated": False, "status": "ok"},
        {"module": "wt-fix-name", "ssl": None, "index_version": "0.3.0", "local_version": "0.2.0",
         "registry_version": None, "outdated": True, "status": "OUT OF DATE"},
    ]
    assert client.network_requests == 2


def test_second_check_makes_no_request_and_clean_cache_fetches(
    tmp_path: Path, make_index_server: Callable[[], PypiServer]
) -> None:
    server = make_index_server()
    settings = check_settings(tmp_path, server.url)
    first = IndexClient(settings)
    check(settings, first)
    assert first.network_requests == 2
    second = IndexClient(settings)
    again = check(settings, second)
    assert second.network_requests == 0
    cleaned = IndexClient(check_settings(tmp_path, server.url, clean_cache=True))
    assert check(settings, cleaned) == again
    assert cleaned.network_requests == 2


def test_check_command_uses_the_cache_and_clean_cache_refetches(
    tmp_path: Path, cli_env: dict[str, str], make_index_server: Callable[[], PypiServer]
) -> None:
    server = make_index_server()
    env = {**cli_env, "PYPI_INDEX": server.url, "DEFAULT_MODULES": "wtplain", "CORE_MODULES": ""}
    first = run(inv("-r", str(ROOT), "check", "--json"), tmp_path, env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)[0]["outdated"] is True
    server.stop()  # from now on only the cache can answer
    second = run(inv("-r", str(ROOT), "check", "--json"), tmp_path, env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and "warning" not in second.stderr.lower()
    # CLEAN_CACHE drops the cached answer, so the stopped server is asked again: a clear error.
    cleaned = run(inv("-r", str(ROOT), "check", "--json"), tmp_path, {**env, "CLEAN_CACHE": "1"})
    assert cleaned.returncode == 4, cleaned.stderr  # a remote failure
    assert "could not reach the package index" in cleaned.stderr and "Traceback" not in cleaned.stderr
    server.start()
    table = run(inv("-r", str(ROOT), "check"), tmp_path, {**env, "CLEAN_CACHE": "yes"})
    assert table.returncode == 0, table.stderr
    assert "wtplain" in table.stdout and "OUT OF DATE" in table.stdout


def test_clean_cache_task(tmp_path: Path, cli_env: dict[str, str]) -> None:
    run(inv("-r", str(ROOT), "resolve", "wtplain-amd64"), tmp_path, cli_env)
    assert any((tmp_path / "cache").iterdir())
    (tmp_path / "cache" / "builder-pythons.json").write_text("{}")  # the other cache a run keeps
    done = run(inv("-r", str(ROOT), "clean-cache"), tmp_path, cli_env)
    assert done.returncode == 0 and "cleared the cache" in done.stderr
    assert list((tmp_path / "cache").iterdir()) == []


def test_each_task_offers_only_its_own_flags(tmp_path: Path) -> None:
    cache = run(inv("-r", str(ROOT), "--help", "clean-cache"), tmp_path, dict(os.environ)).stdout
    assert "--cache-dir" in cache and "WHEELTASKS_CACHE_DIR" in cache
    assert "--push" not in cache and "--pypi-index" not in cache
    assert len(cache.splitlines()) < 15
    build = run(inv("-r", str(ROOT), "--help", "build"), tmp_path, dict(os.environ)).stdout
    assert "--push " in build and "[DO_PUSH; default: off]" in " ".join(build.split())
    assert "--clean-cache" in build and "--registry-password" not in build


@pytest.mark.parametrize("command", ["inv", "wheeltasks"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_after_a_task_is_the_tasks_help(tmp_path: Path, cli_env: dict[str, str], command: str, flag: str) -> None:
    """`build --help` shows build's help (invoke would take the word for a missing target),
    -r/--requirements among its flags."""
    (tmp_path / "tasks.py").write_text("from wheeltasks import ns\n")
    args = inv("build", flag) if command == "inv" else [sys.executable, "-m", "wheeltasks", "build", flag]
    done = run(args, tmp_path, cli_env)
    assert done.returncode == 0, done.stderr
    assert "Build the targets' wheels" in done.stdout
    assert "-r STRING, --requirements=STRING" in done.stdout


# What the tasks' help and a plan must not import (issue 19: `--help` in 0.3 s, a warm plan
# of `all` in 1 s; bench/bench_plan.py measures them): the modules that talk to engines,
# registries and ELF files, and requests-cache's backends for other databases.
NOT_FOR_HELP = {"requests", "requests_cache", "docker", "elftools", "auditwheel"}
NOT_FOR_A_PLAN = {"elftools", "auditwheel", "boto3", "botocore"}
# Runs a module as `python -m` does and writes the names of the modules loaded by its exit.
PROBE = (
    "import atexit, json, os, runpy, sys\n"
    "atexit.register(lambda: open(os.environ['WT_MODULES'], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n"
)


def imported(args: list[str], cwd: Path, env: dict[str, str]) -> set[str]:
    """The top-level packages ``python -m <args>`` had imported when it ended (it must succeed)."""
    listing = cwd / "modules.json"
    done = run([sys.executable, "-c", PROBE, *args], cwd, {**env, "WT_MODULES": str(listing)})
    assert done.returncode == 0, done.stderr[-3000:]
    return {name.split(".")[0] for name in json.loads(listing.read_text())}


def test_help_imports_none_of_the_working_modules(tmp_path: Path, cli_env: dict[str, str]) -> None:
    names = imported(["wheeltasks", "--help"], tmp_path, cli_env)
    assert "invoke" in names and not names & NOT_FOR_HELP, sorted(names & NOT_FOR_HELP)
    names = imported(["invoke", "-r", str(ROOT), "--list"], tmp_path, cli_env)
    assert "wheeltasks" in names and not names & NOT_FOR_HELP, sorted(names & NOT_FOR_HELP)


def test_a_plan_imports_no_elf_reader_nor_other_cache_backends(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`resolve --json` stores the index's pages through requests-cache's SQLite backend,
    without its other backends' drivers or auditwheel; a second run takes the pages' files
    as parsed, without requests-cache at all."""
    first = imported(["wheeltasks", "resolve", "wtzlib", "--json"], tmp_path, cli_env)
    assert {"requests", "requests_cache"} <= first and not first & NOT_FOR_A_PLAN, sorted(first & NOT_FOR_A_PLAN)
    warm = imported(["wheeltasks", "resolve", "wtzlib", "--json"], tmp_path, cli_env)
    assert "requests_cache" not in warm and not warm & NOT_FOR_A_PLAN, sorted(warm & NOT_FOR_A_PLAN)


def test_a_machine_without_docker_plans_but_does_not_build(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """buildx is asked while the plan reads the index: without the docker CLI a plan is still
    made, on this machine's CPU, with a note; a build is one clear error (exit 2)."""
    bin_dir = tmp_path / "bin"  # this Python, and no docker
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {**cli_env, "PATH": str(bin_dir), "WHEELTASKS_PROJECT_DIR": str(tmp_path)}
    planned = run(wheeltasks("resolve", "wtplain-py3.11-amd64", "--json"), tmp_path, env)
    assert planned.returncode == 0, planned.stderr
    assert "planning without build engines (buildx is missing: install the docker-buildx plugin" in planned.stderr
    assert "native means this machine's CPU" in planned.stderr and "Traceback" not in planned.stderr
    (job,) = json.loads(planned.stdout)
    assert (job["target"], job["node"]) == ("wtplain1.5.0-py3.11-amd64", None)
    built = run(wheeltasks("build", "wtplain-py3.11-amd64"), tmp_path, env)
    assert built.returncode == 2, built.stderr
    assert "buildx is missing: install the docker-buildx plugin" in built.stderr and "Traceback" not in built.stderr


def test_the_program_lets_python_keep_its_compiled_modules(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """invoke stops Python writing .pyc files for the task files it imports; the wheeltasks
    program imports none, so the modules a plan imports once it runs are kept compiled
    (else an editable install compiles them again in every run)."""
    prefix = tmp_path / "pyc"
    env = {k: v for k, v in cli_env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(prefix), WHEELTASKS_PROJECT_DIR=str(tmp_path))
    done = run(wheeltasks("resolve", "wtplain-py3.11-amd64", "--json"), tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    kept = {path.name.split(".")[0] for path in prefix.rglob("wheeltasks/*.pyc")}
    assert {"plan", "index", "sources"} <= kept, sorted(kept)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the interpreter's own setting still holds
    shutil.rmtree(prefix)
    assert run(wheeltasks("resolve", "wtplain-py3.11-amd64", "--json"), tmp_path, env).returncode == 0
    assert not list(prefix.rglob("*.pyc"))
