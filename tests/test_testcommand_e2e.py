"""Test commands (TEST_COMMAND, a recipe's mod_test; cibuildwheel's test-command) run after
the import check, in the same container on the job's platform: on amd64 natively and on
arm64 under QEMU, with {module} and {version} filled in; a failing one fails its job, with
the log's tail in the report, and the others go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import e2e_env, wheeltasks_cli

pytestmark = pytest.mark.docker

# Prints where it runs: the machine is the job's platform's, the module the wheel's.
PASSING = ('python3 -c "import platform, {module}; '
           'print(\'WTTEST\', \'{module}\', \'{version}\', platform.machine(), {module}.__file__)"')


def test_a_test_command_runs_on_the_jobs_platform_and_its_failure_fails_the_job(
    tmp_path: Path, builder_template: str, index_server: str
) -> None:
    env = e2e_env(tmp_path / "p", builder_template, PYPI_INDEX=index_server, NO_PULL_WHEELS="1", TEST_COMMAND=PASSING)
    scripts = tmp_path / "p" / "scripts"
    scripts.mkdir()
    # The recipe's mod_test replaces TEST_COMMAND for its module.
    (scripts / "wtstatx.sh").write_text("mod_test='echo WTFAIL {module} >&2; exit 7'\n")
    done = wheeltasks_cli(env, "build", "wtzlib-amd64", "wtzlib-arm64", "wtstatx-amd64", "--json")
    assert done.returncode == 3, done.stderr[-3000:]
    jobs = {(j["module"], j["arch"]): j for j in json.loads(done.stdout)["jobs"]}
    assert {k: j["result"] for k, j in jobs.items()} == {
        ("wtzlib", "amd64"): "built", ("wtzlib", "arm64v8"): "built", ("wtstatx", "amd64"): "failed"}
    for arch, machine in (("amd64", "x86_64"), ("arm64v8", "aarch64")):
        log = (Path(jobs[("wtzlib", arch)]["work_dir"]) / "check.log").read_text()
        assert "wheeltasks: import wtzlib: ok" in log
        line = next(line for line in log.splitlines() if line.startswith("WTTEST"))
        assert line.split()[1:4] == ["wtzlib", "1.0.0", machine], line
        assert line.split()[4].startswith("/check/wtzlib/"), line  # the job's wheel, not an installed one
        assert "wheeltasks: test: ok" in log
    failed = jobs[("wtstatx", "amd64")]
    assert "the test command of wtstatx1.0.0-py3.11-amd64 failed on linux/amd64" in failed["error"]
    assert "WTFAIL wtstatx" in failed["error"] and "test command failed (exit 7)" in failed["error"]
    assert "Traceback" not in done.stderr
    # A failed test exports nothing of its job.
    assert not list((tmp_path / "p" / "wheels" / "amd64").glob("wtstatx-*.whl"))


