"""Benchmark: build once (REUSE=auto) against every job building (REUSE=never).

    python bench/bench_reuse.py [--modules "toml cffi psutil"] [--rounds 3] [--foreign-pythons 3.11]

One set that has all three kinds of wheel, from the public index: toml (pure), cffi (one
wheel per Python) and psutil (abi3), for Python 3.11 and 3.13 on amd64, arm64 and armv7
(cross-compiled), both kinds: 36 jobs (48 with cffi's pycparser), on builders with both
Pythons on the three platforms (bench/builders.sh: the fixtures' roots, with a CPython 3.13
cross-compiled for arm64 and armv7). `--foreign-pythons 3.11` gives the earlier, smaller
set: 3.11 only on arm64 and armv7 (32 jobs, the fixtures' builder2). Three runs, each in a new
project folder, pushing to its own namespace of the local registry, in turn, for each of
``--rounds`` rounds:

  never        REUSE=never NO_BINARY=1: every job compiles its wheel (the baseline)
  build once   REUSE=auto NO_BINARY=1: a pure wheel is built once for every job, an abi3
               one once per arch, and a no-shared job takes its shared job's build (the
               wheel before the repair); nothing is taken from the index
  + index      REUSE=auto (the default): also the index's wheel where the job's platform and
               Python accept one (musllinux or pure) — what a user gets by default

Each with BUILD_NO_CACHE=1 (the module compiled again, the builders' set-up kept), after one
untimed warm-up run of every platform. Prints jobs, builds, containers started (builds,
repairs in a container, the import checks' containers), wall time and the ratio against
`never`; checks that `never` and `build once` give the same wheel file names in wheels/ and
the same tags and platforms in the registry, in every round. Writes
bench/results/reuse.{txt,json} (reuse-one-foreign-python.* for the smaller set). Needs
`bash .ci/services.sh`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import REGISTRY, ROOT, Run, build_images, builder_images, project, run, save

BUILDER2 = f"{REGISTRY}/wheeltasks-fixtures/builder2:py{{python}}"
BENCH_BUILDER = f"{REGISTRY}/wheeltasks-fixtures/bench-builder:py{{python}}"
FOREIGN = ("arm64", "armv7")
RUNS: dict[str, dict[str, str]] = {
    "never": {"REUSE": "never", "NO_BINARY": "1"},
    "build once": {"REUSE": "auto", "NO_BINARY": "1"},
    "+ index": {"REUSE": "auto"},
}


def targets(modules: list[str], foreign: str) -> list[str]:
    """amd64 with every Python; arm64 and armv7 with every one, or with the one named."""
    python = "all" if foreign == "3.11 3.13" else foreign
    return [t for m in modules for t in (f"{m}-pyall-amd64", *(f"{m}-py{python}-{arch}" for arch in FOREIGN))]


def bench_builders() -> str:
    """Build (or find cached) bench/builders.sh's images, after the fixtures' own (the script
    runs build.sh first); the BUILDER_IMAGE template."""
    build_images(ROOT / "bench" / "builders.sh", "bench builders")
    return BENCH_BUILDER


def containers(report: dict[str, Any]) -> dict[str, int]:
    jobs = report["jobs"]
    return {
        "builds": sum(1 for j in jobs if j["source"] == "build"),
        "repairs": sum(1 for j in jobs if j["repaired"] == "container"),
        "import checks": sum(1 for j in jobs if "import-check" in j["step_seconds"]),
        # Containers those checks started: most share one per builder, platform and Alpine
        # package set (wheeltasks.checkers).
        "check containers": report["check_containers"],
    }


def registry_contents(namespace: str) -> dict[str, list[str]]:
    """tag -> sorted platforms, for every repository under the namespace."""
    def get(path: str, accept: str = "application/json") -> dict[str, Any]:
        request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as answer:
            data: dict[str, Any] = json.load(answer)
            return data

    found: dict[str, list[str]] = {}
    types = ("application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
             "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
    for repo in ("python-musl-wheels", "python-alpine-wheels"):
        for tag in get(f"{namespace}/{repo}/tags/list").get("tags") or []:
            document = get(f"{namespace}/{repo}/manifests/{tag}", types)
            # A multi-platform tag lists its platforms; a legacy per-arch tag is one image.
            found[f"{repo}:{tag}"] = sorted(
                "/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"))))
                for m in document.get("manifests", [])) or ["one image"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="toml cffi psutil")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three runs (default 3)")
    parser.add_argument("--foreign-pythons", choices=("3.11 3.13", "3.11"), default="3.11 3.13",
                        help="the Pythons of arm64 and armv7 (default both; 3.11: the fixtures' builders)")
    args = parser.parse_args()
    modules = args.modules.split()
    if args.foreign_pythons == "3.11 3.13":
        builder = bench_builders()
    else:
        builder_images()
        builder = BUILDER2
    base = Path(tempfile.mkdtemp(prefix="wheeltasks-bench-reuse-"))
    # WHEELS_FORCE: with REUSE=never a pure wheel is built once per Python, and two builds of
    # it are not byte-identical (the dist-info files carry the build's time), so the second
    # export would refuse it. Build once has one build, and so no such conflict.
    common = {"BUILDER_IMAGE": builder, "PYTHON_VERSIONS": "3.11 3.13", "BUILD_BOTH": "1", "CROSS": "always",
              "WHEELS_FORCE": "1"}
    print(f"warm-up (untimed): one job of each platform, in {base}", file=sys.stderr)
    run(project(base / "warm-up", **common, REUSE="never", NO_BINARY="1"), "build",
        *targets(modules[:1], args.foreign_pythons))
    stamp = int(time.time())  # a namespace of this run's own in the registry
    results: dict[str, list[Run]] = {name: [] for name in RUNS}
    wheels: dict[str, list[str]] = {}
    images: dict[str, dict[str, list[str]]] = {}
    same: list[bool] = []
    # Rounds of the three runs in turn: this machine's speed drifts within minutes, so each
    # ratio is taken within its round, and the table gives the medians.
    for round_ in range(1, args.rounds + 1):
        for name, settings in RUNS.items():
            folder = base / f"round{round_}" / name.replace(" ", "-").replace("+", "plus")
            namespace = f"bench-reuse-{folder.name}-{stamp}-{round_}"
            env = project(folder, **common, **settings, BUILD_NO_CACHE="1", DO_PUSH="1",
                          WHEELS_REGISTRY=f"{REGISTRY}/{namespace}")
            print(f"round {round_}, {name}: {' '.join(f'{k}={v}' for k, v in settings.items())}", file=sys.stderr)
            results[name].append(run(env, "build", *targets(modules, args.foreign_pythons)))
            wheels[name] = sorted(str(p.relative_to(folder / "wheels")) for p in (folder / "wheels").rglob("*.whl"))
            images[name] = registry_contents(namespace)
        same.append(wheels["never"] == wheels["build once"] and images["never"] == images["build once"])
    lines = [f"modules: {' '.join(modules)}; Pythons 3.11 3.13 on amd64, {args.foreign_pythons} on arm64 and armv7 "
             "(cross); both kinds",
             f"{args.rounds} rounds of the three runs in turn; wall: the median; vs never: the median of the "
             "rounds' own ratios", "",
             f"{'run':<12} {'jobs':>5} {'builds':>7} {'containers':>11} {'index':>6} {'wall s':>8} {'vs never':>9}"
             "  rounds"]
    data: dict[str, Any] = {"modules": modules, "rounds": args.rounds, "foreign_pythons": args.foreign_pythons,
                            "runs": {}}
    for name, runs in results.items():
        report = runs[-1].report
        count = containers(report)
        jobs = len(report["jobs"])
        from_index = sum(1 for j in report["jobs"] if j["source"] == "index")
        ratios = [never.seconds / one.seconds for never, one in zip(results["never"], runs, strict=True)]
        wall, ratio = statistics.median(r.seconds for r in runs), statistics.median(ratios)
        started = count["builds"] + count["repairs"] + count["check containers"]
        lines.append(f"{name:<12} {jobs:>5} {count['builds']:>7} {started:>11} {from_index:>6} "
                     f"{wall:>8.1f} {ratio:>8.2f}x  {' '.join(f'{r:.2f}x' for r in ratios)}")
        data["runs"][name] = {"jobs": jobs, **count, "from_index": from_index, "seconds": round(wall, 1),
                              "ratio": round(ratio, 2), "seconds_by_round": [round(r.seconds, 1) for r in runs],
                              "ratio_by_round": [round(r, 2) for r in ratios], "wheels": wheels[name],
                              "images": images[name]}
    lines += ["", f"never and build once: the same wheel files in wheels/ and the same tags and platforms in the "
              f"registry, in every round: {all(same)}",
              f"+ index wheels differing from the built ones: "
              f"{sorted(set(wheels['+ index']) ^ set(wheels['never']))}"]
    save("reuse" if builder == BENCH_BUILDER else "reuse-one-foreign-python", lines, data)
    if not all(same):
        sys.exit("build once gave other wheels or images than never")


if __name__ == "__main__":
    main()
