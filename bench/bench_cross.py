"""Benchmark: cross-compiling a foreign architecture vs emulating it, against native.

    python bench/bench_cross.py

The same C extensions, compiled from source (NO_BINARY): psutil from the public index and
the fixture package wtzlib (zlib and libffi), for

  amd64 native      the baseline
  arm64 emulated    CROSS=never: the arm64 builder under QEMU
  arm64 cross       CROSS=always: zig on amd64 against the arm64 builder's root

on the fixture builders (tests/fixtures/builders), two ways:

  compile   the builders' set-up and the cross toolchain ready (as for every job but the
            first of a run), the module compiled again: a recipe makes each measured build
            new and turns off ccache, pip's cache and zig's object cache
  cold      BUILD_NO_CACHE: every stage again, the builders' set-up (and the cross
            toolchain: ziglang, crossenv) included

The ratios are of the build step (from each run's JSON report) against amd64 native;
repair and the import check, which run on the target platform under QEMU in every mode,
are shown apart. Last, the tool's own overhead: a whole `wheeltasks build` (planning,
checks, context, buildx) against the same `docker buildx build` written by hand. Writes
bench/results/cross.{txt,json}. Needs `bash .ci/services.sh`.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, Run, builder_images, project, run, save

from wheeltasks.index import pip_default_index

MODES: dict[str, tuple[str, dict[str, str]]] = {
    "amd64 native": ("amd64", {}),
    "arm64 emulated": ("arm64", {"CROSS": "never"}),
    "arm64 cross": ("arm64", {"CROSS": "always"}),
}


def start_index(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """pypiserver on 127.0.0.1 with wtzlib's sdist; other projects redirect to pip's index."""
    packages = folder / "packages"
    packages.mkdir(parents=True)
    source = folder / "wtzlib"
    shutil.copytree(ROOT / "tests" / "fixtures" / "packages" / "wtzlib", source)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(packages), str(source)],
                   check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
                               "--fallback-url", pip_default_index(), str(packages)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/simple/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return server, url


# Appended to the module's own recipe: the build is new each time (the recipe is part of
# the build's input) and compiles everything (zig caches objects in its local cache).
FRESH = "\n# bench run {n}\nexport CCACHE_DISABLE=1 PIP_NO_CACHE_DIR=1 ZIG_LOCAL_CACHE_DIR=\"$(mktemp -d)\"\n"


def fresh_project(folder: Path, module: str, n: int, **settings: str) -> dict[str, str]:
    env = project(folder, **settings)
    packaged = ROOT / "wheeltasks" / "data" / "scripts" / f"{module}.sh"
    scripts = folder / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / f"{module}.sh").write_text((packaged.read_text() if packaged.is_file() else "") + FRESH.format(n=n))
    return env


def main() -> None:
    builder_images()
    rows: dict[str, dict[str, float]] = {}
    overhead: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wheeltasks-bench-cross-") as tmp:
        server, index = start_index(Path(tmp) / "index")
        try:
            for module in ("psutil", "wtzlib"):
                for name, (arch, extra) in MODES.items():
                    settings = {"PYPI_INDEX": index, "NO_BINARY": "1", **extra}
                    folder = Path(tmp) / f"{module}-{name.replace(' ', '-')}"
                    # The builders and the toolchain made once, then a build that compiles.
                    run(fresh_project(folder / "warm-up", module, 0, **settings), "build", f"{module}-{arch}")
                    measured = run(fresh_project(folder / "compile", module, 1, **settings), "build", f"{module}-{arch}")
                    rows[f"{module} {name} compile"] = times(measured)
                    cold = run(project(folder / "cold", BUILD_NO_CACHE="1", **settings), "build", f"{module}-{arch}")
                    rows[f"{module} {name} cold"] = times(cold)
            overhead = measure_overhead(Path(tmp), index)
        finally:
            server.terminate()
            server.wait()
    lines = ["build step, compiled from source (ratio: against amd64 native, the same way)"]
    for way in ("compile", "cold"):
        for key, row in rows.items():
            module, *_, kind = key.split()
            if kind != way:
                continue
            base = rows[f"{module} amd64 native {way}"]["build"]
            lines.append(
                f"  {key:30s} build {row['build']:6.1f} s  {row['build'] / base:5.2f}x   "
                f"repair {row['repair']:5.1f} s  import-check {row['import-check']:5.1f} s"
            )
    lines.append(
        f"tool overhead (psutil amd64, no cache): wheeltasks {overhead['tool']:.1f} s "
        f"vs docker buildx build by hand {overhead['hand']:.1f} s = {overhead['tool'] / overhead['hand']:.2f}x"
    )
    save("cross", lines, {"runs": rows, "overhead": overhead})


def times(result: Run) -> dict[str, float]:
    return {
        "build": result.step("build"),
        "repair": result.step("repair"),
        "import-check": result.step("import-check"),
        "wall": result.seconds,
    }


def measure_overhead(tmp: Path, index: str) -> dict[str, float]:
    """The whole tool up to the end of its build against the same buildx command by hand."""
    env = project(tmp / "overhead-tool", PYPI_INDEX=index, NO_BINARY="1", BUILD_NO_CACHE="1")
    result = run(env, "build", "psutil-amd64")
    after_build = sum(result.step(s) for s in ("repair", "import-check", "export"))
    tool = result.seconds - after_build
    # The same command, printed by NOOP, on the context the tool prepared.
    noop = subprocess.run([sys.executable, "-m", "wheeltasks", "build", "psutil-amd64", "--noop"],
                          cwd=env["WHEELTASKS_PROJECT_DIR"], env=env, capture_output=True, text=True, check=True)
    command = shlex.split(next(line for line in noop.stdout.splitlines() if "buildx build" in line))
    out = tmp / "overhead-hand-out"
    command = [f"type=local,dest={out}" if word.startswith("type=local,dest=") else word for word in command]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    return {"tool": tool, "hand": time.monotonic() - started}


if __name__ == "__main__":
    main()
