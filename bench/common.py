"""Shared by the build benchmarks: the fixture builder images, a project folder, and a
timed run of the real command line (its JSON report gives each job's step times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REGISTRY = os.environ.get("FIXTURE_REGISTRY", "127.0.0.1:5000")
BUILDER = f"{REGISTRY}/wheeltasks-fixtures/builder:py{{python}}"
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def build_images(script: Path, what: str) -> None:
    """Run a script that builds (or finds cached) images in the local registry; exit with
    the tail of its errors when it fails."""
    done = subprocess.run(["bash", str(script)], env={**os.environ, "FIXTURE_REGISTRY": REGISTRY},
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{what} failed (run bash .ci/services.sh first):\n{done.stderr[-3000:]}")


def builder_images() -> str:
    """Build (or find cached) the fixture builder images; the BUILDER_IMAGE template."""
    build_images(ROOT / "tests" / "fixtures" / "builders" / "build.sh", "fixture builders")
    return BUILDER


def project(folder: Path, **settings: str) -> dict[str, str]:
    """The environment of a fresh project folder (no pulls, no pushes, the fixture builders)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DO_", "NO_", "WHEELS_", "JOBS", "BUILDERS"))}
    env.update(WHEELTASKS_PROJECT_DIR=str(folder), WHEELTASKS_CACHE_DIR=str(folder / "cache"),
               BUILDER_IMAGE=BUILDER, PYTHON_VERSIONS="3.11", NO_PULL_WHEELS="1")
    env.update(settings)  # a benchmark's own settings replace these defaults
    if Path(CA_FILE).is_file():
        env.setdefault("CA_BUNDLE", CA_FILE)
    return env


@dataclass
class Run:
    seconds: float
    report: dict[str, Any]

    def step(self, name: str) -> float:
        """The time of one step, summed over the run's jobs."""
        return sum(job["step_seconds"].get(name, 0.0) for job in self.report["jobs"])


def run(env: dict[str, str], *args: str) -> Run:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "wheeltasks", *args, "--json"], cwd=env["WHEELTASKS_PROJECT_DIR"],
                          env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"wheeltasks {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return Run(seconds, json.loads(done.stdout))


def save(name: str, lines: list[str], data: dict[str, Any]) -> None:
    """Print the table and keep it (and the numbers) in bench/results/."""
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (RESULTS / f"{name}.txt").write_text(f"{stamp}\n{text}\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"date": stamp, **data}, indent=2) + "\n")
