"""Scale-out, end to end: jobs side by side, and two Docker engines driven from one command.

The second engine is a second dockerd on this machine (tests/fixtures_engines.py), with a
buildx builder of its own; where a job ran is read from each engine's own BuildKit cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_engines import ENGINE2, TestEngine, build_records
from tests.helpers import e2e_env, wheeltasks_cli

pytestmark = pytest.mark.docker

# The Dockerfile's main RUN line (native or emulated) ends so; BuildKit records RUN lines as written.
MAIN_RUN = "/wheeltasks/build.sh native"


def project_env(root: Path, builder_template: str, index_server: str, **more: str) -> dict[str, str]:
    env = e2e_env(root, builder_template, PYPI_INDEX=index_server, NO_PULL_WHEELS="1", **more)
    (root / "scripts").mkdir(exist_ok=True)
    (root / "scripts" / "wtdep.sh").write_text('mod_depends="wtzlib"\n')
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return wheeltasks_cli(env, *args)


def wheel_digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.whl"))}


TARGETS = ("wtzlib-amd64", "wtplain-amd64", "wt-fix-name-amd64", "wtdep-amd64")


def test_jobs_run_side_by_side_in_order_and_give_the_same_wheels(
    tmp_path: Path, builder_template: str, index_server: str
) -> None:
    """8 jobs (4 modules x 2 kinds; wtdep needs wtzlib), two at a time, then one at a time."""
    # REUSE=never: wtplain and wt-fix-name have wheels on the index; here every job builds.
    side = project_env(tmp_path / "side", builder_template, index_server, JOBS="2", BUILD_BOTH="1", REUSE="never")
    done = cli(side, "build", *TARGETS, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = json.loads(done.stdout)["jobs"]
    assert len(jobs) == 8 and {j["result"] for j in jobs} == {"built"}
    spans = sorted((j["started"], j["ended"]) for j in jobs)
    overlapping = sum(1 for (_s1, e1), (s2, _e2) in pairwise(spans) if s2 < e1)
    assert overlapping >= 1, spans  # at least two jobs ran at once
    by = {(j["module"], j["kind"]): j for j in jobs}
    for kind in ("shared", "no-shared"):
        assert by[("wtdep", kind)]["started"] >= by[("wtzlib", kind)]["ended"]  # its dependency first
    one = project_env(tmp_path / "one", builder_template, index_server, JOBS="1", BUILD_BOTH="1", REUSE="never")
    again = cli(one, "build", *TARGETS, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    spans = sorted((j["started"], j["ended"]) for j in json.loads(again.stdout)["jobs"])
    assert all(s2 >= e1 for (_s1, e1), (s2, _e2) in pairwise(spans))  # one at a time
    assert wheel_digests(tmp_path / "side" / "wheels" / "amd64") == wheel_digests(tmp_path / "one" / "wheels" / "amd64")


def test_each_platform_builds_on_the_engine_it_is_mapped_to(
    tmp_path: Path, builder_template: str, index_server: str, second_engine: TestEngine, first_engine: TestEngine
) -> None:
    """linux/amd64 on the second engine, linux/arm64 on the first (emulated there)."""
    env = project_env(tmp_path / "p", builder_template, index_server, BUILDERS=f"linux/amd64={ENGINE2},linux/arm64=default",
                      BUILD_NO_CACHE="1", CROSS="never", JOBS="2", REUSE="never")
    since = datetime.now(timezone.utc)
    done = cli(env, "build", "wtzlib-amd64", "wtzlib-arm64", "wtplain-amd64", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = json.loads(done.stdout)["jobs"]
    nodes = {(j["module"], j["arch"]): j["node"]["builder"] for j in jobs}
    assert nodes == {("wtzlib", "amd64"): ENGINE2, ("wtzlib", "arm64v8"): "default", ("wtplain", "amd64"): ENGINE2}
    # Each engine's own BuildKit cache: the main RUN step ran twice on the second engine
    # (the two amd64 jobs) and once on the first (the arm64 job).
    # (The step's cache mounts leave records too, shared by the jobs of a platform: count
    # the step's own ones.)
    ran = {engine.name: sum(r.description.startswith("mount / from exec") and MAIN_RUN in r.description
                            for r in build_records(engine, since))
           for engine in (first_engine, second_engine)}
    assert ran == {second_engine.name: 2, first_engine.name: 1}, ran


def test_an_unreachable_node_is_one_clear_line(tmp_path: Path, builder_template: str, index_server: str) -> None:
    context = "wt-test-dead-engine"
    subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True)
    subprocess.run(["docker", "context", "create", context, "--docker", f"host=unix://{tmp_path}/nothing.sock"],
                   check=True, capture_output=True)
    try:
        env = project_env(tmp_path / "p", builder_template, index_server, BUILDERS=f"linux/amd64={context}")
        done = cli(env, "build", "wtzlib-amd64")
        assert done.returncode == 4, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert context in line and "cannot be reached" in line and "Traceback" not in done.stderr
        assert not (tmp_path / "p" / ".wheeltasks").exists()
    finally:
        subprocess.run(["docker", "context", "rm", "-f", context], capture_output=True)


def test_engines_lists_both_builders(second_engine: TestEngine, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wheeltasks", "engines", "--json"], cwd=tmp_path,
                          env={**os.environ, "BUILDERS": f"linux/amd64={ENGINE2}"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    report: Any = json.loads(done.stdout)
    names = {b["name"] for b in report["builders"]}
    assert {"default", ENGINE2} <= names
    amd64 = next(p for p in report["platforms"] if p["platform"] == "linux/amd64")
    assert amd64["route"]["builder"] == ENGINE2 and amd64["route"]["native"] is True
