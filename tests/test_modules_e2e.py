"""The default modules, built for real from the public index on the fixture builders, and a
run that finishes when one of its jobs fails."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import parse_wheel_filename

from tests.fixtures_registry import RegistryServer
from tests.helpers import e2e_env, wheeltasks_cli

pytestmark = pytest.mark.docker

# The default modules this project's CI builds (README's module table says why not the others).
CI_MODULES = {
    # module: import name
    "pycparser": "pycparser",
    "toml": "toml",
    "cffi": "cffi",
    "psutil": "psutil",
    "PyNaCl": "nacl",
    "python-hosts": "python_hosts",
    "setuptools-rust": "setuptools_rust",
    "auditwheel": "auditwheel",
}
COMPILED = {"cffi", "psutil", "pynacl"}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return wheeltasks_cli(env, *args)


def project_env(root: Path, builder_template: str, **more: str) -> dict[str, str]:
    return e2e_env(root, builder_template, ARCHES="amd64", **more)


@pytest.mark.network
def test_the_ci_modules_build_repair_install_together_and_import(
    tmp_path: Path, builder_template: str, docker_client: Any
) -> None:
    # NO_BINARY: the modules' own C code is compiled here (their dependencies may be wheels).
    env = project_env(tmp_path / "p", builder_template, NO_BINARY="1")
    done = cli(env, "build", *CI_MODULES, "--json")
    assert done.returncode == 0, done.stderr[-5000:]
    report = json.loads(done.stdout)
    assert {job["result"] for job in report["jobs"]} == {"built"}
    wheels = sorted((tmp_path / "p" / "wheels" / "amd64").glob("*.whl"))
    names = {str(parse_wheel_filename(w.name)[0]): w for w in wheels}
    for module in ("pycparser", "toml", "cffi", "psutil", "pynacl", "python-hosts", "setuptools-rust", "auditwheel"):
        assert module in names, sorted(names)
    for module in COMPILED:
        platforms = {tag.platform for tag in parse_wheel_filename(names[module].name)[3]}
        assert platforms == {"musllinux_1_2_x86_64"}, names[module].name
    # PyNaCl was compiled here, with its bundled libsodium inside its extension (the builder
    # has no libsodium to link against, and the wheel bundles no library).
    # The build ran with NO_BINARY (BuildKit keys its cache by that argument, so a cached step
    # was compiled too; only a step that ran shows pip's own command line).
    pynacl_log = Path(next(j["log"] for j in report["jobs"] if j["module"] == "pynacl")).read_text()
    assert "--build-arg NO_BINARY=1 " in pynacl_log.splitlines()[0]
    assert "--no-binary pynacl" in pynacl_log or " CACHED" in pynacl_log
    with zipfile.ZipFile(names["pynacl"]) as archive:
        members = archive.namelist()
        sodium = next(m for m in members if m.startswith("nacl/_sodium") and m.endswith(".so"))
        assert b"sodium_init" in archive.read(sodium)
    assert not any(".libs/libsodium" in m for m in members)
    imports = "; ".join(f"import {name}" for name in CI_MODULES.values())
    script = (
        "set -e; python3 -m venv /tmp/v; /tmp/v/bin/pip install -q --no-index --find-links /wheels "
        + " ".join(CI_MODULES)
        + f"; /tmp/v/bin/python -c '{imports}; import nacl.secret; box = nacl.secret.SecretBox(bytes(32)); "
        "print(\"IMPORTED\", psutil.cpu_count() > 0, box.decrypt(box.encrypt(b\"hi\")) == b\"hi\")'"
    )
    image = builder_template.format(python="3.11")
    image_id = docker_client.images.pull(image, platform="linux/amd64").id  # this platform's, by ID
    out = docker_client.containers.run(
        image_id, ["sh", "-c", script], network_mode="host", remove=True,
        volumes={str(wheels[0].parent): {"bind": "/wheels", "mode": "ro"}},
        environment={"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert b"IMPORTED True True" in out


def test_a_failed_job_does_not_stop_the_run(
    tmp_path: Path, builder_template: str, index_server: str, registry_plain: RegistryServer
) -> None:
    """wtzlib's recipe fails: wtdep (which depends on it) is skipped, wtplain (whose wheel
    the index has) is taken from the index, the run ends with the table and exit 3."""
    env = project_env(tmp_path / "p", builder_template, PYPI_INDEX=index_server, NO_PULL_WHEELS="1")
    scripts = tmp_path / "p" / "scripts"
    scripts.mkdir()
    (scripts / "wtzlib.sh").write_text('mod_build() { echo "WTMARKER failing on purpose" >&2; exit 1; }\n')
    (scripts / "wtdep.sh").write_text('mod_depends="wtzlib"\n')
    done = cli(env, "build", "wtzlib", "wtdep", "wtplain", "--json")
    assert done.returncode == 3, done.stderr[-3000:]
    results = {job["module"]: job["result"] for job in json.loads(done.stdout)["jobs"]}
    assert results == {"wtzlib": "failed", "wtdep": "dependency failed", "wtplain": "from the index"}
    table = [line for line in done.stderr.splitlines() if line.startswith(("job ", "wtzlib", "wtdep", "wtplain"))]
    assert table[0].split() == ["job", "kind", "result", "built", "as", "time", "log"]
    assert any("dependency failed" in line for line in table)
    assert done.stderr.strip().splitlines()[-1].startswith("wheeltasks: 2 of 3 job(s) did not finish")
    assert (tmp_path / "p" / "wheels" / "amd64").is_dir()
    assert [w.name.split("-")[0] for w in (tmp_path / "p" / "wheels" / "amd64").glob("*.whl")] == ["wtplain"]
