"""Where each job's wheel comes from: the target's accepted tags (packaging.tags for the
target, not the host), the index's wheel a job may take, and which job builds for whom."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import Tag
from packaging.version import Version

from tests.fixtures_index import StaticIndex
from wheeltasks import sources
from wheeltasks.index import IndexClient
from wheeltasks.job import Job, Mode, Source
from wheeltasks.pages import DistFile
from wheeltasks.plan import resolve
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import get_arch
from wheeltasks.wheeltags import abi3_floor, is_pure, preference, target_tags

MakeSettings = Callable[..., Settings]
SHA = "ab" * 32


def dist(filename: str, *, sha256: str = SHA, yanked: bool = False) -> DistFile:
    version = Version(filename.split("-")[1].removesuffix(".tar.gz"))
    return DistFile(filename, version, None, yanked, "", f"http://127.0.0.1:1/files/{filename}", sha256)


# ---- the target's tags ----------------------------------------------------------------------


def test_target_tags_are_the_targets_not_the_hosts() -> None:
    tags = target_tags(get_arch("arm64v8"), "3.12", unrepaired=False)
    assert tags[0] == Tag("cp312", "cp312", "musllinux_1_2_aarch64")
    assert Tag("cp311", "abi3", "musllinux_1_0_aarch64") in tags
    assert Tag("py3", "none", "any") in tags and tags.index(Tag("py3", "none", "any")) > tags.index(Tag("cp311", "abi3", "musllinux_1_0_aarch64"))
    machines = {t.platform.rsplit("_", 1)[-1] for t in tags if t.platform != "any"}
    assert machines == {"aarch64"}  # never the host's x86_64
    assert not any(t.platform.startswith(("manylinux", "linux_")) for t in tags)
    assert Tag("cp312", "cp312", "linux_aarch64") in target_tags(get_arch("arm64v8"), "3.12")
    # armv6 and armv7 are both armv7l to auditwheel and pip: the tag names the machine.
    assert target_tags(get_arch("armv7"), "3.11")[0] == Tag("cp311", "cp311", "musllinux_1_2_armv7l")


@pytest.mark.parametrize(
    ("filename", "accepted"),
    [
        ("m-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", True),
        ("m-1.0-cp38-abi3-musllinux_1_1_aarch64.whl", True),
        ("m-1.0-py3-none-any.whl", True),
        ("m-1.0-cp313-abi3-musllinux_1_2_aarch64.whl", False),  # abi3 of a later Python
        ("m-1.0-cp311-cp311-musllinux_1_2_aarch64.whl", False),  # another Python's ABI
        ("m-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", False),  # glibc
        ("m-1.0-cp312-cp312-musllinux_1_2_x86_64.whl", False),  # the host's machine
        ("m-1.0-cp312-cp312-linux_aarch64.whl", False),  # unrepaired
        ("m-1.0.tar.gz", False),
    ],
)
def test_what_an_arm64_python_3_12_accepts(filename: str, accepted: bool) -> None:
    assert (preference(filename, target_tags(get_arch("arm64v8"), "3.12", unrepaired=False)) is not None) is accepted


def test_pip_order_the_most_specific_first() -> None:
    accepted = target_tags(get_arch("amd64"), "3.12")
    names = ["m-1.0-py3-none-any.whl", "m-1.0-cp38-abi3-musllinux_1_1_x86_64.whl", "m-1.0-cp312-cp312-musllinux_1_2_x86_64.whl"]
    ranks = [preference(n, accepted) for n in names]
    assert ranks == sorted(ranks, reverse=True)


def test_pure_and_abi3_wheels() -> None:
    assert is_pure("m-1.0-py3-none-any.whl") and is_pure("m-1.0-py2.py3-none-any.whl")
    assert not is_pure("m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl") and not is_pure("m-1.0.tar.gz")
    assert abi3_floor("m-1.0-cp37-abi3-musllinux_1_2_x86_64.whl") == (3, 7)
    assert abi3_floor("m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl") is None


# ---- the index's wheel ----------------------------------------------------------------------


@pytest.fixture
def jobs_of(static_index: StaticIndex, index_settings: MakeSettings, tmp_path: Path) -> Callable[..., tuple[Job, ...]]:
    """``jobs_of(files, *targets, **flags)``: the plan's jobs, their sources decided from ``files``
    (the module's files as the index would list them) instead of the fixture index's."""

    def make(files: Sequence[DistFile], *targets: str, **flags: Any) -> tuple[Job, ...]:
        flags.setdefault("python_versions", "3.11,3.12")
        flags.setdefault("arches", "amd64,arm64v8")
        flags.setdefault("project_dir", str(tmp_path))
        settings = index_settings(static_index.url(), **{**flags, "reuse": "never"})
        planned = resolve(settings, list(targets), IndexClient(settings)).jobs
        assert {j.source for j in planned} == {Source.BUILD}  # REUSE=never: every job builds
        deciding = index_settings(static_index.url(), **flags)
        return sources.decide(deciding, planned, lambda _module: files)

    return make


def by_target(jobs: Sequence[Job]) -> dict[tuple[str, str, str], Job]:
    return {(j.python, j.arch.name, j.kind.value): j for j in jobs}


def test_a_job_takes_the_index_wheel_its_platform_accepts(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    files = [
        dist("wtfix-1.1.0.tar.gz"),
        dist("wtfix-1.1.0-cp311-cp311-musllinux_1_2_x86_64.whl"),
        dist("wtfix-1.1.0-cp311-cp311-linux_aarch64.whl"),
        dist("wtfix-1.1.0-cp312-cp312-musllinux_1_1_aarch64.whl", sha256=""),  # no hash to check it by
        dist("wtfix-1.1.0-cp312-cp312-musllinux_1_2_x86_64.whl", yanked=True),
    ]
    jobs = by_target(jobs_of(files, "wtfix1.1.0-pyall", build_both=True))
    taken = {key: j.index_file.filename for key, j in jobs.items() if j.source is Source.INDEX and j.index_file}
    assert taken == {
        ("3.11", "amd64", "shared"): "wtfix-1.1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        ("3.11", "amd64", "no-shared"): "wtfix-1.1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        # a no-shared job may take an unrepaired binary wheel, as the original system did
        ("3.11", "arm64v8", "no-shared"): "wtfix-1.1.0-cp311-cp311-linux_aarch64.whl",
    }
    assert all(j.source is not Source.INDEX for key, j in jobs.items() if key not in taken)
    assert "the index has wtfix-1.1.0-cp311" in jobs[("3.11", "amd64", "shared")].source_why


def test_no_binary_and_reuse_never_take_nothing(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    files = [dist("wtfix-1.1.0-py3-none-any.whl")]
    for flags in ({"no_binary": True}, {"reuse": "never"}):
        jobs = jobs_of(files, "wtfix1.1.0-pyall", **flags)
        assert Source.INDEX not in {j.source for j in jobs}, flags
    # NO_BINARY still lets one build serve the others: what comes out is the same wheel.
    assert {j.source for j in jobs_of(files, "wtfix1.1.0-pyall", no_binary=True)} == {Source.BUILD, Source.REUSE}


# ---- one build for many jobs ----------------------------------------------------------------


def test_a_pure_module_builds_once_for_every_arch_python_and_kind(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    # This version has no wheel (a fresh release): an older version's wheel is the evidence.
    files = [dist("wtfix-1.0.0-py3-none-any.whl"), dist("wtfix-1.1.0.tar.gz")]
    jobs = jobs_of(files, "wtfix1.1.0-pyall", build_both=True)
    builders = [j for j in jobs if j.source is Source.BUILD]
    assert len(jobs) == 8 and len(builders) == 1
    (first,) = builders
    assert (first.python, first.arch.name, first.kind, first.mode) == ("3.11", "amd64", Kind.SHARED, Mode.NATIVE)
    assert all(j.provider is first for j in jobs if j is not first)
    assert jobs.index(first) < min(jobs.index(j) for j in jobs if j is not first)  # it comes first
    assert "pure" in jobs[-1].source_why


def test_an_abi3_module_builds_once_per_arch_for_both_kinds(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    files = [dist("wtfix-1.1.0-cp38-abi3-musllinux_1_2_riscv64.whl")]  # no wheel for these platforms
    jobs = by_target(jobs_of(files, "wtfix1.1.0-pyall", build_both=True, python_versions="3.11,3.12,3.13"))
    for arch, machine in (("amd64", "x86_64"), ("arm64v8", "aarch64")):
        first = jobs[("3.11", arch, "shared")]
        assert first.source is Source.BUILD
        for python in ("3.11", "3.12", "3.13"):
            for kind in ("shared", "no-shared"):
                later = jobs[(python, arch, kind)]
                if later is not first:
                    assert (later.source, later.provider) == (Source.REUSE, first), (python, arch, kind)
        assert sources.serves(f"wtfix-1.1.0-cp311-abi3-musllinux_1_2_{machine}.whl", first, jobs[("3.13", arch, "shared")])
        # the no-shared jobs take the wheel as it was built, before the shared job's repair
        assert sources.serves(f"wtfix-1.1.0-cp311-abi3-linux_{machine}.whl", first, jobs[("3.13", arch, "no-shared")])
        assert "no-shared" not in jobs[("3.12", arch, "shared")].source_why
        assert "as built: the kinds build alike" in jobs[("3.12", arch, "no-shared")].source_why
    assert len([j for j in jobs.values() if j.source is Source.BUILD]) == 2  # of 12 jobs


def test_a_per_python_module_builds_once_per_python_and_arch_for_both_kinds(
    jobs_of: Callable[..., tuple[Job, ...]],
) -> None:
    files = [dist("wtfix-1.0.0-cp311-cp311-musllinux_1_2_riscv64.whl"), dist("wtfix-1.1.0.tar.gz")]
    jobs = by_target(jobs_of(files, "wtfix1.1.0-pyall", build_both=True))
    for (python, arch, kind), job in jobs.items():
        if kind == "shared":
            assert job.source is Source.BUILD
        else:  # the same build, without the repair: it takes the shared job's
            assert (job.source, job.provider) == (Source.REUSE, jobs[(python, arch, "shared")])
            assert job.source_why == f"{job.provider.target} (shared, as built: the kinds build alike) builds for both kinds"
    # Without the other kind in the plan there is nothing to share.
    assert {j.source for j in jobs_of(files, "wtfix1.1.0-pyall")} == {Source.BUILD}


def test_a_recipe_that_reads_kind_builds_each_kind(jobs_of: Callable[..., tuple[Job, ...]], tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "wtfix.sh").write_text(
        '# KIND in a comment does not count\nmod_build() {\n    [ "$KIND" = shared ] || export CFLAGS=-O1\n}\n')
    per_python = [dist("wtfix-1.0.0-cp311-cp311-musllinux_1_2_riscv64.whl"), dist("wtfix-1.1.0.tar.gz")]
    assert {j.source for j in jobs_of(per_python, "wtfix1.1.0-pyall", build_both=True)} == {Source.BUILD}
    abi3 = by_target(jobs_of([dist("wtfix-1.1.0-cp38-abi3-musllinux_1_2_riscv64.whl")], "wtfix1.1.0-pyall",
                             build_both=True))
    for arch in ("amd64", "arm64v8"):
        for kind in ("shared", "no-shared"):  # one build per arch and kind: the later Python takes it
            first, later = abi3[("3.11", arch, kind)], abi3[("3.12", arch, kind)]
            assert first.source is Source.BUILD and later.provider is first
    # Nor does the run give the shared build to the no-shared job.
    assert not sources.serves("wtfix-1.1.0-cp311-abi3-linux_x86_64.whl", abi3[("3.11", "amd64", "shared")],
                              abi3[("3.11", "amd64", "no-shared")])


def test_the_run_decides_again_from_the_wheel_that_came_out(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    jobs = by_target(jobs_of([dist("wtfix-1.0.0-py3-none-any.whl")], "wtfix1.1.0-pyall", python_versions="3.11,3.12,3.13"))
    first, later_arm = jobs[("3.11", "amd64", "shared")], jobs[("3.12", "arm64v8", "shared")]
    assert sources.serves("wtfix-1.1.0-py3-none-any.whl", first, later_arm)
    # The release came out with a compiled part after all: its wheel serves no other job.
    assert not sources.serves("wtfix-1.1.0-cp311-cp311-musllinux_1_2_x86_64.whl", first, later_arm)
    # An abi3 wheel serves only its own arch and kind, from its floor on.
    abi3 = "wtfix-1.1.0-cp312-abi3-musllinux_1_2_x86_64.whl"
    assert not sources.serves(abi3, first, later_arm)
    assert sources.serves(abi3, first, jobs[("3.13", "amd64", "shared")])
    assert not sources.serves(abi3, first, jobs[("3.11", "amd64", "shared")])


def test_a_shared_build_serves_the_no_shared_job_of_its_python_and_arch(jobs_of: Callable[..., tuple[Job, ...]]) -> None:
    jobs = by_target(jobs_of([dist("wtfix-1.1.0.tar.gz")], "wtfix1.1.0-pyall", build_both=True))
    shared, no_shared = jobs[("3.11", "amd64", "shared")], jobs[("3.11", "amd64", "no-shared")]
    assert sources.serves("wtfix-1.1.0-cp311-cp311-linux_x86_64.whl", shared, no_shared)  # as built
    assert not sources.serves("wtfix-1.1.0-cp311-cp311-linux_x86_64.whl", shared, jobs[("3.12", "amd64", "no-shared")])
    assert not sources.serves("wtfix-1.1.0-cp311-cp311-linux_x86_64.whl", shared, jobs[("3.11", "arm64v8", "no-shared")])
    # A no-shared build never stands in for a shared job's: that needs the repair.
    assert not sources.serves("wtfix-1.1.0-cp311-cp311-linux_x86_64.whl", no_shared, shared)
    assert not sources.serves("wtfix-1.1.0-cp311-cp311-musllinux_1_2_x86_64.whl", no_shared, shared)


def test_a_reusing_job_waits_for_its_provider(jobs_of: Callable[..., tuple[Job, ...]], tmp_path: Path) -> None:
    from wheeltasks.plan import Plan

    jobs = jobs_of([dist("wtfix-1.0.0-py3-none-any.whl")], "wtfix1.1.0-pyall")
    plan = Plan(jobs)
    first = next(j for j in jobs if j.source is Source.BUILD)
    assert all(plan.waits_for(j) == (first,) for j in jobs if j is not first)
    assert all(j.to_json()["reuse_of"] == first.target for j in jobs if j is not first)
