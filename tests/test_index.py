"""The index client against real index servers on 127.0.0.1 (see tests/fixtures_index.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.fixtures_index import (
    BULK_COUNT,
    JSON_TYPE,
    PypiServer,
    StaticIndex,
    free_port,
)
from wheeltasks.errors import RemoteError, WheelTasksError
from wheeltasks.index import IndexClient
from wheeltasks.indexcache import cache_path, clear_cache, parsed_path
from wheeltasks.pages import ACCEPT, Release, parse_html_page
from wheeltasks.settings import Settings

MakeSettings = Callable[..., Settings]
LAYOUTS = ("json", "html", "both")


def client_for(index_settings: MakeSettings, url: str | None, **kwargs: Any) -> IndexClient:
    """A client of ``url``; ``expire_after``, ``clock`` and ``sleep`` go to the client, the rest
    to its settings."""
    given = {name: kwargs.pop(name) for name in ("clock", "sleep") if name in kwargs}
    expire_after = kwargs.pop("expire_after", None)
    return IndexClient(index_settings(url, **kwargs), expire_after=expire_after, **given)


def no_sleep(seconds: float) -> None:
    """Retries without their backoff: what is tested is that they happen."""


# ---- version rules (static index: JSON, HTML and negotiated) ---------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("python", "expected"),
    [
        (None, "1.4.0"),  # 2.0.0 yanked, 2.1.0rc1 pre-release
        ("3.14", "1.4.0"),
        ("3.13", "1.4.0"),  # the wheel's >=3.13.1 admits the newest 3.13.x
        ("3.13.0", "1.3.0"),  # an exact patch release is taken as it is
        ("3.12", "1.2.0"),  # 1.3.0's unrestricted sdist is yanked, so it does not count
        ("3.11", "1.1.0"),
        ("3.7", "1.0.0"),
    ],
)
def test_latest_rules(
    static_index: StaticIndex, index_settings: MakeSettings, layout: str, python: str | None, expected: str
) -> None:
    client = client_for(index_settings, static_index.url(layout))
    assert client.latest("wtfix", python) == Version(expected)


def test_json_and_html_pages_give_the_same_releases(static_index: StaticIndex, index_settings: MakeSettings) -> None:
    found = {layout: client_for(index_settings, static_index.url(layout)).releases("wtfix") for layout in LAYOUTS}
    assert found["json"] == found["html"] == found["both"]
    by_version = {r.version: r for r in found["json"]}
    assert [str(v) for v in by_version] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "2.0.0", "2.1.0rc1"]
    assert by_version[Version("2.0.0")] == Release(Version("2.0.0"), None, yanked=True, yanked_reason="do not use")
    assert by_version[Version("1.3.0")] == Release(Version("1.3.0"), SpecifierSet(">=3.13"), yanked=False)
    assert by_version[Version("1.4.0")].specifiers == (SpecifierSet(">=3.14"), SpecifierSet(">=3.13.1"))
    assert by_version[Version("1.0.0")].requires_python is None


@pytest.mark.parametrize(("layout", "content_type"), [("json", JSON_TYPE), ("both", JSON_TYPE), ("html", "text/html")])
def test_static_server_answers_the_expected_format(static_index: StaticIndex, layout: str, content_type: str) -> None:
    # Guards the test set-up: the client's Accept header gets JSON where JSON exists.
    response = requests.get(f"{static_index.url(layout)}wtfix/", headers={"Accept": ACCEPT}, timeout=10)
    assert response.headers["Content-Type"].startswith(content_type)


def test_html_attributes_are_unescaped_and_bare_yank_counts() -> None:
    page = (
        '<a href="../f/wtx-1.0.tar.gz#sha256=00" data-requires-python="&gt;=3.9,&lt;4" data-yanked>wtx-1.0.tar.gz</a>'
        '<a href="../f/wtx-1.1.tar.gz" data-yanked="">x</a><a href="../f/notes.txt">notes</a>'
        '<a href="../f/other-2.0.tar.gz">other</a>'
    )
    files = parse_html_page("wtx", page)
    assert [(f.filename, f.requires_python, f.yanked) for f in files] == [
        ("wtx-1.0.tar.gz", SpecifierSet(">=3.9,<4"), True),
        ("wtx-1.1.tar.gz", None, True),
    ]


# ---- pypiserver (PEP 503 HTML) ---------------------------------------------------------


def test_pypiserver_html_page(index_server: str, index_settings: MakeSettings) -> None:
    client = client_for(index_settings, index_server)
    response = requests.get(f"{index_server}wtplain/", headers={"Accept": ACCEPT}, timeout=10)
    assert response.headers["Content-Type"].startswith("text/html")  # pypiserver has no JSON API
    assert [str(r.version) for r in client.releases("wtplain")] == ["1.0.0", "1.5.0", "2.0.0b1"]
    assert client.latest("wtplain", "3.12") == Version("1.5.0")


@pytest.mark.parametrize("name", ["WT_Fix.Name", "wt-fix-name", "wt_fix.name", "WT--FIX__NAME", "wt.fix.name"])
def test_project_names_are_normalised(index_server: str, index_settings: MakeSettings, name: str) -> None:
    client = client_for(index_settings, index_server)
    assert [str(r.version) for r in client.releases(name)] == ["0.1.0", "0.2.0", "0.3.0"]
    assert client.latest(name, "3.11") == Version("0.3.0")


@pytest.mark.parametrize("server", ["pypiserver", "static"])
def test_missing_project_is_a_clear_error(
    index_server: str, static_index: StaticIndex, index_settings: MakeSettings, server: str
) -> None:
    url = index_server if server == "pypiserver" else static_index.url("both")
    client = client_for(index_settings, url)
    with pytest.raises(WheelTasksError, match=rf"project wt-nothing not found on {url}"):
        client.latest("wt-nothing", None)


def test_no_admissible_version_names_project_python_and_index(
    static_index: StaticIndex, index_settings: MakeSettings
) -> None:
    url = static_index.url("json")
    client = client_for(index_settings, url)
    assert client.latest("wtnew", "3.13") == Version("1.0.0")
    with pytest.raises(WheelTasksError, match=rf"wtnew has no final, non-yanked release for Python 3\.12 on {url}"):
        client.latest("wtnew", "3.12")


# ---- pinned versions -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "1.0", Version("1.1.0"), "2.1.0rc1"])
def test_pinned_version_on_the_index(static_index: StaticIndex, index_settings: MakeSettings, version: Any) -> None:
    client_for(index_settings, static_index.url("json")).check_version("wtfix", version, "3.11")


def test_pinned_yanked_version_is_allowed_with_a_warning(
    static_index: StaticIndex, index_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
        client_for(index_settings, static_index.url("html")).check_version("wtfix", "2.0.0", "3.12")
    assert "wtfix 2.0.0 is yanked" in caplog.text and "do not use" in caplog.text


@pytest.mark.parametrize(
    ("version", "python", "message"),
    [
        ("9.9.9", "3.11", r"wtfix 9\.9\.9 is not on http://\S+; newest is 1\.1\.0"),
        ("9.9.9", "3.12", r"newest is 1\.2\.0"),
        ("1.2.0", "3.11", r"wtfix 1\.2\.0 requires Python >=3\.12, not 3\.11"),
        ("not-a-version", "3.11", r"not a PEP 440 version"),
    ],
)
def test_pinned_version_errors(
    static_index: StaticIndex, index_settings: MakeSettings, version: str, python: str, message: str
) -> None:
    with pytest.raises(WheelTasksError, match=message):
        client_for(index_settings, static_index.url("both")).check_version("wtfix", version, python)


# ---- cache -----------------------------------------------------------------------------


def test_second_lookup_is_served_from_the_cache(
    make_index_server: Callable[[], PypiServer], index_settings: MakeSettings
) -> None:
    server = make_index_server()
    first = client_for(index_settings, server.url)
    assert first.latest("wtplain", "3.12") == Version("1.5.0")
    assert first.network_requests == 1
    assert first.latest("wtplain", "3.12") == Version("1.5.0")
    assert first.network_requests == 1

    server.stop()  # a new client (a new `inv` run) answers from the cache alone
    second = client_for(index_settings, server.url)
    assert second.latest("wtplain", "3.11") == Version("1.5.0")
    assert second.network_requests == 0

    cleaned = client_for(index_settings, server.url, clean_cache=True)
    with pytest.raises(RemoteError, match=r"could not reach the package index .* for wtplain .*nothing is cached"):
        cleaned.latest("wtplain", "3.12")
    server.start()
    again = client_for(index_settings, server.url, clean_cache=True)
    assert again.latest("wtplain", "3.12") == Version("1.5.0")
    assert again.network_requests == 1


def test_stale_answer_is_used_when_the_index_is_down(
    make_index_server: Callable[[], PypiServer], index_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_index_server()
    assert client_for(index_settings, server.url, expire_after=1).latest("wtplain", None) == Version("1.5.0")
    server.stop()

    def later() -> datetime:  # past the expiry: the client tries the network first
        return datetime.now(timezone.utc) + timedelta(seconds=2)

    client = client_for(index_settings, server.url, expire_after=1, clock=later, sleep=no_sleep)
    with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
        assert client.latest("wtplain", None) == Version("1.5.0")
    assert client.network_requests == 3  # the first try and two retries of the refused connection
    assert "could not reach the package index" in caplog.text
    assert "for wtplain (ConnectionError); using the cached answer from" in caplog.text


def test_stale_answer_is_used_when_the_index_fails_with_5xx(
    static_index: StaticIndex, index_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    url = static_index.url("json")
    # Stored already expired: the next client asks the index first.
    assert client_for(index_settings, url, expire_after=0).latest("wtbulk3", None) == Version("1.3.0")
    static_index.fail("json")
    try:
        with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
            assert client_for(index_settings, url, expire_after=1, sleep=no_sleep).latest("wtbulk3", None) == Version("1.3.0")
        with pytest.raises(RemoteError, match=r"could not reach .* for wtbulk4 \(HTTP 503\) and nothing is cached"):
            client_for(index_settings, url).latest("wtbulk4", None)
    finally:
        static_index.recover("json")
    assert "HTTP 503" in caplog.text


def test_index_down_and_nothing_cached_is_a_clear_error(index_settings: MakeSettings, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/simple/"
    with pytest.raises(RemoteError, match=r"^could not reach the package index .* nothing is cached: check PYPI_INDEX") as caught:
        client_for(index_settings, url).latest("wtplain", None)
    assert caught.value.exit_code == 4


def test_credentials_never_appear_in_messages_or_the_cache(
    static_index: StaticIndex, index_settings: MakeSettings
) -> None:
    url = static_index.url("both").replace("http://", "http://alice:s3cret@")
    client = client_for(index_settings, url)
    assert client.latest("wtbulk2", None) == Version("1.2.0")  # http.server ignores the credentials
    with pytest.raises(WheelTasksError) as missing:
        client.latest("wt-nothing", None)
    assert "s3cret" not in str(missing.value) and "***@127.0.0.1" in str(missing.value)
    down = f"http://alice:s3cret@127.0.0.1:{free_port()}/simple/"
    with pytest.raises(WheelTasksError) as unreachable:
        client_for(index_settings, down).latest("wtplain", None)
    assert "s3cret" not in str(unreachable.value)
    cache = cache_path(index_settings(url))
    assert parsed_path(index_settings(url)).is_file()
    assert b"s3cret" not in b"".join(p.read_bytes() for p in cache.parent.glob("*") if p.is_file())


def test_clear_cache_reports_what_it_removed(static_index: StaticIndex, index_settings: MakeSettings) -> None:
    settings = index_settings(static_index.url("json"))
    client = IndexClient(settings)
    client.latest("wtbulk1", None)
    client.close()
    removed = clear_cache(settings)
    assert cache_path(settings) in removed and parsed_path(settings) in removed
    assert clear_cache(settings) == []


# ---- concurrency -----------------------------------------------------------------------


def test_latest_many_looks_up_concurrently(static_index: StaticIndex, index_settings: MakeSettings) -> None:
    names = ["wtfix", *(f"wtbulk{n}" for n in range(BULK_COUNT))]
    expected = {"wtfix": Version("1.2.0"), **{f"wtbulk{n}": Version(f"1.{n}.0") for n in range(BULK_COUNT)}}
    client = client_for(index_settings, static_index.url("both"))
    assert client.latest_many(names, "3.12") == expected
    assert client.network_requests == len(names)
    assert client.latest_many(reversed(names), "3.12") == expected
    assert client.network_requests == len(names)  # all from the cache now


def test_latest_many_on_pypiserver_and_its_errors(index_server: str, index_settings: MakeSettings) -> None:
    client = client_for(index_settings, index_server)
    assert client.latest_many(["wtplain", "WT_Fix.Name"], None) == {
        "wtplain": Version("1.5.0"),
        "WT_Fix.Name": Version("0.3.0"),
    }
    assert client.latest_many([], None) == {}
    with pytest.raises(WheelTasksError, match="project wt-nothing not found"):
        client.latest_many(["wtplain", "wt-nothing"], None)


# ---- the public index ------------------------------------------------------------------


@pytest.mark.network
def test_public_index_cffi(index_settings: MakeSettings) -> None:
    settings = index_settings(None)  # no PYPI_INDEX: pip's own default index
    client = IndexClient(settings)
    releases = {r.version: r for r in client.releases("cffi")}
    assert Version("1.15.1") in releases
    latest = client.latest("cffi", "3.12")
    assert latest >= Version("1.17.1") and not latest.is_prerelease
    assert releases[latest].admits("3.12")
    client.check_version("cffi", "1.15.1", "3.11")


# ---- yanking (PEP 691/592) and parsing once per run ---------------------------------------------


@pytest.mark.parametrize(
    ("value", "yanked", "reason"),
    [
        (True, True, ""), ("broken build", True, "broken build"),
        (False, False, ""), (None, False, ""), ("", False, ""),
        # Not a boolean or a reason: out of the spec, so absent (as for requires-python).
        ([], False, ""), ({}, False, ""), (0, False, ""), (1, False, ""), (["why"], False, ""), ({"odd": 1}, False, ""),
    ],
)
def test_only_true_or_a_reason_yanks_a_json_file(value: Any, yanked: bool, reason: str) -> None:
    from wheeltasks.pages import parse_json_page

    page = {"meta": {"api-version": "1.0"}, "files": [{"filename": "wtx-1.0.tar.gz", "yanked": value}]}
    (found,) = parse_json_page("wtx", json.dumps(page))
    assert (found.yanked, found.yanked_reason) == (yanked, reason)


@pytest.mark.parametrize(
    ("attribute", "yanked"),
    [("", False), (" data-yanked", True), (' data-yanked=""', True), (' data-yanked="bad"', True), (" data-yanked=0", True)],
)
def test_an_html_data_yanked_attribute_yanks_when_present(attribute: str, yanked: bool) -> None:
    (found,) = parse_html_page("wtx", f'<a href="../f/wtx-1.0.tar.gz"{attribute}>wtx-1.0.tar.gz</a>')
    assert found.yanked is yanked


def test_a_page_is_parsed_once_per_run(
    static_index: StaticIndex, index_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-pyall asks the same page once per Python, and a pin asks it again: one parse, one request."""
    from wheeltasks import index as index_module

    parsed: list[str] = []
    real = index_module.parse_page

    def counting(project: str, content_type: str, body: bytes, base: str = "") -> list[Any]:
        parsed.append(project)
        return real(project, content_type, body, base)

    monkeypatch.setattr(index_module, "parse_page", counting)
    client = client_for(index_settings, static_index.url("html"))
    for python in ("3.11", "3.12", "3.13", "3.14"):
        client.latest("wtfix", python)
    client.check_version("wtfix", "1.1.0", "3.11")
    assert parsed == ["wtfix"]
    assert client.network_requests == 1
    # A new client (a new run) takes the files as parsed before: no parse, no request.
    again = client_for(index_settings, static_index.url("html"))
    for python in ("3.11", "3.12"):
        again.latest("wtfix", python)
    assert parsed == ["wtfix"] and again.network_requests == 0
    assert again.files("wtfix") == client.files("wtfix")


def test_a_client_that_looks_nothing_up_writes_nothing(index_settings: MakeSettings, tmp_path: Any) -> None:
    settings = index_settings("http://127.0.0.1:9/simple/")
    IndexClient(settings).close()
    assert not settings.cache_dir.exists()


def test_requests_cache_is_imported_without_other_backends_drivers() -> None:
    """In a new process: the cache's import leaves the drivers of requests-cache's other
    backends unimported and importable (nothing left marked "not installed")."""
    code = (
        "import importlib.util, sys\n"
        "from wheeltasks.indexcache import _OTHER_DRIVERS, _import_requests_cache\n"
        "before = {n for n in _OTHER_DRIVERS if n in sys.modules}  # e.g. yaml, by invoke\n"
        "_import_requests_cache()\n"
        "from requests_cache.backends.sqlite import SQLiteCache\n"
        "assert 'requests_cache' in sys.modules and SQLiteCache\n"
        "loaded = [n for n in _OTHER_DRIVERS if n in sys.modules and n not in before]\n"
        "assert not loaded and all(sys.modules[n] is not None for n in before), loaded\n"
        "present = [n for n in ('boto3', 'yaml') if importlib.util.find_spec(n)]\n"
        "for name in present: __import__(name)\n"
        "print('ok', present)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


# ---- the parsed pages ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["json", "html"])
def test_files_read_back_as_they_were_parsed(
    static_index: StaticIndex, index_server: str, index_settings: MakeSettings, layout: str
) -> None:
    """Every field of every file (yanked reasons, Requires-Python; pypiserver's sha256) is the
    same from the parsed pages as from the page."""
    for url, projects in ((static_index.url(layout), ("wtfix", "wtbulk1")), (index_server, ("wtplain",))):
        first = client_for(index_settings, url)
        parsed = {name: first.files(name) for name in projects}
        again = client_for(index_settings, url)
        assert {name: again.files(name) for name in projects} == parsed and again.network_requests == 0
    assert all(f.sha256 and f.url for f in parsed["wtplain"])
    fix = client_for(index_settings, static_index.url(layout)).files("wtfix")
    assert any(f.yanked_reason for f in fix) and any(f.requires_python for f in fix)


def test_a_warm_run_neither_imports_requests_cache_nor_parses(
    static_index: StaticIndex, index_settings: MakeSettings
) -> None:
    """In new processes, as runs are: the second answers from the parsed pages alone."""
    settings = index_settings(static_index.url("json"))
    env = {"HOME": str(settings.cache_dir.parent), "WHEELTASKS_CACHE_DIR": str(settings.cache_dir),
           "PYPI_INDEX": static_index.url("json")}
    code = (
        "import sys\n"
        "from wheeltasks import index\n"
        "from wheeltasks.settings import Settings\n"
        "calls = []\n"
        "real = index.parse_page\n"
        "index.parse_page = lambda *a: calls.append(a[0]) or real(*a)\n"
        f"settings = Settings.load(config={{}}, env={env!r}, flags={{}})\n"
        "client = index.IndexClient(settings)\n"
        "print(client.latest('wtfix', '3.11'), client.network_requests, calls, 'requests_cache' in sys.modules)\n"
    )

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    assert run() == "1.1.0 1 ['wtfix'] True"
    assert run() == "1.1.0 0 [] False"


def test_an_expired_or_replaced_page_is_not_taken_from_the_parsed_pages(
    make_index_server: Callable[[], PypiServer], index_settings: MakeSettings
) -> None:
    server = make_index_server()
    assert client_for(index_settings, server.url, expire_after=1).latest("wtplain", None) == Version("1.5.0")

    def later() -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=2)

    # Past the page's expiry the parsed files are past it too: the index is asked again.
    fetched = client_for(index_settings, server.url, clock=later)
    assert fetched.latest("wtplain", None) == Version("1.5.0") and fetched.network_requests == 1
    server.stop()
    # ...and the page fetched then (stored for a day) replaced the expired parsed files.
    assert client_for(index_settings, server.url, clock=later).latest("wtplain", None) == Version("1.5.0")


@pytest.mark.parametrize("damage", ["garbage", "other parser", "bad rows", "fifo"])
def test_damaged_parsed_pages_fall_back_to_the_page_cache(
    static_index: StaticIndex, index_settings: MakeSettings, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import sqlite3

    settings = index_settings(static_index.url("json"))
    expected = client_for(index_settings, static_index.url("json")).files("wtfix")
    path = parsed_path(settings)
    if damage in ("garbage", "fifo"):
        for companion in path.parent.glob(path.name + "*"):
            companion.unlink()
        if damage == "garbage":
            path.write_bytes(b"not a database" * 100)
        else:
            os.mkfifo(path)
    else:
        with sqlite3.connect(path) as db:
            if damage == "other parser":
                db.execute("UPDATE parsed SET parser = 'older'")
            else:
                db.execute("UPDATE parsed SET files = '[[1, 2, 3]]'")
        db.close()
    with caplog.at_level(logging.WARNING):
        client = client_for(index_settings, static_index.url("json"))
        assert client.files("wtfix") == expected
        client.close()
    assert client.network_requests == 0  # the page cache still had the page
    assert not caplog.text  # a derived cache: nothing to tell the user
    if damage != "fifo":  # made anew, and read back by the next run
        again = client_for(index_settings, static_index.url("json"))
        assert again.files("wtfix") == expected
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM parsed").fetchone() == (1,)
        db.close()
