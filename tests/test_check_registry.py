"""check and update against a real registry and a real index, both on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from packaging.version import Version

from tests.fixtures_registry import RegistryServer
from tests.helpers import make_wheel
from wheeltasks.check import check
from wheeltasks.images import open_registry, push_wheels
from wheeltasks.job import make_job
from wheeltasks.settings import Kind, Settings
from wheeltasks.targets import get_arch

ROOT = Path(__file__).resolve().parent.parent


def env_for(tmp_path: Path, index: str, registry: str) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"),
        "WHEELTASKS_PROJECT_DIR": str(tmp_path),
        "PYPI_INDEX": index,
        "WHEELS_REGISTRY": registry,
        "DEFAULT_MODULES": "wtplain WT_Fix.Name",
        "CORE_MODULES": "",
        "PYTHON_VERSIONS": "3.11 3.12",
    }


def publish(settings: Settings, module: str, version: str, kind: Kind, python: str = "3.12") -> None:
    job = make_job(settings, module=module, version=Version(version), python=python, arch=get_arch("amd64"), kind=kind)
    folder = settings.work_dir / "fake" / job.tag
    wheel = make_wheel(folder, module, version, "musllinux_1_2_x86_64")
    push_wheels(open_registry(settings), job, [wheel], index_url=settings.pypi_index)


def test_outdated_exactly_when_the_index_is_newer(
    tmp_path: Path, index_server: str, registry_plain: RegistryServer
) -> None:
    settings = Settings.load({}, env_for(tmp_path, index_server, f"{registry_plain.host}/check"), {})
    # Index: wtplain 1.5.0 (2.0.0b1 is a pre-release), wt-fix-name 0.3.0.
    publish(settings, "wtplain", "1.0.0", Kind.SHARED)
    publish(settings, "wtplain", "1.5.0", Kind.NO_SHARED)  # the newest in either repository counts
    publish(settings, "wt-fix-name", "0.2.0", Kind.SHARED, python="3.11")
    rows = {row.module: row for row in check(settings)}
    assert (rows["wtplain"].registry_version, rows["wtplain"].outdated) == (Version("1.5.0"), False)
    assert (rows["wt-fix-name"].registry_version, rows["wt-fix-name"].outdated) == (Version("0.2.0"), True)
    # Once the newest is published it is up to date.
    publish(settings, "wt-fix-name", "0.3.0", Kind.SHARED)
    rows = {row.module: row for row in check(settings)}
    assert rows["wt-fix-name"].outdated is False
    # A module never published is out of date.
    settings = Settings.load({}, env_for(tmp_path, index_server, f"{registry_plain.host}/empty"), {})
    assert all(row.outdated and row.registry_version is None for row in check(settings))


def test_update_plans_only_the_outdated_for_every_default_python(
    tmp_path: Path, index_server: str, registry_plain: RegistryServer
) -> None:
    env = env_for(tmp_path, index_server, f"{registry_plain.host}/update")
    publish(Settings.load({}, env, {}), "wtplain", "1.5.0", Kind.SHARED)
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(ROOT), "update", "--noop", "--arches=amd64"],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    planned = [words[0] for words in map(str.split, done.stdout.splitlines()) if words and "-py3." in words[0]]
    # Both kinds, as `all` builds them.
    assert planned == ["wt-fix-name0.3.0-py3.11-amd64"] * 2 + ["wt-fix-name0.3.0-py3.12-amd64"] * 2
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("wt-fix-name0.3.0-py3.")] == [
        "shared", "no-shared", "shared", "no-shared"]
    assert "NOOP: would run pull-existing -> build -> repair -> import-check -> export" in done.stdout
    # The index has wt-fix-name 0.3.0's pure wheel: each job takes it (by its sha256), no build.
    taken = [line for line in done.stdout.splitlines() if line.startswith("# wt-fix-name0.3.0-py3.")]
    assert len(taken) == 4 and all("wt_fix_name-0.3.0-py3-none-any.whl (sha256 " in line for line in taken), taken
    assert "buildx build" not in done.stdout


def test_update_target_parses_back_to_the_module_and_version() -> None:
    from wheeltasks.check import OUTDATED, CheckRow
    from wheeltasks.targets import PYALL, SSL, parse_target

    for module, ssl, version in [("bcrypt", None, "4"), ("ed25519", None, "1.5"), ("cryptography", SSL.LIBRESSL, "45.0.1")]:
        row = CheckRow(module, ssl, Version(version), None, None, OUTDATED)
        target = parse_target(row.update_target)
        assert (target.module, target.ssl, target.version, target.python) == (module, ssl, Version(version), PYALL)
