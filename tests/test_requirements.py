"""-r FILE: a requirements file's closure per platform and Python, by pip's own resolver run
here as the target; the plan's jobs and wheel sets from it; the wheel set's tag and snippet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.helpers import make_settings
from wheeltasks import runreport, snippet, wheelset
from wheeltasks.index import IndexClient
from wheeltasks.plan import resolve
from wheeltasks.requirements import closure_of, marker_environment, resolve_file
from wheeltasks.targets import get_arch

ARM64, ARMV7, AMD64 = get_arch("arm64v8"), get_arch("armv7"), get_arch("amd64")


def item(name: str, version: str, requires: list[str], extras: list[str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "version": version, "requires_dist": requires},
            **({"requested_extras": extras} if extras else {})}


def test_the_marker_environment_is_the_targets() -> None:
    env = marker_environment(ARMV7, "3.12")
    assert (env["platform_machine"], env["python_version"], env["sys_platform"], env["implementation_name"]) == (
        "armv7l", "3.12", "linux", "cpython")
    assert marker_environment(ARM64, "3.9")["platform_machine"] == "aarch64"


def test_a_closure_has_each_edge_its_markers_and_extras_give_on_the_target_dependencies_first() -> None:
    report = {"install": [
        item("App", "1.0", ["lib-b>=1", 'Lib_C; extra == "fast"', 'armlib; platform_machine == "armv7l"',
                            'absent; python_version < "3"'], extras=["fast"]),
        item("lib-b", "2.0", []),
        item("lib.c", "3.0", ["lib-b"]),
        item("armlib", "0.1", []),
    ]}
    arm64 = {p.name: p for p in closure_of(report, ARM64, "3.12")}
    armv7 = {p.name: p for p in closure_of(report, ARMV7, "3.12")}
    assert arm64["app"].needs == ("lib-b", "lib-c")  # names normalised; armlib not on aarch64
    assert armv7["app"].needs == ("lib-b", "lib-c", "armlib")
    assert arm64["lib-c"].version == Version("3.0") and arm64["lib-c"].needs == ("lib-b",)
    order = [p.name for p in closure_of(report, ARMV7, "3.12")]
    assert order.index("lib-b") < order.index("lib-c") < order.index("app")
    assert order.index("armlib") < order.index("app")


def test_a_cycle_pip_allows_is_cut_where_it_closes() -> None:
    report = {"install": [item("a", "1", ["b"]), item("b", "1", ["a"])]}
    order = [p.name for p in closure_of(report, AMD64, "3.11")]
    assert sorted(order) == ["a", "b"]


@pytest.fixture
def requirements_file(tmp_path: Path) -> Path:
    """Fixture packages (sdists only: pip builds their metadata here), with markers that are
    true on some targets only: the host (x86_64, Python 3.11) would say otherwise."""
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# the app's requirements\n"
        "wtdep\n"  # needs wtzlib
        'wtstatx ; platform_machine == "aarch64"\n'
        'wtabi ; python_version >= "3.11"\n'
    )
    return path


def test_pip_resolves_the_file_for_each_target_not_for_this_machine(
    tmp_path: Path, index_server: str, requirements_file: Path
) -> None:
    settings = make_settings(tmp_path, env={"PYPI_INDEX": index_server})
    closures = resolve_file(settings, requirements_file, ["3.10", "3.11"], [AMD64, ARM64])
    names = {(c.python, c.arch.name): [p.name for p in c.pinned] for c in closures}
    assert names == {
        ("3.10", "amd64"): ["wtzlib", "wtdep"],
        ("3.10", "arm64v8"): ["wtzlib", "wtdep", "wtstatx"],
        ("3.11", "amd64"): ["wtabi", "wtzlib", "wtdep"],
        ("3.11", "arm64v8"): ["wtabi", "wtzlib", "wtdep", "wtstatx"],
    }
    wtdep = next(p for p in closures[0].pinned if p.name == "wtdep")
    assert (str(wtdep.version), wtdep.needs) == ("1.0.0", ("wtzlib",))


def test_the_plan_has_a_job_per_distribution_after_those_it_needs_and_a_wheel_set_per_platform(
    tmp_path: Path, index_server: str, requirements_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, env={"PYPI_INDEX": index_server, "ARCHES": "amd64 arm64v8",
                                            "PYTHON_VERSIONS": "3.11", "WHEELS_REGISTRY": "127.0.0.1:9/me"})
    plan = resolve(settings, ["wtturn-amd64"], IndexClient(settings), requirements=[requirements_file])
    targets = [job.target for job in plan.jobs]
    assert "wtturn2.0.0-py3.11-amd64" in targets  # beside the targets
    assert targets.index("wtzlib1.0.0-py3.11-arm64v8") < targets.index("wtdep1.0.0-py3.11-arm64v8")
    wtdep = next(job for job in plan.jobs if job.target == "wtdep1.0.0-py3.11-arm64v8")
    assert [dep.target for dep in wtdep.depends] == ["wtzlib1.0.0-py3.11-arm64v8"]
    assert {(s.arch.name, s.names) for s in plan.sets} == {
        ("amd64", ("wtabi", "wtzlib", "wtdep")), ("arm64v8", ("wtabi", "wtzlib", "wtdep", "wtstatx"))}
    (image,) = wheelset.set_images(settings, plan.sets)
    assert image.tag.startswith("requirements-") and image.tag.endswith("-py3.11")
    # The same closure gives the same tag; IMAGE_TAG names it.
    again = resolve(settings, [], IndexClient(settings), requirements=[requirements_file])
    assert wheelset.set_images(settings, again.sets)[0].tag == image.tag
    named = make_settings(tmp_path, env={"PYPI_INDEX": index_server, "IMAGE_TAG": "myapp", "WHEELS_REGISTRY": "r:5/me"})
    assert wheelset.set_images(named, again.sets)[0].image(named) == "r:5/me/python-musl-wheels:myapp-py3.11"
    # resolve -r FILE shows the set image each platform's closure goes into, as text and JSON.
    runreport.print_plan(settings, plan)
    shown = capsys.readouterr().out.split("\nwheel sets")[1].splitlines()
    assert f"{image.image(settings)}  linux/arm64/v8  wtabi==1.0.0 wtzlib==1.0.0 wtdep==1.0.0 wtstatx==1.0.0" in shown
    assert sum(image.image(settings) in line for line in shown) == 2  # one row per platform
    rows = {row["target"]: row["wheel_sets"] for row in runreport.plan_json(settings, plan)}
    assert rows["wtstatx1.0.0-py3.11-arm64v8"] == [image.image(settings)]
    assert rows["wtturn2.0.0-py3.11-amd64"] == []  # a target's job, in no set
    text = snippet.wheel_set_lines(settings, [image], requirements_file)
    assert f"FROM --platform=$TARGETPLATFORM {image.image(settings)} AS " in text
    assert "RUN pip install --no-index --find-links /wheels -r /tmp/requirements.txt" in text


def test_constraints_and_the_files_own_index_url_are_pips_to_read(tmp_path: Path, index_server: str) -> None:
    (tmp_path / "constraints.txt").write_text("wtturn==1.0.0\n")
    (tmp_path / "more.txt").write_text("wtzlib\n")
    path = tmp_path / "requirements.txt"
    path.write_text(f"--index-url {index_server}\n-c constraints.txt\n-r more.txt\nwtturn\n")
    # PYPI_INDEX answers nothing: the file's own --index-url line is the one pip reads.
    settings = make_settings(tmp_path, env={"PYPI_INDEX": "http://127.0.0.1:9/simple/"})
    (closure,) = resolve_file(settings, path, ["3.11"], [ARM64])
    assert {(p.name, str(p.version)) for p in closure.pinned} == {("wtturn", "1.0.0"), ("wtzlib", "1.0.0")}


def test_requirements_pythons_names_the_pythons_of_the_file(
    tmp_path: Path, index_server: str, requirements_file: Path
) -> None:
    settings = make_settings(tmp_path, env={"PYPI_INDEX": index_server, "ARCHES": "amd64",
                                            "REQUIREMENTS_PYTHONS": "3.10 3.11", "WHEELS_REGISTRY": "127.0.0.1:9/me"})
    plan = resolve(settings, [], IndexClient(settings), requirements=[requirements_file])
    assert {(s.python, s.names) for s in plan.sets} == {("3.10", ("wtzlib", "wtdep")),
                                                         ("3.11", ("wtabi", "wtzlib", "wtdep"))}
    tags = sorted(image.tag for image in wheelset.set_images(settings, plan.sets))
    assert [tag.rpartition("-")[2] for tag in tags] == ["py3.10", "py3.11"]
