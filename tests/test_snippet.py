"""inv snippet: the Dockerfile lines for the published wheel images of targets, planned
against the fixture index (pypiserver on 127.0.0.1)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wheeltasks import plan as plan_mod
from wheeltasks import snippet, tasks
from wheeltasks.errors import WheelTasksError
from wheeltasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "127.0.0.1:9/me"  # never asked: a snippet only names the images
# BuildKit's own rule (frontend/dockerfile/instructions/parse.go): a letter first.
STAGE_RE = re.compile(r"[a-z][a-z0-9_.-]*")


def check_dockerfile(text: str) -> None:
    """What Docker needs of these lines: instructions it knows, every wheel image's FROM
    names a valid stage, and every COPY --from names a stage defined before it."""
    stages: list[str] = []
    final_seen = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        assert instruction in ("FROM", "COPY", "RUN"), line
        if instruction == "FROM":
            m = re.fullmatch(r"(--platform=\$TARGETPLATFORM )?(\S+)(?: AS (\S+))?", rest)
            assert m is not None, line
            if m[1]:  # a wheel image
                assert m[3] is not None, f"no AS: {line}"
            else:
                final_seen = True
            if m[3] is not None:
                assert STAGE_RE.fullmatch(m[3]), m[3]
                assert m[3] not in stages, f"stage {m[3]} twice"
                stages.append(m[3])
        elif instruction == "COPY":
            m = re.fullmatch(r"--from=(\S+) / /wheels/", rest)
            assert m is not None and m[1] in stages, line
            assert final_seen, "COPY before the final stage"
        else:
            assert rest.startswith("pip install --no-index --find-links /wheels "), line


def snippet_settings(tmp_path: Path, index_server: str, **flags: str) -> Settings:
    env = {
        "HOME": str(tmp_path), "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"), "PYPI_INDEX": index_server,
        "BUILDER_IMAGE": "127.0.0.1:9/builder:py{python}", "WHEELS_REGISTRY": REGISTRY,
        "PYTHON_VERSIONS": "3.11 3.12", "ARCHES": "amd64 arm64",
    }
    return Settings.load({}, env, {"project_dir": str(tmp_path), **flags})


def printed(settings: Settings, targets: str) -> str:
    plan = tasks.plan_for(settings, targets, build=False, route=False)
    wanted = {t.module for t in plan_mod.parse_targets(settings, [targets], plan_mod.ssl_modules(settings))[0]}
    text = snippet.dockerfile_lines(plan.jobs, wanted)
    check_dockerfile(text)
    return text


TWO_TARGETS = """\
# wtplain 1.5.0 for Python 3.12, built for linux/amd64 linux/arm64/v8
FROM --platform=$TARGETPLATFORM 127.0.0.1:9/me/python-musl-wheels:wtplain1.5.0-py3.12 AS wheels-wtplain1.5.0-py3.12
# wt-fix-name 0.3.0 for Python 3.12, built for linux/amd64
FROM --platform=$TARGETPLATFORM 127.0.0.1:9/me/python-musl-wheels:wt-fix-name0.3.0-py3.12 AS wheels-wt-fix-name0.3.0-py3.12

# The final stage should be python:3.12-alpine (or an image made from it): the wheels are for CPython 3.12 on musl.
FROM python:3.12-alpine
COPY --from=wheels-wtplain1.5.0-py3.12 / /wheels/
COPY --from=wheels-wt-fix-name0.3.0-py3.12 / /wheels/
RUN pip install --no-index --find-links /wheels wtplain==1.5.0 wt-fix-name==0.3.0
"""


def test_one_from_per_tag_and_one_final_stage(tmp_path: Path, index_server: str) -> None:
    settings = snippet_settings(tmp_path, index_server)
    assert printed(settings, "wtplain WT_Fix.Name-py3.12-amd64") == TWO_TARGETS


def test_each_python_has_a_final_stage_of_its_own(tmp_path: Path, index_server: str) -> None:
    text = printed(snippet_settings(tmp_path, index_server, arches="amd64"), "wtplain-pyall")
    assert text == """\
# One final stage per Python: build one with docker build --target py<python>.
# wtplain 1.5.0 for Python 3.11, built for linux/amd64
FROM --platform=$TARGETPLATFORM 127.0.0.1:9/me/python-musl-wheels:wtplain1.5.0-py3.11 AS wheels-wtplain1.5.0-py3.11

# The final stage should be python:3.11-alpine (or an image made from it): the wheels are for CPython 3.11 on musl.
FROM python:3.11-alpine AS py3.11
COPY --from=wheels-wtplain1.5.0-py3.11 / /wheels/
RUN pip install --no-index --find-links /wheels wtplain==1.5.0

# wtplain 1.5.0 for Python 3.12, built for linux/amd64
FROM --platform=$TARGETPLATFORM 127.0.0.1:9/me/python-musl-wheels:wtplain1.5.0-py3.12 AS wheels-wtplain1.5.0-py3.12

# The final stage should be python:3.12-alpine (or an image made from it): the wheels are for CPython 3.12 on musl.
FROM python:3.12-alpine AS py3.12
COPY --from=wheels-wtplain1.5.0-py3.12 / /wheels/
RUN pip install --no-index --find-links /wheels wtplain==1.5.0
"""


def test_a_dependency_comes_in_its_dependents_image(tmp_path: Path, index_server: str) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "wtplain.sh").write_text('mod_depends="WT_Fix.Name"\nmod_apk="zlib-dev"\n')
    settings = snippet_settings(tmp_path, index_server, arches="amd64")
    alone = printed(settings, "wtplain-py3.12")
    assert "wt-fix-name0.3.0" not in alone  # its wheels are in wtplain's image
    assert alone.endswith("RUN pip install --no-index --find-links /wheels wtplain==1.5.0\n")
    both = printed(settings, "wtplain-py3.12 wt-fix-name-py3.12")
    assert both.count("FROM --platform") == 1
    assert both.endswith("RUN pip install --no-index --find-links /wheels wtplain==1.5.0 wt-fix-name==0.3.0\n")
    # The no-shared kind: its own repository, and the libraries its wheels link.
    other = printed(snippet_settings(tmp_path, index_server, arches="amd64", no_shared="1"), "wtplain-py3.12")
    assert "FROM --platform=$TARGETPLATFORM 127.0.0.1:9/me/python-alpine-wheels:wtplain1.5.0-py3.12 AS " in other
    assert "# No-shared wheels link Alpine's libraries: apk add the runtime packages of zlib-dev.\n" in other


def test_two_versions_of_one_project_cannot_share_a_final_stage(tmp_path: Path, index_server: str) -> None:
    with pytest.raises(WheelTasksError, match=r"wtplain1\.0\.0-py3\.12 and wtplain1\.5\.0-py3\.12 cannot share"):
        printed(snippet_settings(tmp_path, index_server), "wtplain1.0.0-py3.12 wtplain1.5.0-py3.12")


@pytest.mark.parametrize("tag", ["cffi1.17.1-py3.12", "cryptography-openssl44.0.0-py3.13", "jinja2_3.1.4-py3.11",
                                 "wt-fix-name0.3.0rc1-py3.12", "Odd+Tag"])
def test_stage_names_are_valid_for_docker(tag: str) -> None:
    name = snippet.stage_name(tag)
    assert STAGE_RE.fullmatch(name) and name.startswith("wheels-")


# ---- through the command line -------------------------------------------------------------


def cli(tmp_path: Path, index_server: str, *args: str, command: str = "wheeltasks",
        **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_", "WHEELS_", "DO_", "NO_", "PIP_INDEX"))}
    base.update(PYPI_INDEX=index_server, WHEELTASKS_CACHE_DIR=str(tmp_path / "cache"), PYTHON_VERSIONS="3.11 3.12",
                ARCHES="amd64 arm64", BUILDER_IMAGE="127.0.0.1:9/builder:py{python}", **env)
    program = [sys.executable, "-m", "wheeltasks"] if command == "wheeltasks" else [sys.executable, "-m", "invoke",
                                                                                    "-r", str(ROOT)]
    return subprocess.run([*program, "snippet", *args], cwd=tmp_path, env=base, capture_output=True, text=True,
                          timeout=120)


def test_the_snippet_command_prints_the_lines(tmp_path: Path, index_server: str) -> None:
    done = cli(tmp_path, index_server, "wtplain", "WT_Fix.Name-py3.12-amd64", "--wheels-registry", REGISTRY)
    assert (done.returncode, done.stdout) == (0, TWO_TARGETS), done.stderr
    done = cli(tmp_path, index_server, "wtplain WT_Fix.Name-py3.12-amd64", command="inv", WHEELS_REGISTRY=REGISTRY)
    assert (done.returncode, done.stdout) == (0, TWO_TARGETS), done.stderr
    assert not (tmp_path / ".wheeltasks").exists()  # a snippet writes no work folder


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (("wtplain",), {}, "no registry configured: set WHEELS_REGISTRY"),
        (("wtplain", "--both"), {"WHEELS_REGISTRY": REGISTRY}, "a snippet uses one kind of wheel images"),
        (("wtplain1.0.0", "wtplain1.5.0"), {"WHEELS_REGISTRY": REGISTRY}, "cannot share a final stage"),
        (("wtplain1.0-sparc64",), {"WHEELS_REGISTRY": REGISTRY}, "unexpected 'sparc64'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, index_server: str, args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    done = cli(tmp_path, index_server, *args, **env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(lines) == 1 and lines[0].startswith("wheeltasks: ") and fragment in lines[0], done.stderr
