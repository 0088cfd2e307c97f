"""pytest plugin: real package index servers on 127.0.0.1 serving fixture distributions.

Two real servers, no mocks:

* **pypiserver** (PEP 503 HTML only) serves the projects in ``PYPISERVER_PROJECTS`` plus an
  sdist of every source folder under ``tests/fixtures/packages/`` (so end-to-end tests can
  ``pip wheel`` them). It is started with ``--disable-fallback``: by default pypiserver
  *redirects* an unknown project to the public index instead of answering 404.
* a **static simple index** (the kind many companies publish from a web server) served by
  ``http.server``, because pypiserver 2.4 has neither yanking (PEP 592) nor
  ``data-requires-python`` nor the JSON API (PEP 691). The same project pages are written
  three ways: ``/json/simple/`` (JSON only), ``/html/simple/`` (HTML only) and
  ``/both/simple/`` (both, chosen by the ``Accept`` header, as PEP 691 describes).

Load it with ``pytest_plugins = ["tests.fixtures_index"]`` in the top conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.utils import canonicalize_name

from wheeltasks.settings import Settings

PACKAGES_SRC = Path(__file__).parent / "fixtures" / "packages"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class FixtureFile:
    """One distribution file: kind ("sdist"/"wheel"), version, Requires-Python, yanked, and a
    wheel's tag (a wheel of another tag than py3-none-any holds only the pure module: it is
    the index's evidence of how a module's wheels come out, never installed)."""

    kind: str
    version: str
    requires_python: str | None = None
    yanked: bool | str = False  # a str is the PEP 592 reason
    tag: str = "py3-none-any"


# Served by the static index. Newest installable version per Python (see test_index.py):
# any → 1.4.0, 3.14 → 1.4.0, 3.13 → 1.4.0 (wheel >=3.13.1 via the newest-patch rule),
# 3.13.0 → 1.3.0, 3.12 → 1.2.0 (1.3.0's only unrestricted file is yanked), 3.11 → 1.1.0,
# 3.7 → 1.0.0; 2.0.0 is yanked (every file), 2.1.0rc1 is a pre-release.
WTFIX = (
    FixtureFile("sdist", "1.0.0"),
    FixtureFile("wheel", "1.0.0"),
    FixtureFile("sdist", "1.1.0", ">=3.8"),
    FixtureFile("wheel", "1.1.0", ">=3.8"),
    FixtureFile("sdist", "1.2.0", ">=3.12"),
    FixtureFile("wheel", "1.2.0", ">=3.12"),
    FixtureFile("sdist", "1.3.0", None, "broken sdist"),
    FixtureFile("wheel", "1.3.0", ">=3.13"),
    FixtureFile("sdist", "1.4.0", ">=3.14"),
    FixtureFile("wheel", "1.4.0", ">=3.13.1"),
    FixtureFile("sdist", "2.0.0", None, "do not use"),
    FixtureFile("wheel", "2.0.0", None, True),
    FixtureFile("sdist", "2.1.0rc1"),
)
# Many small projects on the static index, for concurrent look-ups: wtbulk<N> → 1.<N>.0.
BULK_COUNT = 12
STATIC_PROJECTS: dict[str, tuple[FixtureFile, ...]] = {
    "wtfix": WTFIX,
    # Nothing installable on Python 3.12: the final release needs 3.13, the other is a pre-release.
    "wtnew": (FixtureFile("sdist", "1.0.0", ">=3.13"), FixtureFile("sdist", "2.0.0a1")),
    **{f"wtbulk{n}": (FixtureFile("sdist", "1.0.0"), FixtureFile("sdist", f"1.{n}.0")) for n in range(BULK_COUNT)},
}
# Served by pypiserver (which knows nothing of Requires-Python or yanking).
# `WT_Fix.Name` keeps its unnormalised name in the sdist filenames (as legacy sdists do).
PYPISERVER_PROJECTS: dict[str, tuple[FixtureFile, ...]] = {
    "WT_Fix.Name": (FixtureFile("sdist", "0.1.0"), FixtureFile("sdist", "0.2.0"), FixtureFile("wheel", "0.3.0")),
    "wtplain": (
        FixtureFile("sdist", "1.0.0"),
        FixtureFile("sdist", "1.5.0"),
        FixtureFile("wheel", "1.5.0"),
        FixtureFile("sdist", "2.0.0b1"),
    ),
    # For the build-once tests (test_sources_e2e.py): the index's wheels of older releases
    # say how a module's wheels come out. wtpure 1.1.0 (an sdist) is pure as 1.0.0 was;
    # wtabi 1.0.0 (tests/fixtures/packages/) is abi3 as 0.9.0 was; wtturn 2.0.0 (ditto)
    # compiles a C extension although 1.0.0 was pure.
    "wtpure": (FixtureFile("wheel", "1.0.0"), FixtureFile("sdist", "1.1.0")),
    "wtabi": (FixtureFile("wheel", "0.9.0", tag="cp311-abi3-musllinux_1_2_riscv64"),),
    "wtturn": (FixtureFile("wheel", "1.0.0"),),
}


# ---- writing distributions ---------------------------------------------------------------


def _module_name(project: str) -> str:
    return canonicalize_name(project).replace("-", "_")


def _metadata(project: str, version: str, requires_python: str | None) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {project}", f"Version: {version}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    return "\n".join(lines) + "\n\n"


def _pyproject(project: str, version: str, requires_python: str | None) -> str:
    requires = f'requires-python = "{requires_python}"\n' if requires_python else ""
    return (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{project}"\nversion = "{version}"\n{requires}'
        f'\n[tool.setuptools]\npy-modules = ["{_module_name(project)}"]\n'
    )


def write_sdist(dest: Path, project: str, version: str, requires_python: str | None = None) -> Path:
    """A buildable sdist (PKG-INFO, pyproject.toml, one module) named ``<project>-<version>.tar.gz``."""
    top = f"{project}-{version}"
    members = {
        "PKG-INFO": _metadata(project, version, requires_python),
        "pyproject.toml": _pyproject(project, version, requires_python),
        f"{_module_name(project)}.py": f'__version__ = "{version}"\n',
    }
    path = dest / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(
    dest: Path, project: str, version: str, requires_python: str | None = None, tag: str = "py3-none-any"
) -> Path:
    """A valid wheel of one Python module (module, METADATA, WHEEL, RECORD) tagged ``tag``."""
    stem = f"{_module_name(project)}-{version}"
    info = f"{stem}.dist-info"
    files = {
        f"{_module_name(project)}.py": f'__version__ = "{version}"\n'.encode(),
        f"{info}/METADATA": _metadata(project, version, requires_python).encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: wheeltasks-tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = dest / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
    return path


def write_file(dest: Path, project: str, spec: FixtureFile) -> Path:
    if spec.kind == "wheel":
        return write_wheel(dest, project, spec.version, spec.requires_python, spec.tag)
    return write_sdist(dest, project, spec.version, spec.requires_python)


def build_source_packages(src_root: Path, dest: Path, work: Path) -> list[Path]:
    """``python -m build --sdist`` every folder under tests/fixtures/packages/ into dest.

    Built from a copy so the source tree stays clean; no isolation, so no index is needed.
    """
    built: list[Path] = []
    if not src_root.is_dir():
        return built
    for src in sorted(p for p in src_root.iterdir() if p.is_dir()):
        if not ((src / "pyproject.toml").exists() or (src / "setup.py").exists()):
            continue
        copy = work / src.name
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__"))
        before = set(dest.iterdir())
        cmd = [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(dest), str(copy)]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"building fixture package {src.name} failed:\n{result.stdout}\n{result.stderr}")
        built.extend(sorted(set(dest.iterdir()) - before))
    return built


# Real build back-ends, so the fixture packages build the default way (isolated), as they
# would from any real index: fetched once from the public index into pip's own cache.
BUILD_BACKENDS = ("setuptools", "wheel", "packaging")  # wheel needs packaging


# Real sdists from the public index, served here too: a job that builds natively in a
# foreign builder (linux/386 on this x86_64 engine) fetches its sdist inside that builder,
# whose root has no TLS (tests/fixtures/builders/build.sh); the index on 127.0.0.1 needs none.
PUBLIC_SDISTS = ("psutil==7.2.2",)


def add_build_backends(dest: Path) -> list[Path]:
    before = set(dest.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
           "--python-version", "3.11", "--dest", str(dest), *BUILD_BACKENDS]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"fetching {' '.join(BUILD_BACKENDS)} for the fixture index failed:\n{result.stderr}")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary=:all:", "--no-deps", "--dest", str(dest),
           *PUBLIC_SDISTS]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"fetching {' '.join(PUBLIC_SDISTS)} for the fixture index failed:\n{result.stderr}")
    return sorted(set(dest.iterdir()) - before)


# ---- the static index --------------------------------------------------------------------


def _html_page(project: str, files: list[tuple[str, FixtureFile]]) -> str:
    anchors = []
    for filename, spec in files:
        attrs = f'href="../../../files/{filename}"'
        if spec.requires_python:
            attrs += f' data-requires-python="{html.escape(spec.requires_python)}"'
        if spec.yanked is True:
            attrs += " data-yanked"
        elif spec.yanked:
            attrs += f' data-yanked="{html.escape(str(spec.yanked))}"'
        anchors.append(f"    <a {attrs}>{html.escape(filename)}</a><br>")
    body = "\n".join(anchors)
    return f"<!DOCTYPE html>\n<html>\n  <body>\n    <h1>Links for {project}</h1>\n{body}\n  </body>\n</html>\n"


def _json_page(project: str, files: list[tuple[str, FixtureFile]]) -> str:
    entries: list[dict[str, Any]] = [
        {
            "filename": filename,
            "url": f"../../../files/{filename}",
            "hashes": {},
            "requires-python": spec.requires_python,
            "yanked": spec.yanked,
        }
        for filename, spec in files
    ]
    return json.dumps({"meta": {"api-version": "1.0"}, "name": project, "files": entries}, indent=1)


def write_static_index(root: Path, projects: dict[str, tuple[FixtureFile, ...]]) -> None:
    files_dir = root / "files"
    files_dir.mkdir(parents=True)
    for project, specs in projects.items():
        files = [(write_file(files_dir, project, spec).name, spec) for spec in specs]
        pages = {"index.html": _html_page(project, files), "index.json": _json_page(project, files)}
        layouts = {"both": ("index.html", "index.json"), "html": ("index.html",), "json": ("index.json",)}
        for layout, names in layouts.items():
            folder = root / layout / "simple" / canonicalize_name(project)
            folder.mkdir(parents=True)
            for name in names:
                (folder / name).write_text(pages[name], encoding="utf-8")


class _SimpleIndexHandler(SimpleHTTPRequestHandler):
    """Serves a project folder's index.json or index.html by the Accept header (PEP 691)."""

    failing: set[str]  # path prefixes answered with 503, set per server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if any(path.startswith(prefix) for prefix in self.failing):
            self.send_error(503, "failing on purpose")
            return
        folder = Path(self.translate_path(path))
        if path.endswith("/") and folder.is_dir():
            page = self._choose(folder)
            if page is not None:
                self._send(*page)
                return
        super().do_GET()

    def _choose(self, folder: Path) -> tuple[bytes, str] | None:
        wants_json = "json" in self.headers.get("Accept", "")
        as_json, as_html = folder / "index.json", folder / "index.html"
        if as_json.exists() and (wants_json or not as_html.exists()):
            return as_json.read_bytes(), JSON_TYPE
        if as_html.exists():
            return as_html.read_bytes(), "text/html; charset=utf-8" if not as_json.exists() else HTML_TYPE
        return None

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class StaticIndex:
    """A static simple index on 127.0.0.1; ``url(layout)`` is ``http://…/<layout>/simple/``."""

    root: Path
    server: ThreadingHTTPServer
    failing: set[str] = field(default_factory=set)

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def url(self, layout: str = "both") -> str:
        return f"{self.base}{layout}/simple/"

    def fail(self, layout: str) -> None:
        """Answer 503 for every page of the layout until `recover`."""
        self.failing.add(f"/{layout}/")

    def recover(self, layout: str) -> None:
        self.failing.discard(f"/{layout}/")


def start_static_index(root: Path) -> StaticIndex:
    failing: set[str] = set()
    handler = type("Handler", (_SimpleIndexHandler,), {"failing": failing})

    def make_handler(*args: Any, **kwargs: Any) -> SimpleHTTPRequestHandler:
        return handler(*args, directory=str(root), **kwargs)  # type: ignore[no-any-return]

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return StaticIndex(root, server, failing)


# ---- pypiserver --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (free a moment ago), for what an unreachable index or
    registry does. Such a test reaches the loopback network: conftest marks it ``services``."""
    return free_port()


class PypiServer:
    """A pypiserver subprocess on 127.0.0.1 that can be stopped and started again (same port)."""

    def __init__(self, packages: Path, log_file: Path, port: int | None = None) -> None:
        self.packages = packages
        self.log_file = log_file
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def start(self, timeout: float = 30.0) -> None:
        if self.process is not None:
            return
        cmd = [
            sys.executable, "-m", "pypiserver", "run", "-p", str(self.port), "-i", "127.0.0.1",
            "--disable-fallback", "--backend", "simple-dir", str(self.packages),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self._wait_up(timeout)

    def _wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"pypiserver exited:\n{self.log_file.read_text(errors='replace')}")
            try:
                if requests.get(self.url, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pypiserver did not answer within {timeout} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


# ---- fixtures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FixtureDists:
    packages: Path  # what pypiserver serves
    static_root: Path  # what the static index serves
    source_packages: tuple[Path, ...]  # sdists built from tests/fixtures/packages/*


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: needs the public package index (deselect with -m 'not network')")


@pytest.fixture(scope="session")
def fixture_dists(tmp_path_factory: pytest.TempPathFactory) -> FixtureDists:
    base = tmp_path_factory.mktemp("index-fixtures")
    packages = base / "packages"
    packages.mkdir()
    for project, specs in PYPISERVER_PROJECTS.items():
        for spec in specs:
            write_file(packages, project, spec)
    built = build_source_packages(PACKAGES_SRC, packages, base / "build")
    add_build_backends(packages)
    write_static_index(base / "static", STATIC_PROJECTS)
    return FixtureDists(packages, base / "static", tuple(built))


@pytest.fixture(scope="session")
def pypiserver_process(fixture_dists: FixtureDists, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PypiServer]:
    """The shared pypiserver. Tests that stop it must use `make_index_server` instead."""
    server = PypiServer(fixture_dists.packages, tmp_path_factory.mktemp("pypiserver") / "log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def index_server(pypiserver_process: PypiServer) -> str:
    """The simple URL of the shared pypiserver: ``http://127.0.0.1:<port>/simple/``."""
    return pypiserver_process.url


@pytest.fixture
def make_index_server(fixture_dists: FixtureDists, tmp_path: Path) -> Iterator[Callable[[], PypiServer]]:
    """Start a private pypiserver the test may stop and restart (`.stop()`, `.start()`)."""
    servers: list[PypiServer] = []

    def make() -> PypiServer:
        server = PypiServer(fixture_dists.packages, tmp_path / f"pypiserver-{len(servers)}.log")
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def static_index(fixture_dists: FixtureDists) -> Iterator[StaticIndex]:
    index = start_static_index(fixture_dists.static_root)
    yield index
    index.server.shutdown()
    index.server.server_close()


@pytest.fixture
def index_settings(tmp_path: Path) -> Callable[..., Settings]:
    """``index_settings(url, **flags)``: Settings for `url` with a cache folder of this test only."""

    def make(index_url: str | None, **flags: Any) -> Settings:
        env = {"HOME": str(tmp_path), "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache")}
        for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        if index_url is not None:
            env["PYPI_INDEX"] = index_url
        return Settings.load(config={}, env=env, flags=flags)

    return make
