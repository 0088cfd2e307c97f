"""Benchmark: how long planning takes, as a user runs it (a new process each time).

    python bench/bench_plan.py [--rounds 5]

Against a floor measured in the same run (a Python that only imports invoke, which every
wheeltasks command needs): `wheeltasks --help`; `wheeltasks resolve all --json` (1,490 jobs
on the public index, warm: its pages cached by a first, untimed run); `wheeltasks check`
for the default modules against the local registry (127.0.0.1:5000, an empty namespace:
every module out of date), warm. Round by round, each command once a round: the median
wall time of each, its peak memory, and the median of its ratios to its round's floor.
Writes bench/results/plan.{txt,json}. Needs `bash .ci/services.sh` (buildx, the registry)
and the public index.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import CA_FILE, REGISTRY, save

TARGETS = {"resolve all": 1.0, "check": 0.5, "--help": 0.3}  # seconds, warm (issue 19)


def measure(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one run of the command."""
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *command], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode not in (0, 1):  # check exits 1 when something is out of date
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, int(done.stderr.strip().splitlines()[-1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wheeltasks-bench-plan-"))
    # PYTHONDONTWRITEBYTECODE (set on these machines) would compile every module again in each
    # run: a user's Python keeps the compiled modules (pip writes them at install; Python
    # beside the sources of an editable install), so the first, untimed runs write them.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DO_", "NO_", "WHEELS_", "PYPI_")) and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(WHEELTASKS_PROJECT_DIR=str(folder), WHEELTASKS_CACHE_DIR=str(folder / "cache"),
               WHEELS_REGISTRY=f"{REGISTRY}/bench-plan-{int(time.time())}")
    if Path(CA_FILE).is_file():
        env.setdefault("CA_BUNDLE", CA_FILE)
    python = [sys.executable]
    commands = {
        "floor (import invoke)": [*python, "-c", "import invoke.program"],
        "--help": [*python, "-m", "wheeltasks", "--help"],
        "resolve all": [*python, "-m", "wheeltasks", "resolve", "all", "--json"],
        "check": [*python, "-m", "wheeltasks", "check"],
    }
    for name in ("--help", "resolve all", "check"):  # warm the index cache, the builders' Pythons, the compiled modules
        measure(commands[name], env, folder)
    # Round by round, each command once in turn: this machine's speed drifts (a shared VM),
    # so each run is set against the floor of its own round, and the ratio is their median.
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            runs[name].append(measure(command, env, folder))
    floors = [s for s, _ in runs["floor (import invoke)"]]
    rows: dict[str, dict[str, Any]] = {}
    for name, measured in runs.items():
        rows[name] = {"seconds": round(statistics.median(s for s, _ in measured), 3),
                      "vs_floor": round(statistics.median(s / f for (s, _), f in zip(measured, floors, strict=True)), 2),
                      "peak_mib": max(m for _, m in measured)}
    lines = [f"median of {args.rounds} rounds (each command once a round), warm; "
             f"load average at the end {os.getloadavg()[0]:.2f}", "",
             f"{'command':<24} {'seconds':>8} {'peak MiB':>9} {'vs floor':>9} {'target':>7}"]
    for name, row in rows.items():
        target = TARGETS.get(name)
        lines.append(f"{name:<24} {row['seconds']:>8.3f} {row['peak_mib']:>9} {row['vs_floor']:>8.1f}x "
                     f"{f'{target:.1f} s' if target else '':>7}")
    save("plan", lines, {"rows": rows, "targets": TARGETS})


if __name__ == "__main__":
    main()
