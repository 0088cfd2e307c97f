"""The promises of README "Guarantees" that need whole runs: secrets never reach disk or
output, and Ctrl-C stops a build, an export or a push within 2 s with nothing half-written.

Everything runs through the real command line against the real engine, the fixture
index (pypiserver) and Debian's docker-registry on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures_registry import PASSWORD, USERNAME, RegistryServer
from tests.helpers import e2e_env, stop_and_time, wheeltasks_cli

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
INDEX_SECRET = "ix-Pw-7731-never-shown"


def secret_forms(secret: str) -> list[bytes]:
    """The secret as it could leak: plain, in a Basic header, URL-quoted."""
    return [secret.encode(), base64.b64encode(f"{USERNAME}:{secret}".encode()),
            base64.b64encode(f"wtuser:{secret}".encode())]


def project_env(root: Path, builder_template: str, index: str, registry: str, recipes: Path | None) -> dict[str, str]:
    env = e2e_env(root, builder_template, HOME=str(root / "home"), PYPI_INDEX=index, WHEELS_REGISTRY=registry,
                  ARCHES="amd64")
    (root / "tasks.py").write_text("from wheeltasks import ns\n")
    if recipes is not None:
        (root / "scripts").mkdir(exist_ok=True)
        for recipe in recipes.glob("*.sh"):
            (root / "scripts" / recipe.name).write_text(recipe.read_text())
    return env


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return wheeltasks_cli(env, *args)


class ContainerWatch:
    """Records the environment and mounts of every container that runs meanwhile (the
    repair container lives for seconds; `docker inspect` of it afterwards is impossible)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for container in self.client.containers.list():
                    self.seen.setdefault(container.id, repr(container.attrs.get("Config", {}).get("Env")))
            except Exception:  # a container may vanish between list and inspect
                pass
            time.sleep(0.05)

    def __enter__(self) -> ContainerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def leaks_in_tree(folder: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if path.suffix == ".whl":
                with zipfile.ZipFile(path) as zf:
                    data += b"".join(zf.read(name) for name in zf.namelist())
            found += [f"{path}: {s[:6]!r}..." for s in secrets if s in data]
    return found


def test_secrets_reach_no_output_log_cache_folder_layer_or_history(
    tmp_path: Path,
    builder_template: str,
    index_server: str,
    registry_basic: RegistryServer,
    docker_client: Any,
) -> None:
    """A build and a push with index and registry credentials, and a failing build; then
    every output, log, cache file, work folder, image layer and `docker history` is searched."""
    index = index_server.replace("http://", f"http://wtuser:{INDEX_SECRET}@", 1)
    env = project_env(tmp_path / "p", builder_template, index, f"{registry_basic.host}/sec", FIXTURES / "recipes")
    env.update(REGISTRY_USERNAME=USERNAME, REGISTRY_PASSWORD=PASSWORD, BUILD_NO_CACHE="1")
    secrets = secret_forms(INDEX_SECRET) + secret_forms(PASSWORD)
    outputs = []
    with ContainerWatch(docker_client) as watch:
        ok = run_cli(env, "build", "wtzlib-amd64", "--push")
        outputs.append(ok.stdout + ok.stderr)
        assert ok.returncode == 0, ok.stderr[-3000:]
        failing = project_env(tmp_path / "f", builder_template, index, f"{registry_basic.host}/sec",
                              FIXTURES / "recipes-failing")
        failing.update(REGISTRY_USERNAME=USERNAME, REGISTRY_PASSWORD=PASSWORD, BUILD_NO_CACHE="1", NO_PULL_WHEELS="1")
        bad = run_cli(failing, "build", "wtzlib-amd64")
        outputs.append(bad.stdout + bad.stderr)
        assert bad.returncode == 3, bad.stderr[-3000:]
        assert "WTMARKER recipe failing on purpose" in bad.stderr
    assert watch.seen, "the repair container was not seen"
    # Output of every run, and every container's environment (the repair's included).
    text = "\n".join(outputs + list(watch.seen.values())).encode()
    assert [s for s in secrets if s in text] == []
    # Every file the runs wrote: work folders, logs, wheels, the index cache.
    assert leaks_in_tree(tmp_path, secrets) == []
    # The published image: its layer and config, and docker history of it.
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    login = subprocess.run(["docker", "--config", str(docker_config), "login", "-u", USERNAME, "--password-stdin",
                            registry_basic.host], input=PASSWORD, capture_output=True, text=True, timeout=60)
    assert login.returncode == 0, login.stderr
    image = f"{registry_basic.host}/sec/python-musl-wheels:wtzlib1.0.0-py3.11"
    pulled = subprocess.run(["docker", "--config", str(docker_config), "pull", "--platform", "linux/amd64", image],
                            capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    history = subprocess.run(["docker", "history", "--no-trunc", image], capture_output=True, text=True, check=True)
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True, timeout=120).stdout
    docker_client.images.remove(image, force=True)
    assert [s for s in secrets if s in history.stdout.encode() or s in saved] == []


# ---- Ctrl-C -------------------------------------------------------------------------------


def interrupt_when(
    process: subprocess.Popen[str], ready: Any, limit: float = 600.0, signum: int = signal.SIGINT
) -> tuple[float, str]:
    """Send SIGINT to the process group (as a terminal's Ctrl-C does) once ``ready()``, or
    another signal to the process alone (as ``kill`` or a CI runner's timeout does);
    return how long the process took to exit after the signal (the event the promise
    bounds: not the wait for ``ready``, nor the reading of its pipes), and its stderr."""
    started = time.monotonic()
    while not ready():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() - started < limit, "never reached the point to interrupt"
        time.sleep(0.05)
    try:
        took, _, err = stop_and_time(process, signum, group=signum == signal.SIGINT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return took, err


def _as_from_a_terminal() -> None:
    # A shell starts a terminal's foreground command with Ctrl-C's default action; a test run
    # started in the background (`.ci/run &` from a script) passes SIGINT on ignored, and
    # wheeltasks rightly keeps an ignored signal ignored. The promise is about a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "wheeltasks", *args], cwd=env["WHEELTASKS_PROJECT_DIR"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_as_from_a_terminal)


def assert_interrupted(took: float, err: str, process: subprocess.Popen[str], code: int = 130,
                       line: str = "wheeltasks: interrupted") -> None:
    assert process.returncode == code, err[-3000:]
    assert took < 2.0, f"took {took:.1f} s to stop"
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == line


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".part", ".tmp"))]


def stop_a_build(tmp_path: Path, builder_template: str, index_server: str, registry: RegistryServer, jobs: str,
                 signum: int, code: int, line: str) -> None:
    env = project_env(tmp_path / "p", builder_template, index_server, f"{registry.host}/int", None)
    # Builds that are surely still running when interrupted: a recipe that sleeps. It reads
    # $KIND, so each kind builds (else the no-shared job would wait for the shared one's build).
    (tmp_path / "p" / "scripts").mkdir()
    (tmp_path / "p" / "scripts" / "wtzlib.sh").write_text('mod_build() { echo "WTSLEEP $KIND"; sleep 300; }\n')
    env.update(BUILD_NO_CACHE="1", NO_PULL_WHEELS="1", JOBS=jobs, BUILD_BOTH="1")
    work = tmp_path / "p" / ".wheeltasks"
    logs = [work / kind / "wtzlib1.0.0-py3.11" / "amd64" / "build.log" for kind in ("shared", "no-shared")]
    wanted = logs[: int(jobs)]  # with two at once, both are building when interrupted
    process = start_cli(env, "build", "wtzlib-amd64")
    took, err = interrupt_when(process, lambda: all(log.is_file() and "WTSLEEP" in log.read_text() for log in wanted),
                               signum=signum)
    assert_interrupted(took, err, process, code, line)
    assert not list(work.rglob("built")) and partials(tmp_path / "p") == []
    assert not (tmp_path / "p" / "wheels").exists()
    # No buildx client is left behind.
    left = subprocess.run(["pgrep", "-f", f"buildx build.*{work}"], capture_output=True, text=True)
    assert left.stdout == ""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_during_a_build(
    tmp_path: Path, builder_template: str, index_server: str, registry_plain: RegistryServer, jobs: str
) -> None:
    stop_a_build(tmp_path, builder_template, index_server, registry_plain, jobs, signal.SIGINT, 130,
                 "wheeltasks: interrupted")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigterm_during_a_build(
    tmp_path: Path, builder_template: str, index_server: str, registry_plain: RegistryServer, jobs: str
) -> None:
    """`kill` (or a CI job's timeout) stops builds as Ctrl-C does: to the process alone, whose
    builds run in sessions of their own, so it is the process that must stop them."""
    stop_a_build(tmp_path, builder_template, index_server, registry_plain, jobs, signal.SIGTERM, 143,
                 "wheeltasks: stopped by SIGTERM")


def big_wheel(folder: Path, name: str, megabytes: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("wtplain-1.5.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: wtplain\nVersion: 1.5.0\n")
        zf.writestr("wtplain/blob.bin", os.urandom(1024 * 1024) * megabytes)
    return path


@pytest.fixture
def prepared(tmp_path: Path, index_server: str, registry_plain: RegistryServer) -> Iterator[tuple[dict[str, str], Path]]:
    """A project whose job already holds a large repaired wheel (so export and push take a while)."""
    env = project_env(tmp_path / "p", "unused:{python}", index_server, f"{registry_plain.host}/int", None)
    env.update(PYTHON_VERSIONS="3.12", NO_PULL_WHEELS="1")
    work = tmp_path / "p" / ".wheeltasks" / "shared" / "wtplain1.5.0-py3.12" / "amd64"
    wheel = big_wheel(work / "repaired", "wtplain-1.5.0-py3-none-any.whl", 400)
    yield env, wheel


def test_ctrl_c_during_an_export(prepared: tuple[dict[str, str], Path], tmp_path: Path) -> None:
    env, wheel = prepared
    dest = tmp_path / "p" / "wheels" / "amd64"
    process = start_cli(env, "export", "wtplain-amd64")
    took, err = interrupt_when(process, lambda: dest.is_dir() and any(dest.iterdir()))
    assert_interrupted(took, err, process)
    assert list(dest.iterdir()) == []  # neither the wheel nor a part of it
    assert wheel.is_file()


def test_ctrl_c_during_a_push(prepared: tuple[dict[str, str], Path], registry_plain: RegistryServer) -> None:
    env, _ = prepared
    uploads = registry_plain.storage / "docker" / "registry" / "v2" / "repositories" / "int" / "python-musl-wheels" / "_uploads"
    process = start_cli(env, "push", "wtplain-amd64")
    took, err = interrupt_when(process, lambda: uploads.is_dir() and any(uploads.iterdir()))
    assert_interrupted(took, err, process)
    tag = f"http://{registry_plain.host}/v2/int/python-musl-wheels/manifests/wtplain1.5.0-py3.12"
    accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
    assert requests.head(tag, headers=accept, timeout=10).status_code == 404  # nothing half-published
    again = run_cli(env, "push", "wtplain-amd64")
    assert again.returncode == 0, again.stderr[-3000:]
    assert requests.head(tag, headers=accept, timeout=10).status_code == 200
