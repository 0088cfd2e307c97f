"""The flow's rules without Docker: when a job is pulled, reused, skipped, built or failed."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.helpers import fake_wheel, make_settings
from wheeltasks import pipeline, running, scheduler, stepruns, steps
from wheeltasks.errors import Stopped, WheelTasksError
from wheeltasks.flow import Outcome, build_decision, wants_self_pull
from wheeltasks.job import Job, make_job
from wheeltasks.plan import Plan
from wheeltasks.runreport import REPORT_FILE, JobResult
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import get_arch
from wheeltasks.workdir import State, WorkDir

REGISTRY = {"WHEELS_REGISTRY": "127.0.0.1:9/me"}


@pytest.mark.parametrize(
    ("env", "state", "pull"),
    [
        ({}, State.EMPTY, False),  # no registry: nothing to pull from
        (REGISTRY, State.EMPTY, True),
        (REGISTRY, State.BUILT, True),  # published wheels replace an older build
        (REGISTRY, State.PULLED, False),  # already here
        ({**REGISTRY, "WHEELS_FORCE_PULL": "1"}, State.PULLED, True),
        ({**REGISTRY, "NO_SELF_PULL": "1"}, State.EMPTY, False),
        ({**REGISTRY, "NO_PULL_WHEELS": "1"}, State.EMPTY, False),
        ({**REGISTRY, "NO_PULL_WHEELS": "1", "WHEELS_FORCE_PULL": "1"}, State.EMPTY, False),
    ],
)
def test_self_pull_decision(tmp_path: Path, env: dict[str, str], state: State, pull: bool) -> None:
    assert wants_self_pull(make_settings(tmp_path, env=env), state) is pull


@pytest.mark.parametrize(
    ("env", "state", "decision"),
    [
        ({}, State.EMPTY, Outcome.BUILT),
        ({}, State.BUILT, Outcome.BUILT),  # a build step always builds again
        ({}, State.PULLED, Outcome.REUSED),
        ({"NO_SELF_PULL": "1"}, State.PULLED, Outcome.BUILT),
        ({"NO_BUILD": "1"}, State.EMPTY, Outcome.SKIPPED),
        ({"NO_BUILD": "1"}, State.PULLED, Outcome.REUSED),
    ],
)
def test_build_decision(tmp_path: Path, env: dict[str, str], state: State, decision: Outcome) -> None:
    assert build_decision(make_settings(tmp_path, env=env), state) is decision


def test_workdir_state_changes(tmp_path: Path) -> None:
    work = WorkDir(tmp_path / "w")
    assert work.state() is State.EMPTY and work.result_wheels() == []
    staging = work.staging("built")
    fake_wheel(staging, "m-1.0-cp311-cp311-linux_x86_64.whl")
    work.accept("built", staging)
    assert work.state() is State.BUILT and work.result_wheels() == []  # built is not a result yet
    staging = work.staging("repaired")
    repaired = fake_wheel(staging, "m-1.0-cp311-cp311-musllinux_1_2_x86_64.whl")
    work.accept("repaired", staging)
    assert work.state() is State.REPAIRED
    assert work.result_wheels() == [work.repaired / repaired.name]
    # Published wheels replace the older build, and a new build replaces pulled ones.
    staging = work.staging("pulled")
    fake_wheel(staging, "m-1.1-cp311-cp311-musllinux_1_2_x86_64.whl")
    work.accept("pulled", staging)
    assert work.state() is State.PULLED and not work.built.exists() and not work.repaired.exists()
    staging = work.staging("built")
    fake_wheel(staging, "m-1.2-cp311-cp311-linux_x86_64.whl")
    work.accept("built", staging)
    assert work.state() is State.BUILT and not work.pulled.exists()
    assert sorted(p.name for p in work.root.iterdir()) == ["built"]  # no staging left
    work.discard(work.staging("repaired"))
    assert sorted(p.name for p in work.root.iterdir()) == ["built"]


def test_the_last_build_log_is_the_newest(tmp_path: Path) -> None:
    """A cross build writes build-cross.log: the report names it, unless a later build
    (the emulated retry, or a later run) wrote build.log after it."""
    work = WorkDir(tmp_path / "w")
    assert work.last_build_log is None
    work.root.mkdir(parents=True)
    work.cross_log.write_text("cross")
    assert work.last_build_log == work.cross_log
    work.build_log.write_text("emulated")
    os.utime(work.cross_log, ns=(1, 1))
    assert work.last_build_log == work.build_log
    os.utime(work.build_log, ns=(1, 1))
    os.utime(work.cross_log, ns=(2, 2))  # a later run cross-built over an old build.log
    assert work.last_build_log == work.cross_log


def job_of(settings: Settings, module: str, kind: Kind = Kind.NO_SHARED, depends: tuple[Job, ...] = ()) -> Job:
    return make_job(
        settings, module=module, version=Version("1.0"), python="3.11", arch=get_arch("amd64"), kind=kind,
        depends=depends,
    )


def plan_with_a_failure(settings: Settings) -> tuple[Job, Job, Job, Job]:
    """``broken`` has nothing to repair; ``child`` depends on it; ``fine`` and ``late`` do not."""
    broken = job_of(settings, "wtbroken")
    child = job_of(settings, "wtchild", depends=(broken,))
    fine = job_of(settings, "wtfine")
    late = job_of(settings, "wtlate")
    for job in (fine, late):
        fake_wheel(job.work.built, f"{job.module}-1.0-cp311-cp311-linux_x86_64.whl")
    return broken, child, fine, late


def test_a_failed_job_skips_its_dependents_and_the_run_goes_on(tmp_path: Path, capsys: Any) -> None:
    settings = make_settings(tmp_path)
    broken, child, fine, late = plan_with_a_failure(settings)
    with pytest.raises(WheelTasksError, match=r"2 of 4 job\(s\) did not finish \(first: wtbroken1.0-py3.11-amd64\)") as caught:
        pipeline.run(settings, Plan((broken, child, fine, late)), steps=("repair",))
    assert caught.value.exit_code == 2  # a user error (nothing built) decides the code
    report = json.loads((settings.work_dir / REPORT_FILE).read_text())
    results = {job["module"]: job["result"] for job in report["jobs"]}
    assert results == {"wtbroken": "failed", "wtchild": "dependency failed", "wtfine": "done", "wtlate": "done"}
    assert "nothing built to repair" in report["jobs"][0]["error"]
    assert fine.work.state() is State.REPAIRED and late.work.state() is State.REPAIRED
    err = capsys.readouterr().err
    assert "dependency failed" in err and "wtlate1.0-py3.11-amd64" in err  # the closing table


def test_fail_fast_stops_at_the_first_failure(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, fail_fast=True)
    broken, child, fine, late = plan_with_a_failure(settings)
    with pytest.raises(WheelTasksError):
        pipeline.run(settings, Plan((broken, child, fine, late)), steps=("repair",))
    report = json.loads((settings.work_dir / REPORT_FILE).read_text())
    assert [job["module"] for job in report["jobs"]] == ["wtbroken"]
    assert fine.work.state() is State.BUILT


def test_parallel_runner_keeps_dependencies_and_core_first(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    core = job_of(settings, "wtcore")
    dep = job_of(settings, "wtdep")
    child = job_of(settings, "wtchild", depends=(dep,))
    others = [job_of(settings, f"wtother{n}") for n in range(4)]
    jobs = (core, dep, child, *others)
    for job in jobs:
        fake_wheel(job.work.built, f"{job.module}-1.0-cp311-cp311-linux_x86_64.whl")
    plan = Plan(jobs, core=frozenset({core.key}))
    report = scheduler.Runner(settings, plan).run(("repair",), width=4)
    results = {r.job.module: r for r in report.results}
    assert all(r.outcome == "done" for r in results.values())
    assert results["wtchild"].started >= results["wtdep"].ended
    assert all(r.started >= results["wtcore"].ended for name, r in results.items() if name != "wtcore")
    assert plan.waits_for(child) == (dep, core) and plan.waits_for(core) == ()


def test_parallel_run_with_a_failure_skips_dependents_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    broken, child, fine, late = plan_with_a_failure(settings)
    with pytest.raises(WheelTasksError, match=r"2 of 4 job\(s\) did not finish"):
        scheduler.Runner(settings, Plan((broken, child, fine, late))).run(("repair",), width=3)
    report = json.loads((settings.work_dir / REPORT_FILE).read_text())
    assert {job["module"]: job["result"] for job in report["jobs"]} == {
        "wtbroken": "failed", "wtchild": "dependency failed", "wtfine": "done", "wtlate": "done"}


def test_other_spellings_of_a_tag() -> None:
    from wheeltasks.imageformat import other_spellings
    from wheeltasks.targets import SSL

    tags = ["PyNaCl1.5.0-py3.11", "PyNaCl1.5.0-py3.11-amd64", "pynacl1.5.0-py3.12", "PyNaCl1.4.0-py3.11",
            "cryptography45.0.1-py3.11", "cryptography-libressl45.0.1-py3.11", "weird-", "PyNaCl1.5.0-py3.11-armv7"]
    amd64 = get_arch("amd64")
    assert other_spellings(tags, "pynacl", None, Version("1.5.0"), "3.11", amd64) == [
        "PyNaCl1.5.0-py3.11", "PyNaCl1.5.0-py3.11-amd64"]
    assert other_spellings(tags, "cryptography", SSL.OPENSSL, Version("45.0.1"), "3.11", amd64) == [
        "cryptography45.0.1-py3.11"]
    assert other_spellings(tags, "cryptography", SSL.LIBRESSL, Version("45.0.1"), "3.11", amd64) == [
        "cryptography-libressl45.0.1-py3.11"]


def test_a_tag_in_the_projects_own_capitalisation_is_pulled(tmp_path: Path, registry_plain: Any) -> None:
    """The original system wrote tags like PyNaCl1.5.0-py3.11-amd64; such an image is this job's."""
    from tests.helpers import make_wheel
    from wheeltasks.imageformat import config_blob, image_manifest, layer_tar
    from wheeltasks.oci import OCI_MANIFEST
    from wheeltasks.registry import RegistryClient

    settings = make_settings(tmp_path, env={"WHEELS_REGISTRY": f"{registry_plain.host}/caps"})
    job = make_job(settings, module="pynacl", version=Version("1.5.0"), python="3.11", arch=get_arch("amd64"),
                   kind=Kind.SHARED)
    client = RegistryClient(registry_plain.host, docker_config=str(tmp_path / "none.json"))
    wheel = make_wheel(tmp_path / "w", "PyNaCl", "1.5.0", "musllinux_1_2_x86_64")
    layer = layer_tar([wheel])
    config = config_blob(job.arch, layer, {}, None)
    repo = job.repository.path
    client.put_blob(repo, layer)
    client.put_blob(repo, config)
    client.put_manifest(repo, "PyNaCl1.5.0-py3.11-amd64", OCI_MANIFEST, image_manifest(config, layer, {}))
    pipeline.run(settings, Plan((job,)), steps=("pull-existing",))
    assert job.work.state() is State.PULLED
    assert [p.name for p in job.work.result_wheels()] == [wheel.name]


# ---- a step run alone on nothing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "state", "first"),
    [
        (("export",), State.EMPTY, "nothing built for wtdep1.0-py3.11-amd64 or its dependencies"),
        (("repair",), State.EMPTY, "nothing built for wtdep1.0-py3.11-amd64 or its dependencies"),
        (("push",), State.EMPTY, "nothing built for wtdep1.0-py3.11-amd64 or its dependencies"),
        (("export",), State.BUILT, "built but not repaired for wtdep1.0-py3.11-amd64 or its dependencies"),
        (("push",), State.BUILT, "built but not repaired for wtdep1.0-py3.11-amd64 or its dependencies"),
    ],
)
def test_a_step_run_alone_on_nothing_names_what_to_run_first(
    tmp_path: Path, steps: tuple[str, ...], state: State, first: str
) -> None:
    settings = make_settings(tmp_path, env=REGISTRY)
    base = job_of(settings, "wtbase")
    dep = job_of(settings, "wtdep", depends=(base,))
    if state is State.BUILT:
        for job in (base, dep):
            fake_wheel(job.work.built, f"{job.module}-1.0-cp311-cp311-linux_x86_64.whl")
    task = "build" if state is State.EMPTY else "repair"
    with pytest.raises(WheelTasksError) as caught:
        pipeline.run(settings, Plan((base, dep)), steps=steps)
    assert str(caught.value) == f"{first} in {settings.work_dir}: run `inv {task} wtdep1.0-py3.11-amd64` first"
    assert caught.value.exit_code == 2
    if state is State.EMPTY:
        assert not settings.work_dir.exists()  # no report, no folder: nothing written
    else:
        assert not (settings.work_dir / REPORT_FILE).exists()


def test_a_step_alone_on_many_jobs_says_it_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    jobs = tuple(job_of(settings, f"wtmany{chr(97 + n)}") for n in range(5))
    with pytest.raises(WheelTasksError, match=r"nothing built for any of the 5 jobs \(wtmanya1.0-py3.11-amd64, "
                                              r"wtmanyb1.0-py3.11-amd64, wtmanyc1.0-py3.11-amd64, \.\.\.\) in .*: "
                                              r"run `inv build` on the same targets first"):
        pipeline.run(settings, Plan(jobs), steps=("export",))


def test_a_libressl_export_needs_nothing(tmp_path: Path) -> None:
    from wheeltasks.targets import SSL

    settings = make_settings(tmp_path)
    job = make_job(settings, module="cryptography", ssl=SSL.LIBRESSL, version=Version("45.0"), python="3.11",
                   arch=get_arch("amd64"), kind=Kind.SHARED)
    report = pipeline.run(settings, Plan((job,)), steps=("export",))
    assert [r.outcome for r in report.results] == ["done"]


# ---- stopped runs leave no staging folder ------------------------------------------------------


def interrupted_runner(settings: Settings, width: int, monkeypatch: pytest.MonkeyPatch,
                       first: int = signal.SIGINT) -> tuple[scheduler.Runner, list[Path], threading.Event]:
    """A runner whose repair step makes a staging folder and then waits (as a stuck pull
    would) until a signal, sent once every job is in it, stops the run; a second Ctrl-C
    comes while the run is stopping its builds."""
    jobs = tuple(job_of(settings, f"wtstop{n}") for n in range(width))
    for job in jobs:
        fake_wheel(job.work.built, f"{job.module}-1.0-cp311-cp311-linux_x86_64.whl")
    staged: list[Path] = []
    ready = threading.Barrier(width + 1 if width > 1 else 1)
    release = threading.Event()

    def stuck_repair(context: stepruns.Context, job: Job, result: JobResult) -> None:
        staged.append(job.work.staging("repaired"))
        (staged[-1] / "half.whl").write_bytes(b"half")
        if width > 1:
            ready.wait(10)
            release.wait(10)
        else:
            os.kill(os.getpid(), first)
            time.sleep(10)  # the signal interrupts this

    stop_all = running.stop_all

    def stop_all_and_ctrl_c_again(wait: float = 2.0) -> None:
        signal.raise_signal(signal.SIGINT)  # the impatient second Ctrl-C
        stop_all(wait)

    monkeypatch.setattr(running, "stop_all", stop_all_and_ctrl_c_again)
    table = {**steps.BY_NAME, steps.REPAIR.name: dataclasses.replace(steps.REPAIR, run=stuck_repair)}
    runner = scheduler.Runner(settings, Plan(jobs), steps=table)
    if width > 1:
        def signal_when_all_are_stuck() -> None:
            ready.wait(10)
            os.kill(os.getpid(), first)

        threading.Thread(target=signal_when_all_are_stuck, daemon=True).start()
    return runner, staged, release


@pytest.mark.parametrize("width", [1, 3], ids=["in-order", "side-by-side"])
@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name)
def test_a_stopped_run_removes_every_staging_folder_despite_a_second_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, first: int
) -> None:
    if signal.getsignal(first) is signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(first).name} is ignored here (nohup?), and so in a task too")
    settings = make_settings(tmp_path)
    runner, staged, release = interrupted_runner(settings, width, monkeypatch, first)
    try:
        with pytest.raises(KeyboardInterrupt) as caught, running.stop_signals():
            runner.run(("repair",), width=width)
    finally:
        release.set()  # the stuck workers may end now
    if first != signal.SIGINT:
        assert isinstance(caught.value, Stopped) and caught.value.exit_code == 128 + first
    assert len(staged) == width
    assert not [p for p in settings.work_dir.rglob("*") if p.name.endswith(".partial")]
    assert all(job.work.state() is State.BUILT for job in runner.plan.jobs)  # the previous state kept


def test_stop_signals_leave_an_ignored_sighup_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with running.stop_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_the_run_uses_the_index_client_it_was_planned_with(
    tmp_path: Path, index_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One client per run: CLEAN_CACHE clears the cache once, when the plan's client is made,
    not again when a job takes its wheel from the index (the plan's pages stay cached)."""
    from wheeltasks import index as index_mod
    from wheeltasks import tasks

    cleared: list[Path] = []
    clear = index_mod.clear_cache

    def clear_and_count(settings: Settings) -> list[Path]:
        cleared.extend(clear(settings))
        return cleared

    monkeypatch.setattr(index_mod, "clear_cache", clear_and_count)
    settings = make_settings(tmp_path, env={"PYPI_INDEX": index_server, "CLEAN_CACHE": "1", "ARCHES": "amd64"})
    client = index_mod.IndexClient(settings)
    plan = tasks.plan_for(settings, "wtplain", client, build=False, route=False)
    assert cleared == [] and any(settings.cache_dir.iterdir())  # nothing to clear yet; then the plan's pages
    seen: list[object] = []
    table = {**steps.BY_NAME, steps.BUILD.name: dataclasses.replace(
        steps.BUILD, run=lambda context, job, result: seen.append(context.index))}
    scheduler.Runner(settings, plan, steps=table, index=client).run(("build",), width=1)
    assert seen == [client] * len(plan.jobs) and cleared == []  # the plan's cache was not cleared again
