"""Benchmark: the same 6 jobs one at a time (--jobs 1, the baseline) and two at a time (--jobs 2).

    python bench/bench_jobs.py

Six C-extension jobs compiled from source (psutil, markupsafe and msgpack from the public
index, shared and no-shared) on the fixture builder for linux/amd64, without BuildKit's
cache and with REUSE=never (else a no-shared job takes its shared job's build), so both runs
compile everything. Prints wall times and the ratio, and writes them
to bench/results/jobs.{txt,json}. Needs `bash .ci/services.sh` (engine, registry).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import builder_images, project, run, save

TARGETS = ("psutil-amd64", "markupsafe-amd64", "msgpack-amd64")


def main() -> None:
    builder_images()
    times = {}
    with tempfile.TemporaryDirectory(prefix="wheeltasks-bench-jobs-") as tmp:
        for jobs in ("1", "2"):
            env = project(Path(tmp) / f"jobs{jobs}", JOBS=jobs, BUILD_BOTH="1", NO_BINARY="1", BUILD_NO_CACHE="1",
                          REUSE="never")
            times[jobs] = run(env, "build", *TARGETS).seconds
    lines = [
        "6 jobs (3 modules x 2 kinds, compiled, no cache), linux/amd64:",
        f"  --jobs 1 (baseline)  {times['1']:7.1f} s",
        f"  --jobs 2             {times['2']:7.1f} s   {times['1'] / times['2']:.2f}x faster",
    ]
    save("jobs", lines, {"seconds": times, "speedup": times["1"] / times["2"]})


if __name__ == "__main__":
    main()
