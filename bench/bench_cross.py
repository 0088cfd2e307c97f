"""Benchmark: a whole foreign job, cross-compiled or emulated, against the same job native.

    python bench/bench_cross.py

The same C extensions, compiled from source (NO_BINARY): psutil and the fixture package
wtzlib (zlib and libffi), both served by a pypiserver on 127.0.0.1 (psutil's sdist and the
build back-ends fetched once, so no builder needs TLS), for

  amd64 native              the baseline
  arm64/armv7 cross         CROSS=always: zig on amd64 against the target builder's root,
                            repaired on the build platform, only the import emulated
  arm64/armv7 emulated      CROSS=never: the target's builder under QEMU

on the fixture builders (tests/fixtures/builders), three ways:

  warm      the builders' set-up and the cross toolchain ready (every job of a run but the
            first of its platform): a recipe makes each measured build new and turns off
            ccache, pip's cache and zig's object cache, so the module is compiled
  no-cache  BUILD_NO_CACHE=1, as a user asks for a rebuild: the module is compiled again,
            the set-up and toolchain layers are kept
  new layers  after `docker builder prune -af --filter type=regular`: every layer gone, the
            cache mounts kept (the first job of a platform after the builders' or the
            toolchain's inputs changed, e.g. a new wheeltasks or builder image: the set-up and
            the cross toolchain's layers made again; the downloads, ziglang and zig's runtime
            for the target kept in their cache mounts)
  new engine  after `docker builder prune -af`: every layer and cache mount gone (the
            first job of a platform on a new engine: the cross toolchain, zig's runtime for
            the target and every download made again; the native set-up too)

For each: every step's time and the whole job's (the run report's), and the whole job's
ratio against amd64 native the same way (`--ways "new layers"` runs only those ways and
keeps the last run's numbers of the others). Last, the tool's own overhead: a whole `wheeltasks
build` against the same `docker buildx build` written by hand. Writes
bench/results/cross.{txt,json} (`--table` prints the table again from the json). Needs
`bash .ci/services.sh`.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import RESULTS, ROOT, Run, builder_images, project, run, save

PSUTIL = "7.2.2"
MODES: dict[str, tuple[str, dict[str, str]]] = {
    "amd64 native": ("amd64", {}),
    "arm64 cross": ("arm64", {"CROSS": "always"}),
    "arm64 emulated": ("arm64", {"CROSS": "never"}),
    "armv7 cross": ("armv7", {"CROSS": "always"}),
    "armv7 emulated": ("armv7", {"CROSS": "never"}),
}
WAYS = ("warm", "no-cache", "new layers", "new engine")
PRUNE = {"new layers": ["--filter", "type=regular"], "new engine": []}  # `docker builder prune -af` flags


def start_index(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """pypiserver on 127.0.0.1 with wtzlib's sdist, psutil's and the build back-ends, and no
    fallback to another index: the emulated builders have no TLS (and need none)."""
    packages = folder / "packages"
    packages.mkdir(parents=True)
    source = folder / "wtzlib"
    shutil.copytree(ROOT / "tests" / "fixtures" / "packages" / "wtzlib", source)
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(packages), str(source)],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "psutil", "-d", str(packages),
                    f"psutil=={PSUTIL}"], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(packages),
                    "setuptools", "wheel", "packaging"], check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
                               "--disable-fallback", str(packages)],
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


def main(ways: tuple[str, ...]) -> None:
    builder_images()
    rows: dict[str, dict[str, float]] = {}
    overhead: dict[str, float] = {}
    if ways != WAYS:  # the other ways' numbers from the last run
        saved = json.loads((RESULTS / "cross.json").read_text())
        rows = {k: v for k, v in saved["runs"].items() if not any(k.endswith(f" {way}") for way in ways)}
        overhead = saved["overhead"]
    with tempfile.TemporaryDirectory(prefix="wheeltasks-bench-cross-") as tmp:
        server, index = start_index(Path(tmp) / "index")
        try:
            for way in ways:
                for module in ("psutil", "wtzlib"):
                    for name, (arch, extra) in MODES.items():
                        settings = {"PYPI_INDEX": index, "NO_BINARY": "1", **extra}
                        folder = Path(tmp) / way / f"{module}-{name.replace(' ', '-')}"
                        target = f"{module}-py3.11-{arch}"
                        if way == "warm":
                            # The builders and the toolchain made once, then a build that compiles.
                            run(fresh_project(folder / "warm-up", module, 0, **settings), "build", target)
                            measured = run(fresh_project(folder / "compile", module, 1, **settings), "build", target)
                        elif way == "no-cache":
                            measured = run(project(folder, BUILD_NO_CACHE="1", **settings), "build", target)
                        else:
                            subprocess.run(["docker", "builder", "prune", "-af", *PRUNE[way]], check=True,
                                           capture_output=True)
                            # New layers: the module compiled as new (not from ccache's mount, which is kept).
                            kept_mounts = way == "new layers"
                            made = fresh_project(folder, module, 2, **settings) if kept_mounts else project(folder, **settings)
                            measured = run(made, "build", target)
                        rows[f"{module} {name} {way}"] = times(measured)
            if ways == WAYS:
                overhead = measure_overhead(Path(tmp), index)
        finally:
            server.terminate()
            server.wait()
    save("cross", table(rows, overhead), {"runs": rows, "overhead": overhead})


def table(rows: dict[str, dict[str, float]], overhead: dict[str, float]) -> list[str]:
    """Each way's rows, each with its ratio against amd64 native the same way."""
    lines = ["whole job, compiled from source: each step and the job (ratio: the job against amd64 native, the same way)"]
    for way in WAYS:
        for key, row in rows.items():
            if not key.endswith(f" {way}"):
                continue
            base = rows[f"{key.split()[0]} amd64 native {way}"]["job"]
            lines.append(
                f"  {key:34s} build {row['build']:6.1f} s  repair {row['repair']:5.1f} s  "
                f"import-check {row['import-check']:5.1f} s  job {row['job']:6.1f} s  {row['job'] / base:5.2f}x"
            )
    lines.append(
        f"tool overhead (psutil amd64, no cache): wheeltasks {overhead['tool']:.1f} s "
        f"vs docker buildx build by hand {overhead['hand']:.1f} s = {overhead['tool'] / overhead['hand']:.2f}x"
    )
    return lines


def times(result: Run) -> dict[str, float]:
    (job,) = result.report["jobs"]
    return {
        "build": result.step("build"),
        "repair": result.step("repair"),
        "import-check": result.step("import-check"),
        "job": float(job["seconds"]),
        "wall": result.seconds,
    }


def measure_overhead(tmp: Path, index: str) -> dict[str, float]:
    """The whole tool up to the end of its build against the same buildx command by hand."""
    env = project(tmp / "overhead-tool", PYPI_INDEX=index, NO_BINARY="1", BUILD_NO_CACHE="1")
    result = run(env, "build", "psutil-py3.11-amd64")
    after_build = sum(result.step(s) for s in ("repair", "import-check", "export"))
    tool = result.seconds - after_build
    # The same command, printed by NOOP, on the context the tool prepared.
    noop = subprocess.run([sys.executable, "-m", "wheeltasks", "build", "psutil-py3.11-amd64", "--noop"],
                          cwd=env["WHEELTASKS_PROJECT_DIR"], env=env, capture_output=True, text=True, check=True)
    command = shlex.split(next(line for line in noop.stdout.splitlines() if "buildx build" in line))
    out = tmp / "overhead-hand-out"
    command = [f"type=local,dest={out}" if word.startswith("type=local,dest=") else word for word in command]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True)
    return {"tool": tool, "hand": time.monotonic() - started}


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:  # the table again from the last run's numbers
        saved = json.loads((RESULTS / "cross.json").read_text())
        print("\n".join(table(saved["runs"], saved["overhead"])))
    elif sys.argv[1:2] == ["--ways"]:
        chosen = tuple(w for w in WAYS if w in sys.argv[2:])
        if len(chosen) != len(sys.argv[2:]):
            sys.exit(f"--ways takes some of: {', '.join(WAYS)}")
        main(chosen)
    else:
        main(WAYS)
