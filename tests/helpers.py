"""Helpers shared by test modules: settings for a throw-away project, and small wheels."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

from wheeltasks.settings import Settings

INDEX = "http://127.0.0.1:9/simple/"


def make_settings(tmp_path: Path, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    base = {
        "HOME": str(tmp_path / "home"),
        "WHEELTASKS_PROJECT_DIR": str(tmp_path),
        "PYPI_INDEX": INDEX,
        "BUILDER_IMAGE": "127.0.0.1:5000/builder:py{python}",
    }
    return Settings.load(config={}, env={**base, **(env or {})}, flags=flags)


def fake_wheel(folder: Path, name: str, payload: dict[str, bytes] | None = None) -> Path:
    """A wheel file with the given name (tags are all the checks read) and members."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    dist = "-".join(name.split("-")[:2])
    members = dict(payload or {"pkg/__init__.py": b""})
    members[f"{dist}.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n"
    members[f"{dist}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
    # auditwheel walks the files RECORD lists.
    record = "".join(f"{member},,\n" for member in members) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return path


WHEEL_TIME = (2024, 5, 6, 7, 8, 10)  # zip times have 2-second resolution


def make_wheel(folder: Path, name: str, version: str, platform: str, payload: str = "") -> Path:
    """A small but well-formed wheel (fixed zip times, so the same inputs give the same bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-cp312-cp312-{platform}.whl"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n{payload}",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp312-cp312-{platform}\n",
        f"{dist_info}/RECORD": "",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(zipfile.ZipInfo(member, WHEEL_TIME), text)
    return path


# ---- end-to-end runs of the command line ---------------------------------------------------

CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
# The settings a test decides for itself: never taken from the environment of the run.
_OWN_SETTINGS = ("DO_", "NO_", "WHEELS_", "PYPI_", "REGISTRY_", "JOBS", "BUILDERS", "CROSS", "BUILD_", "PIP_INDEX")


def e2e_env(root: Path, builder_template: str, **settings: str) -> dict[str, str]:
    """The environment of a fresh project folder on the fixture builders (Python 3.11)."""
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    env.update(WHEELTASKS_PROJECT_DIR=str(root), WHEELTASKS_CACHE_DIR=str(root / "cache"),
               BUILDER_IMAGE=builder_template, PYTHON_VERSIONS="3.11")
    if Path(CA_FILE).is_file():
        env["CA_BUNDLE"] = CA_FILE
    env.update(settings)
    return env


def wheeltasks_cli(env: dict[str, str], *args: str, timeout: int = 3000) -> subprocess.CompletedProcess[str]:
    """``wheeltasks ARGS`` in the project of ``env``; its stderr's tail is echoed for the test log."""
    done = subprocess.run([sys.executable, "-m", "wheeltasks", *args], cwd=env["WHEELTASKS_PROJECT_DIR"], env=env,
                          capture_output=True, text=True, timeout=timeout)
    sys.stderr.write(done.stderr[-5000:])
    return done


# ---- stopping a running command -----------------------------------------------------------

# Only to end a command that never stops: a stop slower than its promise is reported with
# its time (and fails on the promise), not cut short as a timeout of the test's own.
STOP_LIMIT = 60.0


def stop_and_time(
    process: subprocess.Popen[str], signum: int, *, group: bool = False, limit: float = STOP_LIMIT
) -> tuple[float, str, str]:
    """Send ``signum`` to a command (to its process group with ``group``, as a terminal's
    Ctrl-C does) and return the seconds from the signal to the command's exit, with its stdout
    and stderr. The pipes are read on threads meanwhile, so neither a full pipe nor one that
    something else holds open counts against the time: what the promise bounds is the exit."""
    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def drain(name: str, stream: Any) -> None:
        if stream is not None:
            chunks[name].append(stream.read())

    readers = [threading.Thread(target=drain, args=(name, stream), daemon=True)
               for name, stream in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    sent = time.monotonic()
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    try:
        process.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.wait()
    took = time.monotonic() - sent
    for reader in readers:
        reader.join(limit)
    return took, "".join(chunks["out"]), "".join(chunks["err"])
