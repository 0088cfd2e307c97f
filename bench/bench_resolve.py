"""Benchmark: version look-ups for the default module set.

Baseline (measured in the same run): one uncached request per module, one after the
other — what the shell-script system did with a curl per module. Against it:
wheeltasks' IndexClient cold (concurrent, empty cache) and warm (24 h cache).

    python bench/bench_resolve.py [--index URL] [--rounds N]

Prints the times and the speed-up ratios; it asserts nothing (not part of the tests).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import requests

from wheeltasks import index, pages
from wheeltasks.index import IndexClient
from wheeltasks.pages import ACCEPT, group_releases, newest_installable, parse_html_page, parse_json_page
from wheeltasks.plan import default_targets
from wheeltasks.settings import Settings


def baseline(settings: Settings, modules: list[str], python: str) -> dict[str, str]:
    found = {}
    with requests.Session() as session:
        session.verify = settings.ca_bundle or True
        for module in modules:
            response = session.get(f"{index.index_url(settings).rstrip('/')}/{module}/", headers={"Accept": ACCEPT}, timeout=60)
            response.raise_for_status()
            parse = parse_json_page if "json" in response.headers.get("Content-Type", "") else parse_html_page
            found[module] = str(newest_installable(group_releases(parse(module, response.text)), python))
    return found


def timed(func, *args):  # type: ignore[no-untyped-def]
    # Each phase starts as a fresh process would: no parsed versions memoised yet.
    pages._version.cache_clear()
    pages.parse_requires_python.cache_clear()
    started = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="index URL (default: PYPI_INDEX, else pip's default)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ)
    if args.index:
        env["PYPI_INDEX"] = args.index
    runs: dict[str, list[float]] = {"baseline": [], "cold": [], "warm": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            settings = Settings.load({}, {**env, "WHEELTASKS_CACHE_DIR": cache}, {})
            # The projects on the index (the default modules without their SSL suffixes).
            modules = sorted({t.module for t in default_targets(settings, "all")})
            python = settings.newest_default_python
            seconds, expected = timed(baseline, settings, modules, python)
            runs["baseline"].append(seconds)
            seconds, cold = timed(IndexClient(settings).latest_many, modules, python)
            runs["cold"].append(seconds)
            seconds, warm = timed(IndexClient(settings).latest_many, modules, python)
            runs["warm"].append(seconds)
            assert {m: str(v) for m, v in cold.items()} == expected == {m: str(v) for m, v in warm.items()}
    base = statistics.median(runs["baseline"])
    print(f"{len(modules)} modules, Python {python}, {args.rounds} rounds (median seconds)")
    for name, values in runs.items():
        value = statistics.median(values)
        print(f"  {name:9s} {value:8.3f}s   x{base / value:6.1f} vs baseline")


if __name__ == "__main__":
    main()
