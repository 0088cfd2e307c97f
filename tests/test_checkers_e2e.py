"""End-to-end: import checks that share a container (wheeltasks.checkers) on the real engine
and the fixture builders, natively and under QEMU: each check sees only its own wheels and
a fresh set of modules, a failure or a crash is the check's own, and a container that goes
away mid-run is replaced."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from wheeltasks.checkers import Checkers
from wheeltasks.files import clear
from wheeltasks.job import Job

from .test_build_e2e import make_project

pytestmark = pytest.mark.docker


def site(job: Job, files: dict[str, str]) -> Path:
    """The job's check folder holding ``files`` (as the import check unpacks wheels there)."""
    folder = job.work.check
    clear(folder)
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("arch", ["amd64", "arm64v8"])
def test_checks_share_a_container_and_nothing_else(tmp_path: Path, builder_template: str, docker_client: Any,
                                                   arch: str) -> None:
    project = make_project(tmp_path / "p", None, None, builder_template)
    settings = project.settings()
    job = project.job("wtzlib", "1.0", arch)
    log = tmp_path / "check.log"
    checkers = Checkers(settings)
    try:
        assert checkers.check(job, site(job, {"alpha.py": "VALUE = 1\n"}), ["alpha"], "", log) == 0
        text = log.read_text()
        assert "importing on Python 3.11" in text and "import alpha: ok" in text, text
        # The next check: a fresh set of modules, and only its own folder on the path.
        beta = ("import sys\n"
                "assert 'alpha' not in sys.modules, 'a module of an earlier check'\n"
                "assert sys.path[0].endswith('/check'), sys.path\n")
        assert checkers.check(job, site(job, {"beta.py": beta}), ["beta"], "", log) == 0, log.read_text()
        assert checkers.check(job, site(job, {"beta.py": beta}), ["alpha"], "", log) != 0
        assert "No module named 'alpha'" in log.read_text()
        assert checkers.check(job, site(job, {"gamma.py": "raise ImportError('no libfoo.so.1')\n"}), ["gamma"],
                              "", log) == 1
        assert "no libfoo.so.1" in log.read_text()
        crash = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
        assert checkers.check(job, site(job, {"crash.py": crash}), ["crash"], "", log) == 139
        assert "killed by signal 11 (Segmentation fault)" in log.read_text()
        assert checkers.check(job, site(job, {"alpha.py": "VALUE = 1\n"}), ["alpha"], "", log) == 0
        assert checkers.started == 1  # six checks, one container
        # The container goes away: that check is not answered (the caller runs it in a
        # container of its own), and the next one starts another.
        [slot] = checkers._slots.values()
        assert slot.server is not None
        docker_client.containers.get(slot.server.container.id).remove(force=True)
        assert checkers.check(job, site(job, {"alpha.py": "VALUE = 1\n"}), ["alpha"], "", log) is None
        assert checkers.check(job, site(job, {"alpha.py": "VALUE = 1\n"}), ["alpha"], "", log) == 0
        assert checkers.started == 2
        server = slot.server
        assert server is not None
    finally:
        checkers.close()
    # Closing does not wait for the engine: the container's input ends, so does its command,
    # and the engine removes it.
    for _ in range(100):
        try:
            docker_client.containers.get(server.container.id)
        except docker.errors.NotFound:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the shared container outlived close()")


def test_a_folder_outside_the_work_folder_is_not_shared(tmp_path: Path, builder_template: str) -> None:
    project = make_project(tmp_path / "p", None, None, builder_template)
    checkers = Checkers(project.settings())
    job = project.job("wtzlib", "1.0", "amd64")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert checkers.check(job, outside, ["alpha"], "", tmp_path / "check.log") is None
    assert checkers.started == 0
