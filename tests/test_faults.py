"""Bad servers and bad local state: secrets stay out of files, the cache is never poisoned,
every remote operation ends by its deadline and within its size limits, and each fault is
one line (the project's error types), never a traceback.

The index side runs against the real pypiserver where it can show the fault (redirects)
and against the fault servers of tests/fault_servers.py where it cannot (see there why).
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.version import Version

from tests import fault_servers as faults
from tests.fault_servers import FaultServer
from tests.fixtures_index import PypiServer
from tests.helpers import stop_and_time
from wheeltasks.errors import RemoteError, WheelTasksError
from wheeltasks.index import IndexClient
from wheeltasks.indexcache import CACHE_FILE, cache_path, clear_cache, parsed_path
from wheeltasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MakeSettings = Callable[..., Settings]
USER, PASSWORD = "alice", "Sup3r-s3cret-index-pw"
SECRETS = (PASSWORD.encode(), base64.b64encode(f"{USER}:{PASSWORD}".encode()))
# Small bounds keep every fault test fast: 1 s deadlines, 1 MiB pages.
QUICK = {"remote_timeout": 1.0, "max_index_page_mb": 1}
LATE = 2.5  # seconds: a 1 s deadline plus generous slack for a loaded machine


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def cache_bytes(settings: Settings) -> bytes:
    return b"".join(p.read_bytes() for p in settings.cache_dir.rglob("*") if p.is_file())


def timed(fault_server: FaultServer, fn: Callable[[], Any]) -> tuple[float, Any]:
    """``fn()``'s result (or the project error it raised), and the seconds from its first
    request to the server (from the call, when it made none) to its end."""
    mark, started = fault_server.mark(), time.monotonic()
    try:
        result: Any = fn()
    except WheelTasksError as exc:
        result = exc
    return fault_server.seconds_since(mark, started), result


# ---- secrets never reach the cache ---------------------------------------------------------


def test_redirect_on_pypiserver_keeps_credentials_out_of_the_cache(
    make_index_server: Callable[[], PypiServer], index_settings: MakeSettings
) -> None:
    pypi = make_index_server()
    root = pypi.url.removesuffix("simple/")
    # The real pypiserver redirects /<project>/ to /simple/<project>/ (303).
    assert requests.get(f"{root}wtplain/", allow_redirects=False, timeout=10).status_code == 303
    settings = index_settings(root.replace("http://", f"http://{USER}:{PASSWORD}@"))
    client = IndexClient(settings)
    assert client.latest("wtplain", None) == Version("1.5.0")
    client.close()
    stored = cache_bytes(settings)
    assert stored  # the page was cached...
    for secret in SECRETS:
        assert secret not in stored  # ...and nothing of the credentials with it


def test_redirect_to_a_page_that_needs_the_credentials(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    # Proves the credentials really travelled (the page answers 401 without them), so
    # their absence from the cache means something.
    fault_server.route("/old/", faults.redirect("/new/wtfault/"))
    fault_server.route("/new/", faults.basic_auth_required(USER, PASSWORD, faults.json_page("wtfault")))
    settings = index_settings(fault_server.url("/old/").replace("http://", f"http://{USER}:{PASSWORD}@"))
    assert IndexClient(settings).latest("wtfault", None) == Version("1.1.0")
    assert fault_server.requested("/new/")[0].headers["Authorization"] == "Basic " + SECRETS[1].decode()
    for secret in SECRETS:
        assert secret not in cache_bytes(settings)


def test_cache_folder_and_files_are_private(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    IndexClient(settings).latest("wtfault", None)
    assert stat.S_IMODE(settings.cache_dir.stat().st_mode) == 0o700
    files = sorted(settings.cache_dir.iterdir())
    assert cache_path(settings) in files and parsed_path(settings) in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_world_readable_cache_is_made_private(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    IndexClient(settings).latest("wtfault", None)
    for path in (cache_path(settings), parsed_path(settings)):
        path.chmod(0o644)
    IndexClient(settings, expire_after=0).latest("wtfault", None)  # reads the cache first
    assert stat.S_IMODE(cache_path(settings).stat().st_mode) == 0o600
    assert stat.S_IMODE(parsed_path(settings).stat().st_mode) == 0o600


def test_the_cache_is_made_only_when_a_page_is_stored(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    """A run that stops before a look-up, or whose look-ups fail, writes no cache file."""
    fault_server.route("/simple/", faults.status(404))
    settings = index_settings(fault_server.url("/simple/"))
    client = IndexClient(settings)
    with pytest.raises(WheelTasksError, match="not found"):
        client.latest("wtfault", None)
    client.close()
    assert not settings.cache_dir.exists()


def test_cache_from_an_older_version_with_redirect_history_is_dropped(
    fault_server: FaultServer, index_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # requests-cache's CachedSession stored a redirect's first request, headers included.
    from requests_cache import CachedSession
    from requests_cache.backends.sqlite import SQLiteCache

    fault_server.route("/old/", faults.redirect("/simple/wtfault/"))
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    settings.cache_dir.mkdir(parents=True)
    old = CachedSession(backend=SQLiteCache(cache_path(settings)))
    old.get(fault_server.url("/old/"), auth=(USER, PASSWORD), timeout=10)
    old.close()
    assert SECRETS[1] in cache_bytes(settings)
    with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
        IndexClient(settings).latest("wtfault", None)
    assert "written by an older wheeltasks" in caplog.text
    for secret in SECRETS:
        assert secret not in cache_bytes(settings)


# ---- no poisoned cache ---------------------------------------------------------------------


def _faulty(fault_server: FaultServer, kind: str) -> faults.Behaviour:
    return {
        "malformed JSON": faults.answer('{"meta": {"api-version": "1.0"}, "files": [', faults.JSON_TYPE),
        "deeply nested JSON": faults.answer("[" * 100_000, faults.JSON_TYPE),
        "JSON list": faults.json_answer([{"filename": "wtfault-9.0.tar.gz"}], faults.JSON_TYPE),
        "files of the wrong type": faults.json_answer({"meta": {}, "files": {"a": 1}}, faults.JSON_TYPE),
        "API version 2": faults.json_answer({"meta": {"api-version": "2.0"}, "files": []}, faults.JSON_TYPE),
        "garbage HTML": faults.answer("<html><body>Please log in to the proxy</body></html>", "text/html"),
        "binary garbage": faults.answer(bytes(range(256)) * 4, "application/octet-stream"),
        "redirect loop": faults.redirect("/simple/wtfault/", 302),
        "redirect to file:": faults.redirect("file:///etc/passwd", 302),
        "redirect to a broken URL": faults.redirect("http://[::1/simple/wtfault/", 302),
        "redirect to a port out of range": faults.redirect("http://127.0.0.1:99999/simple/wtfault/", 302),
        "429": faults.status(429, Retry_After="3600"),
        "503": faults.status(503, Retry_After="1"),
        "hang": faults.hang(fault_server),
        "drip": faults.drip(fault_server, 0.2),
        "drip in the headers": faults.drip(fault_server, 0.2, headers_too=True),
        "200 MB page": faults.huge(200 * 1024 * 1024, "wtfault"),
    }[kind]


FAULTS = (
    "malformed JSON", "deeply nested JSON", "JSON list", "files of the wrong type", "API version 2", "garbage HTML", "binary garbage",
    "redirect loop", "redirect to file:", "redirect to a broken URL", "redirect to a port out of range",
    "429", "503", "hang", "drip", "drip in the headers", "200 MB page",
)  # fmt: skip


@pytest.mark.parametrize("kind", FAULTS)
def test_a_bad_answer_never_replaces_the_cached_page(
    fault_server: FaultServer, index_settings: MakeSettings, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"), **QUICK)
    assert IndexClient(settings, expire_after=0).latest("wtfault", None) == Version("1.1.0")
    fault_server.route("/simple/", _faulty(fault_server, kind))
    for _ in range(2):  # the second run proves the first did not overwrite the good copy
        client = IndexClient(settings, expire_after=0)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
            seconds, found = timed(fault_server, lambda: client.latest("wtfault", None))  # noqa: B023
        assert found == Version("1.1.0")
        assert seconds < LATE
        (warning,) = [r.getMessage() for r in caplog.records]
        assert " for wtfault (" in warning and "; using the cached answer from" in warning
        assert "\n" not in warning
    assert client.network_requests >= 1


@pytest.mark.parametrize("kind", FAULTS)
def test_a_bad_answer_with_nothing_cached_is_one_line(
    fault_server: FaultServer, index_settings: MakeSettings, kind: str
) -> None:
    fault_server.route("/simple/", _faulty(fault_server, kind))
    settings = index_settings(fault_server.url("/simple/"), **QUICK)
    client = IndexClient(settings)
    seconds, error = timed(fault_server, lambda: client.latest("wtfault", None))
    assert isinstance(error, RemoteError), error
    assert error.exit_code == 4
    assert seconds < LATE
    message = one_line(error)
    index = fault_server.url("/simple/")
    assert message.startswith((f"could not reach the package index {index} for wtfault (",
                               f"the package index {index} sent an unusable page for wtfault ("))
    assert not list(settings.cache_dir.glob("*.part"))
    # ...and nothing of it was cached: a good answer later is taken at once.
    fault_server.route("/simple/", faults.json_page("wtfault"))
    assert IndexClient(settings).latest("wtfault", None) == Version("1.1.0")


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("hang", r"no complete answer within 1 s \(REMOTE_TIMEOUT\)"),
        ("drip", r"no complete answer within 1 s"),
        ("drip in the headers", r"no complete answer within 1 s"),
        ("200 MB page", r"sent an unusable page for wtfault \(larger than 1 MiB, MAX_INDEX_PAGE_MB\)"),
        ("429", r"could not reach .* \(HTTP 429\)"),
        ("malformed JSON", r"sent an unusable page for wtfault \(not JSON: "),
        ("JSON list", r"\(JSON list, not an object\) and nothing is cached: check that PYPI_INDEX is a PEP 503/691"),
        ("files of the wrong type", r"'files' is a JSON dict, not a list"),
        ("garbage HTML", r"an HTML page listing no file of wtfault"),
        ("redirect to file:", r"sent an unusable page for wtfault \(a redirect to a URL that cannot be followed: it is not "
                              r"an http\(s\) URL with a host\) and nothing is cached"),
        ("redirect to a broken URL", r"a redirect to a URL that cannot be followed: it cannot be parsed \(Invalid IPv6 URL\)"),
    ],
)
def test_the_reason_is_named(fault_server: FaultServer, index_settings: MakeSettings, kind: str, reason: str) -> None:
    fault_server.route("/simple/", _faulty(fault_server, kind))
    with pytest.raises(RemoteError, match=reason):
        IndexClient(index_settings(fault_server.url("/simple/"), **QUICK)).latest("wtfault", None)


def test_a_huge_page_is_not_held_in_memory(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.huge(200 * 1024 * 1024, "wtfault"))
    client = IndexClient(index_settings(fault_server.url("/simple/"), remote_timeout=30.0, max_index_page_mb=4))
    tracemalloc.start()
    try:
        _, error = timed(fault_server, lambda: client.latest("wtfault", None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(error, RemoteError) and "larger than 4 MiB" in str(error)
    assert peak < 16 * 1024 * 1024  # the 200 MB page took 4.6 GB before


def test_odd_entries_in_a_json_page_are_skipped(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    files: list[Any] = [
        "not an object", {"no": "filename"}, {"filename": 42}, {"filename": "wtfault-1.0.0.tar.gz"},
        {"filename": "wtfault-2.0.0.tar.gz", "requires-python": [">=3"], "yanked": {"odd": 1}},
        {"filename": "wtfault-3.0.0.tar.gz", "requires-python": ">=3.99"},
    ]  # fmt: skip
    fault_server.route("/simple/", faults.json_answer({"meta": {"api-version": "1.0"}, "files": files}, faults.JSON_TYPE))
    client = IndexClient(index_settings(fault_server.url("/simple/"), **QUICK))
    assert [str(r.version) for r in client.releases("wtfault")] == ["1.0.0", "2.0.0", "3.0.0"]
    # 2.0.0's odd values count as absent: unrestricted and not yanked (only true or a reason yanks).
    assert client.latest("wtfault", "3.12") == Version("2.0.0")


def test_many_hanging_lookups_end_together_at_the_deadline(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.hang(fault_server))
    client = IndexClient(index_settings(fault_server.url("/simple/"), **QUICK))
    seconds, error = timed(fault_server, lambda: client.latest_many([f"wtfault{n}" for n in range(12)], None))
    assert isinstance(error, RemoteError) and seconds < LATE


# ---- a broken cache folder -----------------------------------------------------------------


def test_cache_dir_that_is_a_file(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    settings.cache_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.write_text("in the way")
    with pytest.raises(WheelTasksError, match=r"is not a folder .*remove that file, or set WHEELTASKS_CACHE_DIR") as caught:
        IndexClient(settings).latest("wtfault", None)
    assert caught.value.exit_code == 2
    one_line(caught.value)
    assert clear_cache(settings) == []  # nothing to clear there, and no traceback either


def test_cache_file_that_is_a_folder(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    cache_path(settings).mkdir(parents=True)
    with pytest.raises(WheelTasksError, match=r"cannot write the index cache .*remove what is in the way") as caught:
        IndexClient(settings).latest("wtfault", None)
    one_line(caught.value)


def test_cache_file_that_is_a_fifo(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    settings.cache_dir.mkdir(parents=True)
    os.mkfifo(cache_path(settings))
    seconds, error = timed(fault_server, lambda: IndexClient(settings).latest("wtfault", None))
    assert isinstance(error, WheelTasksError) and error.exit_code == 2 and seconds < LATE
    assert "is not a regular file" in one_line(error)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Make a folder unwritable even for root (the tests run as root): ``chattr +i``."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o500)
        else:
            subprocess.run(["chattr", "+i", str(folder)], check=True)
        made.append(folder)

    yield make
    for folder in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o700)


def test_unwritable_cache_dir(fault_server: FaultServer, index_settings: MakeSettings, immutable: Callable[[Path], None]) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    settings.cache_dir.mkdir(parents=True)
    immutable(settings.cache_dir)
    with pytest.raises(WheelTasksError, match=rf"cannot write the index cache {cache_path(settings)} .*make .* writable") as caught:
        IndexClient(settings).latest("wtfault", None)
    assert caught.value.exit_code == 2
    one_line(caught.value)


@pytest.mark.parametrize("content", [b"not a database at all", bytes(range(256)) * 16], ids=["text", "binary"])
def test_cache_file_that_is_not_sqlite_is_moved_aside(
    fault_server: FaultServer, index_settings: MakeSettings, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"))
    settings.cache_dir.mkdir(parents=True)
    cache_path(settings).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="wheeltasks.index"):
        assert IndexClient(settings).latest("wtfault", None) == Version("1.1.0")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "was not a SQLite database" in warning and "moved it to" in warning
    aside = cache_path(settings).with_name(CACHE_FILE + ".corrupt")
    assert aside.read_bytes() == content
    assert aside in clear_cache(settings)  # `clean-cache` removes the copy too


# ---- Ctrl-C --------------------------------------------------------------------------------


STOPS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped by SIGTERM"),
         (signal.SIGHUP, 129, "stopped by SIGHUP")]


@pytest.mark.parametrize(("signum", "code", "said"), STOPS, ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_during_a_hanging_lookup_exits_at_once(
    fault_server: FaultServer, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    if signal.getsignal(signum) is signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(signum).name} is ignored here (nohup?), and so in the command too")
    fault_server.route("/simple/", faults.hang(fault_server))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_", "PIP_INDEX", "WHEELS_", "REMOTE_"))}
    env.update(
        PYPI_INDEX=fault_server.url("/simple/"), WHEELTASKS_CACHE_DIR=str(tmp_path / "cache"), PYTHON_VERSIONS="3.12",
        REMOTE_TIMEOUT="120", HOME=str(tmp_path),
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "wheeltasks", "resolve", "wtfault"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert fault_server.wait_for("/simple/wtfault/", timeout=60), "the look-up never started"
        time.sleep(0.2)  # well inside the request
        seconds, out, err = stop_and_time(process, signum)  # from the signal to the exit
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    assert seconds < 2.0
    assert err.strip() == f"wheeltasks: {said}" and out == ""
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]


# ---- the deadline applies to the whole operation -------------------------------------------


def test_a_slow_page_within_the_deadline_is_read(fault_server: FaultServer, index_settings: MakeSettings) -> None:
    fault_server.route("/simple/", faults.json_page("wtfault"))
    settings = index_settings(fault_server.url("/simple/"), remote_timeout=5.0)
    assert IndexClient(settings, expire_after=timedelta(hours=1)).latest("wtfault", None) == Version("1.1.0")
