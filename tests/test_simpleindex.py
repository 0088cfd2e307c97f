"""inv index: the static simple index of wheels/ (PEP 503, 691, 658/714), its pages, its
atomic replacement, and real pip installing from it over HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import make_settings, make_wheel
from wheeltasks import simpleindex
from wheeltasks.errors import WheelTasksError
from wheeltasks.simpleindex import FIND_LINKS, MARKER, Listed, write_index

# ---- wheels -------------------------------------------------------------------------------

ZIP_TIME = (2024, 5, 6, 7, 8, 10)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def tagged_wheel(folder: Path, project: str, version: str, tag: str = "py3-none-any",
                 requires_python: str | None = None, requires: tuple[str, ...] = ()) -> Path:
    """A complete wheel pip installs (METADATA, WHEEL, RECORD with hashes), fixed zip times."""
    folder.mkdir(parents=True, exist_ok=True)
    module = canonicalize_name(project).replace("-", "_")
    info = f"{module}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {project}", f"Version: {version}"]
    meta += [f"Requires-Python: {requires_python}"] if requires_python else []
    meta += [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": ("\n".join(meta) + "\n\n").encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, ZIP_TIME), data)
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def listed(name: str = "wt_a-1.0-py3-none-any.whl", requires_python: str | None = "<4,>=3.8",
           metadata: str | None = "m" * 64, version: str = "1.0") -> Listed:
    return Listed(name, canonicalize_name("wt-a"), Version(version), name, f"wt-a/{name}", "f" * 64, 42,
                  requires_python, metadata)


# ---- the pages ----------------------------------------------------------------------------


def test_project_html_page_is_pep_503_with_hashes_requires_python_and_metadata() -> None:
    page = simpleindex.project_html("wt-a", [listed("wt_a-2.0-py3-none-any.whl", version="2.0"), listed()])
    assert page == (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.1">\n'
        "    <title>Links for wt-a</title>\n  </head>\n  <body>\n    <h1>Links for wt-a</h1>\n"
        f'    <a href="wt_a-1.0-py3-none-any.whl#sha256={"f" * 64}" data-requires-python="&lt;4,&gt;=3.8" '
        f'data-dist-info-metadata="sha256={"m" * 64}" data-core-metadata="sha256={"m" * 64}">'
        "wt_a-1.0-py3-none-any.whl</a><br>\n"
        f'    <a href="wt_a-2.0-py3-none-any.whl#sha256={"f" * 64}" data-requires-python="&lt;4,&gt;=3.8" '
        f'data-dist-info-metadata="sha256={"m" * 64}" data-core-metadata="sha256={"m" * 64}">'
        "wt_a-2.0-py3-none-any.whl</a><br>\n"
        "  </body>\n</html>\n"
    )


def test_a_file_without_requires_python_or_metadata_has_no_such_attributes() -> None:
    page = simpleindex.project_html("wt-a", [listed(requires_python=None, metadata=None)])
    assert f'<a href="wt_a-1.0-py3-none-any.whl#sha256={"f" * 64}">wt_a-1.0-py3-none-any.whl</a>' in page
    data = json.loads(simpleindex.project_json("wt-a", [listed(requires_python=None, metadata=None)]))
    assert data["files"][0]["requires-python"] is None
    assert data["files"][0]["core-metadata"] is False and data["files"][0]["dist-info-metadata"] is False


def test_project_json_page_is_pep_691_api_1_1() -> None:
    data = json.loads(simpleindex.project_json("wt-a", [listed("wt_a-2.0-py3-none-any.whl", version="2.0"), listed()]))
    assert data["meta"] == {"api-version": "1.1"}
    assert data["name"] == "wt-a" and data["versions"] == ["1.0", "2.0"]
    assert data["files"][0] == {
        "filename": "wt_a-1.0-py3-none-any.whl",
        "url": "wt_a-1.0-py3-none-any.whl",
        "hashes": {"sha256": "f" * 64},
        "requires-python": "<4,>=3.8",
        "size": 42,
        "yanked": False,
        "core-metadata": {"sha256": "m" * 64},
        "dist-info-metadata": {"sha256": "m" * 64},
    }


def test_project_lists_are_sorted_and_link_the_normalized_folders() -> None:
    assert '<a href="a/">a</a><br>\n    <a href="b-c/">b-c</a><br>' in simpleindex.root_html(["b-c", "a"])
    assert json.loads(simpleindex.root_json(["b-c", "a"])) == {
        "meta": {"api-version": "1.1"}, "projects": [{"name": "a"}, {"name": "b-c"}],
    }
    page = simpleindex.find_links_html([listed()])
    assert f'href="wt-a/wt_a-1.0-py3-none-any.whl#sha256={"f" * 64}"' in page


# ---- writing ------------------------------------------------------------------------------


def some_wheels(wheels: Path) -> None:
    tagged_wheel(wheels / "amd64", "WT.App", "1.0", requires_python=">=3.8", requires=("wtlib>=1",))
    tagged_wheel(wheels / "arm64v8", "WT.App", "1.0", requires_python=">=3.8", requires=("wtlib>=1",))  # same file
    tagged_wheel(wheels / "amd64", "wtnative", "1.0", "cp311-cp311-musllinux_1_2_x86_64")
    tagged_wheel(wheels / "arm64v8", "wtnative", "1.0", "cp311-cp311-musllinux_1_2_aarch64")


def test_the_index_holds_pages_metadata_and_the_wheels(tmp_path: Path) -> None:
    some_wheels(tmp_path / "wheels")
    written = write_index(make_settings(tmp_path))
    index = tmp_path / "index"
    assert (written.folder, written.projects, written.files) == (index, 2, 3)
    assert sorted(tree(index)) == [
        MARKER, FIND_LINKS, "index.html", "index.json",
        "wt-app/index.html", "wt-app/index.json", "wt-app/wt_app-1.0-py3-none-any.whl",
        "wt-app/wt_app-1.0-py3-none-any.whl.metadata",
        "wtnative/index.html", "wtnative/index.json",
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl",
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl.metadata",
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_x86_64.whl.metadata",
    ]
    wheel = index / "wt-app" / "wt_app-1.0-py3-none-any.whl"
    source = tmp_path / "wheels" / "amd64" / wheel.name
    assert wheel.read_bytes() == source.read_bytes()
    assert os.stat(wheel).st_ino == os.stat(source).st_ino  # a hard link: no second copy
    with zipfile.ZipFile(wheel) as archive:
        assert (index / "wt-app" / f"{wheel.name}.metadata").read_bytes() == archive.read(
            "wt_app-1.0.dist-info/METADATA")
    page = json.loads((index / "wt-app" / "index.json").read_text())
    (entry,) = page["files"]
    assert entry["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert entry["requires-python"] == ">=3.8"
    assert entry["core-metadata"]["sha256"] == hashlib.sha256((index / "wt-app" / f"{wheel.name}.metadata")
                                                              .read_bytes()).hexdigest()
    # A static web server as another user must be able to read it all.
    assert (index.stat().st_mode & 0o777, (index / "wt-app").stat().st_mode & 0o005) == (0o755, 0o005)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".index")] == []


def test_the_same_wheels_give_byte_identical_index_files(tmp_path: Path) -> None:
    some_wheels(tmp_path / "one" / "wheels")
    shutil.copytree(tmp_path / "one" / "wheels", tmp_path / "two" / "wheels")  # other times, other inodes
    os.utime(tmp_path / "two" / "wheels" / "amd64" / "wt_app-1.0-py3-none-any.whl", (1, 1))
    write_index(make_settings(tmp_path / "one"))
    write_index(make_settings(tmp_path / "two"))
    write_index(make_settings(tmp_path / "two"))  # and again, over itself
    assert tree(tmp_path / "one" / "index") == tree(tmp_path / "two" / "index")


def test_with_a_base_url_the_pages_link_wheels_where_they_are(tmp_path: Path) -> None:
    some_wheels(tmp_path / "wheels")
    write_index(make_settings(tmp_path, index_base_url="https://files.example.org/wheels/"))
    index = tmp_path / "index"
    assert sorted(tree(index)) == [MARKER, FIND_LINKS, "index.html", "index.json", "wt-app/index.html",
                                   "wt-app/index.json", "wtnative/index.html", "wtnative/index.json"]
    page = json.loads((index / "wtnative" / "index.json").read_text())
    assert [f["url"] for f in page["files"]] == [
        "https://files.example.org/wheels/arm64v8/wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl",
        "https://files.example.org/wheels/amd64/wtnative-1.0-cp311-cp311-musllinux_1_2_x86_64.whl",
    ]
    assert all(f["core-metadata"] is False for f in page["files"])  # no .metadata beside those files
    html = (index / "wt-app" / "index.html").read_text()
    assert 'href="https://files.example.org/wheels/amd64/wt_app-1.0-py3-none-any.whl#sha256=' in html
    assert "data-core-metadata" not in html


def test_a_second_index_replaces_the_first_whole(tmp_path: Path) -> None:
    some_wheels(tmp_path / "wheels")
    write_index(make_settings(tmp_path))
    shutil.rmtree(tmp_path / "wheels")
    tagged_wheel(tmp_path / "wheels" / "i386", "wtother", "3.0", "cp311-cp311-musllinux_1_2_i686")
    write_index(make_settings(tmp_path))
    assert sorted(tree(tmp_path / "index")) == [
        MARKER, FIND_LINKS, "index.html", "index.json", "wtother/index.html", "wtother/index.json",
        "wtother/wtother-3.0-cp311-cp311-musllinux_1_2_i686.whl",
        "wtother/wtother-3.0-cp311-cp311-musllinux_1_2_i686.whl.metadata",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "wheels"]  # no staging folder left


def test_without_an_atomic_exchange_two_renames_replace_it(tmp_path: Path) -> None:
    """Where the system has no renameat2 (not Linux, or a file system without it)."""
    some_wheels(tmp_path / "wheels")
    write_index(make_settings(tmp_path))
    first = tree(tmp_path / "index")
    shutil.rmtree(tmp_path / "wheels" / "arm64v8")
    write_index(make_settings(tmp_path), exchange=lambda a, b: False)
    second = tree(tmp_path / "index")
    assert set(first) - set(second) == {
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl",
        "wtnative/wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl.metadata",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "wheels"]


def test_exchange_paths_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from-a").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from-b").write_text("b")
    if not simpleindex.exchange_paths(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this system or file system has no renameat2(RENAME_EXCHANGE)")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["from-b"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from-a"]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("folder", "is not a regular file"),
        ("not-a-zip", "is not a readable wheel"),
        ("no-metadata", "0 *.dist-info/METADATA files at its top, not one"),
        ("other-name", "its METADATA names wt-evil 1.0, not the wtbroken 1.0 of its file name"),
    ],
)
def test_a_broken_wheel_is_refused_and_the_old_index_stays(tmp_path: Path, bad: str, fragment: str) -> None:
    some_wheels(tmp_path / "wheels")
    write_index(make_settings(tmp_path))
    before = tree(tmp_path / "index")
    # Sorted after the good ones: the new index is half made when this one is met.
    path = tmp_path / "wheels" / "riscv64" / "wtbroken-1.0-py3-none-any.whl"
    path.parent.mkdir()
    if bad == "folder":
        path.mkdir()
    elif bad == "not-a-zip":
        path.write_bytes(b"PK\x03\x04 not really")
    elif bad == "no-metadata":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("wtbroken/__init__.py", "")
    else:
        shutil.copy(tagged_wheel(tmp_path / "elsewhere", "wt-evil", "1.0"), path)
    with pytest.raises(WheelTasksError, match=r"wtbroken-1\.0-py3-none-any\.whl") as caught:
        write_index(make_settings(tmp_path))
    assert fragment in str(caught.value)
    assert tree(tmp_path / "index") == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_one_name_with_two_contents_is_refused(tmp_path: Path) -> None:
    tagged_wheel(tmp_path / "wheels" / "amd64", "wtpure", "1.0")
    tagged_wheel(tmp_path / "wheels" / "armv7", "wtpure", "1.0", requires_python=">=3.9")
    with pytest.raises(WheelTasksError, match="have one name but different contents"):
        write_index(make_settings(tmp_path))
    assert not (tmp_path / "index").exists()


def test_a_folder_that_is_no_index_is_never_replaced(tmp_path: Path) -> None:
    some_wheels(tmp_path / "wheels")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "precious.txt").write_text("mine")
    with pytest.raises(WheelTasksError, match="holds files that no `inv index` wrote"):
        write_index(make_settings(tmp_path, index_dir="site"))
    assert tree(tmp_path / "site") == {"precious.txt": b"mine"}
    (tmp_path / "empty").mkdir()
    write_index(make_settings(tmp_path, index_dir="empty"))  # an empty folder is fine
    assert (tmp_path / "empty" / "index.html").is_file()


# ---- through the command line -------------------------------------------------------------


def cli_env(project: Path, **settings: str) -> dict[str, str]:
    project.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHEELS_", "INDEX_", "PIP_"))}
    env.update(WHEELTASKS_PROJECT_DIR=str(project), WHEELTASKS_CACHE_DIR=str(project / "cache"), **settings)
    return env


def wheeltasks(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wheeltasks", *args], cwd=cwd or env["WHEELTASKS_PROJECT_DIR"],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("setup", "args", "fragment"),
    [
        ("none", (), "no wheels in "),
        ("empty", (), "no wheels in "),
        ("only-junk", (), "no wheels in "),
        ("wheels", ("--base-url", "ftp://files.example.org/wheels"), "INDEX_BASE_URL='ftp://files.example.org/wheels' "
                                                                      "is not an http(s) URL"),
        ("wheels", ("--base-url", "files.example.org/wheels"), "is not an http(s) URL"),
        ("wheels", ("--base-url", "https://me:pw-Zq81@files.example.org/w"), "INDEX_BASE_URL='https://***@files."),
        ("wheels", ("--base-url", "https://files.example.org/w?sig=1"), "has a query or fragment"),
        ("wheels", ("--index-dir", "wheels/amd64"), "overlap"),
        ("wheels", ("--index-dir", "afile"), "is a file, not a folder"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, setup: str, args: tuple[str, ...], fragment: str
) -> None:
    project = tmp_path / "project"
    env = cli_env(project)
    (project / "afile").write_text("a file")
    if setup == "empty":
        (project / "wheels" / "amd64").mkdir(parents=True)
    elif setup == "only-junk":
        (project / "wheels" / "amd64").mkdir(parents=True)
        (project / "wheels" / "amd64" / "junk.whl").write_text("no wheel")
    elif setup == "wheels":
        some_wheels(project / "wheels")
    before = tree(project)
    done = wheeltasks(env, "index", *args)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wheeltasks: ") and fragment in last, done.stderr
    assert "Traceback" not in done.stderr and "pw-Zq81" not in done.stderr and done.stdout == ""
    assert tree(project) == before
    assert sorted(p.name for p in project.iterdir()) == sorted(["afile", *(["wheels"] if setup != "none" else [])])


def test_a_file_with_no_wheels_name_is_skipped_with_a_warning(tmp_path: Path) -> None:
    project = tmp_path / "project"
    env = cli_env(project)
    some_wheels(project / "wheels")
    (project / "wheels" / "amd64" / "notes.whl").write_text("not a wheel")
    done = wheeltasks(env, "index")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"wheeltasks: warning: skipped {project}/wheels/amd64/notes.whl: not a wheel's file name "
                        "(Invalid wheel filename (wrong number of parts): 'notes')")
    assert lines[1].startswith(f"wheeltasks: wrote the index of 3 file(s) of 2 project(s) to {project}/index")
    assert "notes" not in (project / "index" / FIND_LINKS).read_text()


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount --bind -o ro / / 2>/dev/null"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs unshare and mount (root) for a read-only folder")
def test_an_unwritable_place_leaves_the_old_index_intact(tmp_path: Path) -> None:
    """Read-only even for root: the project folder bind-mounted read-only in a mount namespace
    of the command's own (it goes away with the command)."""
    project = tmp_path / "project"
    env = cli_env(project)
    some_wheels(project / "wheels")
    assert wheeltasks(env, "index").returncode == 0
    before = tree(project / "index")
    tagged_wheel(project / "wheels" / "amd64", "wtnew", "1.0")
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount --bind -o ro "{project}" "{project}" && exec "{sys.executable}" -m wheeltasks index'],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot write the index beside" in done.stderr and "Read-only file system" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree(project / "index") == before


# ---- pip installs from it, served over HTTP -----------------------------------------------

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class Served:
    """A static web server on 127.0.0.1 over a folder; ``negotiate``: a folder's index.json
    to clients that ask for PEP 691 JSON (as PyPI answers), else its index.html."""

    root: Path
    negotiate: bool = False
    log: list[tuple[str, int, str]] = field(default_factory=list)  # (path, status, content type)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def paths(self, status: int = 200) -> list[str]:
        return [path for path, code, _ in self.log if code == status]


@contextlib.contextmanager
def serve(root: Path, negotiate: bool = False) -> Iterator[Served]:
    served = Served(root, negotiate)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        served_type = ""

        def do_GET(self) -> None:
            folder = Path(self.translate_path(self.path))
            wants_json = JSON_TYPE in self.headers.get("Accept", "")
            self.served_type = "html" if self.path.endswith("/") else "file"
            if negotiate and wants_json and self.path.endswith("/") and (folder / "index.json").is_file():
                body = (folder / "index.json").read_bytes()
                self.served_type = JSON_TYPE
                self.send_response(200)
                self.send_header("Content-Type", JSON_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            super().do_GET()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            served.log.append((self.path, int(code), self.served_type))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    served.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()


def pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real pip, told nothing by this machine's pip configuration (its indexes, find-links)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return subprocess.run([sys.executable, "-m", "pip", *args, "--no-cache-dir"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def app_wheel(tmp_path_factory: pytest.TempPathFactory, index_server: str) -> Path:
    """A wheel pip itself builds from a tiny local project (setuptools from the fixture index)."""
    base = tmp_path_factory.mktemp("wtapp")
    src = base / "src"
    (src / "wt_app").mkdir(parents=True)
    (src / "wt_app" / "__init__.py").write_text("import wtlib\nVERSION = '1.0'\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61", "wheel"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "WT.App"\nversion = "1.0"\nrequires-python = ">=3.8"\ndependencies = ["wtlib>=1"]\n\n'
        '[tool.setuptools]\npackages = ["wt_app"]\n'
    )
    done = pip("wheel", "--no-deps", "--index-url", index_server, "--wheel-dir", str(base / "out"), str(src), cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (base / "out").glob("*.whl")
    return wheel


def served_project(tmp_path: Path, app_wheel: Path) -> tuple[Path, dict[str, str]]:
    """A project whose wheels/ holds the app (built by pip), its dependency in two versions
    (2.0 needs a Python that does not exist), and a C-extension-like wheel for two arches."""
    project = tmp_path / "project"
    env = cli_env(project)
    for arch in ("amd64", "arm64v8"):
        (project / "wheels" / arch).mkdir(parents=True)
        shutil.copy(app_wheel, project / "wheels" / arch)
    tagged_wheel(project / "wheels" / "amd64", "wtlib", "1.0", requires_python=">=3.8")
    tagged_wheel(project / "wheels" / "amd64", "wtlib", "2.0", requires_python=">=3.99")
    tagged_wheel(project / "wheels" / "amd64", "wtnative", "1.0", "cp311-cp311-musllinux_1_2_x86_64")
    tagged_wheel(project / "wheels" / "arm64v8", "wtnative", "1.0", "cp311-cp311-musllinux_1_2_aarch64")
    done = wheeltasks(env, "index")
    assert done.returncode == 0, done.stderr
    # Served as a web site's /simple/ (a server that follows the link sees every swap).
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "simple").symlink_to(project / "index")
    return project, env


def installed(target: Path) -> dict[str, str]:
    found = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].rpartition("-")
        found[canonicalize_name(name)] = version
    return found


@pytest.mark.parametrize("negotiate", [False, True], ids=["html", "json"])
def test_pip_installs_from_the_index_with_hashes_requires_python_and_metadata(
    tmp_path: Path, app_wheel: Path, negotiate: bool
) -> None:
    project, _ = served_project(tmp_path, app_wheel)
    with serve(tmp_path / "site", negotiate) as site:
        index_url = f"{site.url}simple/"
        # --index-url: the app and its dependency; wtlib 2.0 is skipped by its Requires-Python.
        done = pip("install", "--index-url", index_url, "--target", str(tmp_path / "t1"), "WT.App", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed(tmp_path / "t1") == {"wt-app": "1.0", "wtlib": "1.0"}
        assert "/simple/wtlib/wtlib-2.0-py3-none-any.whl" not in site.paths()
        served_types = {kind for path, _, kind in site.log if path.endswith("/")}
        assert served_types == ({JSON_TYPE} if negotiate else {"html"})

        # A dry run resolves from the PEP 658 metadata files alone: no wheel is fetched, and the
        # report's hashes are the index's.
        site.log.clear()
        report = tmp_path / "report.json"
        done = pip("install", "--dry-run", "--ignore-installed", "--report", str(report), "--index-url", index_url,
                   "WT.App", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        fetched = site.paths()
        assert "/simple/wt-app/wt_app-1.0-py3-none-any.whl.metadata" in fetched
        assert "/simple/wtlib/wtlib-1.0-py3-none-any.whl.metadata" in fetched
        assert not [p for p in fetched if p.endswith(".whl")], fetched
        chosen = {item["metadata"]["name"]: item["download_info"] for item in json.loads(report.read_text())["install"]}
        for name, folder in (("WT.App", "wt-app"), ("wtlib", "wtlib")):
            file = Path(chosen[name]["url"].rsplit("/", 1)[1])
            wheel = project / "index" / folder / file.name
            assert chosen[name]["archive_info"]["hashes"]["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()

        # pip picks each platform's wheel by its tag.
        done = pip("download", "--no-deps", "--only-binary=:all:", "--platform", "musllinux_1_2_aarch64",
                   "--python-version", "3.11", "--index-url", index_url, "--dest", str(tmp_path / "arm"), "wtnative",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [p.name for p in (tmp_path / "arm").iterdir()] == ["wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl"]


def test_pip_installs_with_find_links_and_checks_the_hashes(tmp_path: Path, app_wheel: Path) -> None:
    project, env = served_project(tmp_path, app_wheel)
    with serve(tmp_path / "site") as site:
        find_links = f"{site.url}simple/{FIND_LINKS}"
        done = pip("install", "--no-index", "--find-links", find_links, "--target", str(tmp_path / "t"), "WT.App",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed(tmp_path / "t") == {"wt-app": "1.0", "wtlib": "1.0"}
        # The same from the folder itself, with no server.
        done = pip("install", "--no-index", "--find-links", str(project / "index" / FIND_LINKS), "--target",
                   str(tmp_path / "t2"), "wtlib", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed(tmp_path / "t2") == {"wtlib": "1.0"}

        # A wheel changed after the index was written: pip refuses it by the page's hash.
        served = project / "index" / "wtlib" / "wtlib-1.0-py3-none-any.whl"
        data = served.read_bytes()
        served.unlink()  # a hard link: leave wheels/ alone
        served.write_bytes(data + b"\0")
        done = pip("download", "--no-deps", "--index-url", f"{site.url}simple/", "--dest", str(tmp_path / "d"),
                   "wtlib", cwd=tmp_path)
        assert done.returncode != 0
        assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr, done.stderr

        # A second `inv index` with other wheels: the server now serves the new index whole.
        shutil.rmtree(project / "wheels" / "arm64v8")
        (project / "wheels" / "amd64" / "wtlib-2.0-py3-none-any.whl").unlink()
        tagged_wheel(project / "wheels" / "amd64", "wtlib", "1.1", requires_python=">=3.8")
        assert wheeltasks(env, "index").returncode == 0
        done = pip("install", "--index-url", f"{site.url}simple/", "--target", str(tmp_path / "t3"), "WT.App",
                   cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert installed(tmp_path / "t3") == {"wt-app": "1.0", "wtlib": "1.1"}
        assert not (project / "index" / "wtnative" / "wtnative-1.0-cp311-cp311-musllinux_1_2_aarch64.whl").exists()


def test_make_wheel_wheels_are_indexed_too(tmp_path: Path) -> None:
    """The helpers' wheels (no Requires-Python, empty RECORD) are listed like any other."""
    make_wheel(tmp_path / "wheels" / "armv7", "wtzlib", "1.2", "musllinux_1_2_armv7l")
    write_index(make_settings(tmp_path))
    page = (tmp_path / "index" / "wtzlib" / "index.html").read_text()
    assert "wtzlib-1.2-cp312-cp312-musllinux_1_2_armv7l.whl#sha256=" in page
    assert "data-requires-python" not in page
