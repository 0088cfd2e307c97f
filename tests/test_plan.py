"""resolve: targets -> ordered Jobs, against a real index server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests.fixtures_index import StaticIndex
from wheeltasks.errors import WheelTasksError
from wheeltasks.index import IndexClient
from wheeltasks.plan import Plan, resolve
from wheeltasks.settings import Kind, Settings

MakeSettings = Callable[..., Settings]


@pytest.fixture
def plan(static_index: StaticIndex, index_settings: MakeSettings, tmp_path: Path) -> Callable[..., Plan]:
    """``plan("targets", **flags)`` resolved on the static fixture index."""

    def make(*targets: str, **flags: Any) -> Plan:
        flags.setdefault("python_versions", "3.11,3.12")
        flags.setdefault("project_dir", str(tmp_path))
        settings = index_settings(static_index.url(), **flags)
        return resolve(settings, list(targets), IndexClient(settings))

    return make


def test_full_target_is_one_job(plan: Callable[..., Plan], tmp_path: Path) -> None:
    (job,) = plan("wtfix-py3.11-amd64", wheels_registry="127.0.0.1:5000/me").jobs
    assert job.to_json() == {
        "target": "wtfix1.1.0-py3.11-amd64",
        "module": "wtfix",
        "ssl": None,
        "version": "1.1.0",
        "python": "3.11",
        "arch": "amd64",
        "platform": "linux/amd64",
        "kind": "shared",
        "mode": "native",
        "node": None,  # planned without build engines
        # planned without a registry to ask: the builders by BUILDER_IMAGE's tag
        "builder": "python:3.11-alpine3.22",
        "build_platform": "linux/amd64",
        "build_builder": "python:3.11-alpine3.22",
        # the only job of its module: built (the index lists no sha256 to take its wheel by)
        "source": "build",
        "reuse_of": None,
        "index_file": None,
        "source_why": None,
        "tag": "wtfix1.1.0-py3.11",
        "repository": "127.0.0.1:5000/me/python-musl-wheels",
        "image": "127.0.0.1:5000/me/python-musl-wheels:wtfix1.1.0-py3.11",
        "recipe": None,
        "apk": [],
        "depends": [],
        "work_dir": str(tmp_path / ".wheeltasks" / "shared" / "wtfix1.1.0-py3.11" / "amd64"),
    }


def test_the_plan_pins_each_jobs_builders(static_index: StaticIndex, index_settings: MakeSettings, tmp_path: Path) -> None:
    """Each job names its platform's builder and its build platform's as the plan pinned them
    (by digest, builders.pin_all): the steps look nothing up."""
    settings = index_settings(static_index.url(), python_versions="3.11,3.12", project_dir=str(tmp_path))
    asked: list[set[tuple[str, str]]] = []

    def pin(wanted: Any) -> dict[Any, str]:
        pairs = set(wanted)
        asked.append({(python, arch.name) for python, arch in pairs})
        return {(python, arch): f"builder@sha256:{python}-{arch.name}" for python, arch in pairs}

    jobs = resolve(settings, ["wtfix-pyall-arm64", "wtfix-py3.12-amd64"], IndexClient(settings), pin=pin).jobs
    assert asked == [{("3.11", "arm64v8"), ("3.12", "arm64v8"), ("3.11", "amd64"), ("3.12", "amd64")}]  # once
    arm = next(j for j in jobs if j.arch.name == "arm64v8" and j.python == "3.12")
    assert (arm.builder, arm.build_builder) == ("builder@sha256:3.12-arm64v8", "builder@sha256:3.12-amd64")
    assert arm.build_arch is not None and arm.build_arch.name == "amd64"
    assert arm.to_json()["builder"] == "builder@sha256:3.12-arm64v8"


def test_defaults_newest_python_every_arch(plan: Callable[..., Plan]) -> None:
    jobs = plan("wtfix").jobs
    assert [j.arch.name for j in jobs] == ["amd64", "arm64v8", "armv7", "armv6", "i386", "ppc64le", "s390x", "riscv64"]
    # Newest default Python is 3.12; the newest version admitting it is 1.2.0.
    assert {(j.python, j.version) for j in jobs} == {("3.12", Version("1.2.0"))}


def test_pyall_picks_a_version_per_python(plan: Callable[..., Plan]) -> None:
    jobs = plan("wtfix-pyall-arm64", python_versions="3.13 3.11 3.12").jobs
    assert [(j.python, str(j.version), j.platform) for j in jobs] == [
        ("3.11", "1.1.0", "linux/arm64/v8"),
        ("3.12", "1.2.0", "linux/arm64/v8"),
        ("3.13", "1.4.0", "linux/arm64/v8"),
    ]


def test_pinned_version_must_be_on_the_index(plan: Callable[..., Plan]) -> None:
    assert str(plan("wtfix1.0.0-py3.12-armv7").jobs[0].version) == "1.0.0"
    with pytest.raises(WheelTasksError, match=r"9\.9\.9.*not on"):
        plan("wtfix9.9.9-amd64")


def test_unknown_module_is_a_clear_error(plan: Callable[..., Plan]) -> None:
    with pytest.raises(WheelTasksError, match="not found"):
        plan("no-such-module-here-amd64")


def test_build_both_gives_two_kinds_in_two_repositories(plan: Callable[..., Plan]) -> None:
    jobs = plan("wtfix-py3.12-amd64", build_both=True).jobs
    assert [(j.kind, str(j.repository)) for j in jobs] == [
        (Kind.SHARED, "python-musl-wheels"),
        (Kind.NO_SHARED, "python-alpine-wheels"),
    ]
    assert plan("wtfix-py3.12-amd64", no_shared=True).jobs[0].kind is Kind.NO_SHARED


def test_libressl_excluded_on_s390x_with_a_note(plan: Callable[..., Plan]) -> None:
    result = plan("wtfix-libressl-py3.12", ssl_modules="wtfix")
    assert "s390x" not in {j.arch.name for j in result.jobs}
    assert len(result.jobs) == 7
    assert all(j.tag == "wtfix-libressl1.2.0-py3.12" and not j.exports for j in result.jobs)
    assert any("s390x" in note and "excluded" in note for note in result.notes)


def test_ssl_suffix_only_where_it_applies(plan: Callable[..., Plan]) -> None:
    with pytest.raises(WheelTasksError, match="wtfix does not link an SSL library"):
        plan("wtfix-openssl-amd64")


def test_several_targets_in_any_form(plan: Callable[..., Plan]) -> None:
    tags = ["wtbulk1_1.1.0-py3.12", "wtbulk2_1.2.0-py3.12", "wtbulk3_1.3.0-py3.12"]
    for form in (("wtbulk1-amd64 wtbulk2-amd64", "wtbulk3-amd64"), ("wtbulk1-amd64,wtbulk2-amd64,wtbulk3-amd64",)):
        assert [j.tag for j in plan(*form).jobs] == tags


def write_recipe(folder: Path, module: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.sh").write_text(text)


def test_dependencies_come_first(plan: Callable[..., Plan], tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    write_recipe(scripts, "wtbulk2", 'mod_depends="wtbulk3 wtfix"\nmod_build() { :; }\n')
    write_recipe(scripts, "WTBulk3", "mod_depends() {\n    echo wtbulk4\n}\n")
    jobs = plan("wtbulk2-py3.12-amd64", "wtbulk4-py3.12-amd64").jobs
    assert [j.module for j in jobs] == ["wtbulk4", "wtbulk3", "wtfix", "wtbulk2"]
    assert [d.tag for d in jobs[-1].depends] == ["wtbulk3_1.3.0-py3.12", "wtfix1.2.0-py3.12"]
    assert jobs[1].depends == (jobs[0],)  # the dependency's own job, not a copy or a name
    assert jobs[-1].recipe.path == scripts / "wtbulk2.sh"
    # Dependencies follow the dependent's Python and arch.
    assert {(j.python, j.arch.name) for j in jobs} == {("3.12", "amd64")}


def test_ssl_recipe_depends_are_planned(plan: Callable[..., Plan], tmp_path: Path) -> None:
    """The planner and the build read the same recipe: the one named with the SSL suffix first.

    Regression: with only scripts/<module>-libressl.sh naming a dependency, the planner
    (which looked the recipe up by module) planned none, while the build (by label) passed
    DEPENDS=<it> to pip, so the dependency was never built first or pulled.
    """
    scripts = tmp_path / "scripts"
    write_recipe(scripts, "wtfix-libressl", 'mod_depends="wtbulk3"\n')
    jobs = plan("wtfix-libressl-py3.12-amd64", ssl_modules="wtfix").jobs
    assert [j.label for j in jobs] == ["wtbulk3", "wtfix-libressl"]
    assert jobs[-1].depends == (jobs[0],)
    assert jobs[-1].recipe.path == scripts / "wtfix-libressl.sh"
    from wheeltasks.build import build_args

    settings = index_settings_for(tmp_path)
    assert build_args(settings, jobs[-1])["DEPENDS"] == "wtbulk3"
    assert build_args(settings, jobs[-1])["RECIPE"] == "wtfix-libressl.sh"
    # The OpenSSL variant has no recipe of its own and no dependency.
    (plain,) = plan("wtfix-openssl-py3.12-amd64", ssl_modules="wtfix").jobs
    assert plain.depends == () and plain.recipe.path is None


def index_settings_for(tmp_path: Path) -> Settings:
    return Settings.load({}, {"HOME": str(tmp_path), "PYPI_INDEX": "http://127.0.0.1:9/simple/"}, {"project_dir": str(tmp_path)})


@pytest.mark.parametrize("target", ["wtfix1!2.0-amd64", "wtfix-py3.99-amd64", "wtfix-py4.0"])
def test_untaggable_versions_and_unknown_pythons(plan: Callable[..., Plan], target: str) -> None:
    with pytest.raises(WheelTasksError, match=r"epoch|no CPython"):
        plan(target)


def test_dependency_cycle_is_a_clear_error(plan: Callable[..., Plan], tmp_path: Path) -> None:
    write_recipe(tmp_path / "scripts", "wtbulk5", 'mod_depends="wtbulk6"\n')
    write_recipe(tmp_path / "scripts", "wtbulk6", 'mod_depends="wtbulk5"\n')
    with pytest.raises(WheelTasksError, match="dependency cycle in recipes: wtbulk5 -> wtbulk6 -> wtbulk5"):
        plan("wtbulk5-amd64")


def test_all_and_core_are_the_default_sets_with_both_kinds(plan: Callable[..., Plan]) -> None:
    flags = {"modules": "wtbulk1 wtfix wtbulk2", "core_modules": "wtbulk2", "arches": "amd64", "ssl_modules": "wtfix"}
    core = plan("core", **flags).jobs
    assert {(j.module, j.python, j.kind) for j in core} == {
        ("wtbulk2", p, k) for p in ("3.11", "3.12") for k in Kind
    }
    everything = plan("all", **flags).jobs
    assert [j.module for j in everything][:4] == ["wtbulk2"] * 4  # core first
    assert {j.label for j in everything} == {"wtbulk1", "wtbulk2", "wtfix-openssl", "wtfix-libressl"}
    assert len(everything) == 4 * 2 * 2


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (("all", "wtfix"), "'all' must be given alone"),
        (("check",), "run `inv check`"),
        ((), "no target given"),
        (("wtfix-sparc",), None),
    ],
)
def test_special_and_bad_targets(plan: Callable[..., Plan], targets: tuple[str, ...], message: str | None) -> None:
    if message is None:  # an unknown trailing word is part of the name: the index says no
        with pytest.raises(WheelTasksError, match="not found"):
            plan(*targets)
        return
    with pytest.raises(WheelTasksError, match=message):
        plan(*targets)


def test_one_module_one_name(plan: Callable[..., Plan], tmp_path: Path) -> None:
    """An SSL module without a suffix is its OpenSSL build: one job, one tag, not two."""
    write_recipe(tmp_path / "scripts", "wtfix", 'mod_apk="${SSL}-dev"\n')
    jobs = plan("wtfix-py3.12-amd64", "wtfix-openssl-py3.12-amd64", ssl_modules="").jobs
    assert [(j.label, j.tag) for j in jobs] == [("wtfix-openssl", "wtfix-openssl1.2.0-py3.12")]
    assert jobs[0].recipe.apk == ("openssl-dev",)
    # A module whose dependency links SSL takes the suffix too.
    write_recipe(tmp_path / "scripts", "wtbulk1", 'mod_depends="wtfix-${SSL}"\n')
    jobs = plan("wtbulk1-libressl-py3.12-amd64", ssl_modules="").jobs
    assert [j.label for j in jobs] == ["wtfix-libressl", "wtbulk1-libressl"]
    assert jobs[0].recipe.apk == ("libressl-dev",)


@pytest.mark.parametrize(
    ("arch", "machine", "cross", "recipe_cross", "mode"),
    [
        ("amd64", "x86_64", "auto", True, "native"),
        ("i386", "x86_64", "auto", True, "native"),  # 32-bit x86 runs on x86_64 CPUs
        ("arm64", "x86_64", "auto", True, "cross"),
        ("armv7", "x86_64", "always", True, "cross"),
        ("arm64", "x86_64", "never", True, "emulated"),
        ("arm64", "x86_64", "auto", False, "emulated"),  # mod_cross=no
        ("armv7", "aarch64", "auto", True, "native"),
        ("amd64", "aarch64", "auto", True, "cross"),
    ],
)
def test_build_mode(tmp_path: Path, arch: str, machine: str, cross: str, recipe_cross: bool, mode: str) -> None:
    from wheeltasks.plan import build_mode
    from wheeltasks.recipes import Recipe
    from wheeltasks.targets import get_arch

    settings = Settings.load({}, {"HOME": str(tmp_path), "CROSS": cross}, {"project_dir": str(tmp_path)})
    assert build_mode(settings, get_arch(arch), Recipe(cross=recipe_cross), machine).value == mode


@pytest.mark.network
def test_all_plans_the_default_set_in_dependency_order(tmp_path: Path) -> None:
    """`all` on the public index: core first, dependencies before dependents, no job twice,
    each job with its recipe's declared packages."""
    settings = Settings.load({}, {"HOME": str(tmp_path), "WHEELTASKS_CACHE_DIR": str(tmp_path / "c")},
                             {"project_dir": str(tmp_path), "arches": "amd64 armv7"})
    plan = resolve(settings, ["all"], IndexClient(settings))
    keys = [j.key for j in plan.jobs]
    assert len(keys) == len(set(keys))
    assert {j.python for j in plan.jobs} == set(settings.python_versions)
    core = {"pycparser", "cffi", "toml"}
    first_other = next(n for n, j in enumerate(plan.jobs) if j.module not in core)
    assert all(j.module in core for j in plan.jobs[:first_other]) and core == {j.module for j in plan.jobs[:first_other]}
    position = {j.key: n for n, j in enumerate(plan.jobs)}
    for job in plan.jobs:
        assert all(position[dep.key] < position[job.key] for dep in job.depends), job.target
    labels = {j.label for j in plan.jobs}
    assert {"cryptography-openssl", "cryptography-libressl", "paramiko-libressl", "pyopenssl-openssl"} <= labels
    assert "cryptography" not in labels  # one module, one name
    apk = {j.label: j.recipe.apk for j in plan.jobs}
    assert apk["psutil"] == ("linux-headers",) and apk["cryptography-libressl"][0] == "libressl-dev"
    assert apk["lxml"] == ("libxml2-dev", "libxslt-dev") and apk["cffi"] == ("libffi-dev",)
    paramiko = next(j for j in plan.jobs if j.label == "paramiko-libressl")
    assert {d.label for d in paramiko.depends} == {"cryptography-libressl", "pynacl", "bcrypt"}
    modes = {(j.module, j.arch.name): j.mode.value for j in plan.jobs}
    assert modes[("psutil", "armv7")] == "cross" and modes[("bcrypt", "armv7")] == "emulated"
    assert modes[("psutil", "amd64")] == "native"


class _EveryVersionIs1:
    """The planner's VersionSource for chains of hundreds of made-up recipes: what is tested
    is the planner's walk of the chain, not an index that serves hundreds of projects."""

    def latest_many(self, projects: Any, python: str | None) -> dict[str, Version]:
        return dict.fromkeys(projects, Version("1.0"))

    def check_version(self, project: str, version: Version, python: str | None) -> None:
        return None

    def files(self, project: str) -> list[Any]:
        return []  # no wheels on it: every job builds


CHAIN = 1500  # recipes: far deeper than Python's recursion limit (1000 frames) allows recursing


def chain_of_recipes(folder: Path, length: int, back_to: int | None = None) -> None:
    for n in range(length):
        depends = f"wtchain{n + 1}" if n + 1 < length else (f"wtchain{back_to}" if back_to is not None else "")
        write_recipe(folder, f"wtchain{n}", f'mod_depends="{depends}"\n' if depends else "")


def test_a_dependency_chain_deeper_than_the_recursion_limit_plans(tmp_path: Path) -> None:
    chain_of_recipes(tmp_path / "scripts", CHAIN)
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path), "python_versions": "3.12"})
    plan = resolve(settings, ["wtchain0-amd64"], _EveryVersionIs1())
    assert [j.module for j in plan.jobs] == [f"wtchain{n}" for n in reversed(range(CHAIN))]  # dependencies first
    assert plan.jobs[-1].depends == (plan.jobs[-2],)


def test_a_cycle_at_the_end_of_a_deep_chain_is_refused_as_before(tmp_path: Path) -> None:
    chain_of_recipes(tmp_path / "scripts", CHAIN, back_to=CHAIN - 3)
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path), "python_versions": "3.12"})
    with pytest.raises(WheelTasksError) as caught:
        resolve(settings, ["wtchain0-amd64"], _EveryVersionIs1())
    message = str(caught.value)
    tail = f"wtchain{CHAIN - 3} -> wtchain{CHAIN - 2} -> wtchain{CHAIN - 1} -> wtchain{CHAIN - 3}"
    assert message.startswith("dependency cycle in recipes: wtchain0 -> wtchain1 -> ") and message.endswith(tail)
