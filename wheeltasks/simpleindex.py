"""inv index: a static simple index over ``wheels/`` (PEP 503 HTML, PEP 691 JSON, PEP 658/714
metadata), for any static web server, ``pip install --index-url`` and ``--find-links``.

One index holds every arch's wheels (pip picks by tag). INDEX_DIR is served as ``…/simple/``:

    index.html, index.json               the projects (PEP 503, PEP 691)
    find-links.html                      every file on one page, for ``pip --find-links``
    <project>/index.html, index.json     the project's files, oldest version first
    <project>/<wheel>                    the wheel: a hard link to wheels/<arch>/<wheel>, else a copy
    <project>/<wheel>.metadata           its ``*.dist-info/METADATA`` (PEP 658)
    .wheeltasks-index                    marks a folder this wrote (no other folder is replaced)

With INDEX_BASE_URL (where ``wheels/`` itself is served) the pages link ``URL/<arch>/<wheel>``
and the index holds no wheels and no metadata files (PEP 658 puts them beside the wheel, in
a folder this does not write to), so the pages name no metadata either.

The index is written whole into a folder beside INDEX_DIR and swapped in for the old one
(one atomic exchange on Linux; elsewhere two renames, between which the folder is briefly
absent): a reader sees the old index or the new one, never a part. The same wheels give the
same bytes (sorted, no times). A file in ``wheels/`` whose name is no wheel's is skipped with
a warning (it is no project's distribution); a wheel that cannot be read, or whose METADATA
does not match its name, is refused (pip would refuse it too).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import html
import json
import logging
import os
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from packaging.metadata import parse_email
from packaging.utils import InvalidWheelFilename, NormalizedName, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from . import running
from .errors import WheelTasksError
from .files import clear, copy_atomic, write_atomic
from .settings import Settings

log = logging.getLogger("wheeltasks.simpleindex")

API_VERSION = "1.1"  # PEP 700: JSON pages carry "versions" and each file's "size"
MARKER = ".wheeltasks-index"
MARKER_TEXT = b"a simple index written by `inv index` (wheeltasks); it is replaced whole by the next one\n"
FIND_LINKS = "find-links.html"  # a dot: no project's normalized name can be this
MAX_METADATA_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    """A file of ``wheels/<arch>/`` whose name is a wheel's."""

    path: Path
    arch: str  # its folder under wheels/
    project: NormalizedName
    version: Version

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class WheelData:
    """What the index says of a wheel: read from its bytes."""

    sha256: str
    size: int
    metadata: bytes
    requires_python: str | None


@dataclass(frozen=True)
class Listed:
    """One file as the pages list it."""

    filename: str
    project: NormalizedName
    version: Version
    url: str  # as the project page links it (relative to it, or absolute under INDEX_BASE_URL)
    root_url: str  # as a page in the index's root folder links it (find-links.html)
    sha256: str
    size: int
    requires_python: str | None
    metadata_sha256: str | None  # None: no .metadata file is served beside the file


@dataclass(frozen=True)
class Written:
    """What ``inv index`` wrote."""

    folder: Path
    projects: int
    files: int
    skipped: tuple[Path, ...]


# ---- reading wheels/ -----------------------------------------------------------------------


def candidates(wheels_dir: Path) -> tuple[list[Candidate], list[Path]]:
    """The wheels of ``wheels/<arch>/`` (sorted by arch folder and name), and the files there
    whose names are no wheel's (skipped, with a warning each)."""
    found: list[Candidate] = []
    skipped: list[Path] = []
    for path in sorted(wheels_dir.glob("*/*.whl")) if wheels_dir.is_dir() else []:
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as exc:
            log.warning("skipped %s: not a wheel's file name (%s)", path, exc)
            skipped.append(path)
            continue
        found.append(Candidate(path, path.parent.name, name, version))
    return found, skipped


FIX = "remove it, or export it again (inv export --force)"


def check_regular(path: Path, shown: Path) -> None:
    """A wheel must be a regular file: a FIFO would block the read; a folder is no wheel."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise WheelTasksError(f"cannot read {shown} ({exc.strerror}): {FIX}") from None
    if not stat.S_ISREG(mode):
        raise WheelTasksError(f"{shown} is not a regular file: {FIX}")


def read_wheel(path: Path, name: NormalizedName, version: Version, shown: Path | None = None) -> WheelData:
    """The hash, size, METADATA and Requires-Python of the wheel at ``path`` (``shown`` is the
    path messages name). A wheel that cannot be read, or whose METADATA names another
    project or version than its file name, is refused."""
    shown = shown or path
    check_regular(path, shown)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            size = 0
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
            handle.seek(0)
            metadata = _metadata_of(zipfile.ZipFile(handle))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise WheelTasksError(f"{shown} is not a readable wheel ({exc}): {FIX}") from None
    raw, _unparsed = parse_email(metadata)
    meta_name, meta_version = raw.get("name"), raw.get("version")
    try:
        matches = (
            meta_name is not None and meta_version is not None
            and canonicalize_name(meta_name) == name and Version(meta_version) == version
        )
    except InvalidVersion:
        matches = False
    if not matches:
        raise WheelTasksError(
            f"{shown}: its METADATA names {meta_name or '(no name)'} {meta_version or '(no version)'}, not the "
            f"{name} {version} of its file name, so pip would refuse it: {FIX}"
        )
    requires = raw.get("requires_python")
    return WheelData(digest.hexdigest(), size, metadata, requires.strip() if requires else None)


def _metadata_of(archive: zipfile.ZipFile) -> bytes:
    """The bytes of the one top-level ``*.dist-info/METADATA``."""
    members = [
        info for info in archive.infolist()
        if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
    ]
    if len(members) != 1:
        raise ValueError(f"{len(members)} *.dist-info/METADATA files at its top, not one")
    if members[0].file_size > MAX_METADATA_BYTES:
        raise ValueError(f"its METADATA is larger than {MAX_METADATA_BYTES // (1024 * 1024)} MiB")
    return archive.read(members[0])


# ---- the pages (pure) --------------------------------------------------------------------


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _anchor(item: Listed, url: str) -> str:
    attrs = [f'href="{_attr(url)}#sha256={item.sha256}"']
    if item.requires_python:
        attrs.append(f'data-requires-python="{_attr(item.requires_python)}"')
    if item.metadata_sha256:
        # PEP 714's name, and PEP 658's older one that pip before 23.2 reads.
        attrs.append(f'data-dist-info-metadata="sha256={item.metadata_sha256}"')
        attrs.append(f'data-core-metadata="sha256={item.metadata_sha256}"')
    return f"    <a {' '.join(attrs)}>{html.escape(item.filename)}</a><br>"


def _html(title: str, lines: Iterable[str]) -> str:
    body = "\n".join(lines)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}{chr(10) if body else ''}  </body>\n</html>\n"
    )


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _ordered(files: Iterable[Listed]) -> list[Listed]:
    return sorted(files, key=lambda f: (f.version, f.filename))


def project_html(project: str, files: Sequence[Listed]) -> str:
    """The PEP 503 page of a project: one anchor per file, oldest version first."""
    return _html(f"Links for {project}", (_anchor(f, f.url) for f in _ordered(files)))


def project_json(project: str, files: Sequence[Listed]) -> str:
    """The PEP 691 page (api-version 1.1) of a project."""
    entries = []
    for item in _ordered(files):
        metadata: dict[str, str] | bool = {"sha256": item.metadata_sha256} if item.metadata_sha256 else False
        entries.append({
            "filename": item.filename,
            "url": item.url,
            "hashes": {"sha256": item.sha256},
            "requires-python": item.requires_python,
            "size": item.size,
            "yanked": False,
            "core-metadata": metadata,
            "dist-info-metadata": metadata,
        })
    versions = [str(v) for v in sorted({f.version for f in files})]
    return _json({"meta": {"api-version": API_VERSION}, "name": project, "versions": versions, "files": entries})


def root_html(projects: Iterable[str]) -> str:
    """The PEP 503 project list."""
    return _html("Simple index", (f'    <a href="{_attr(p)}/">{html.escape(p)}</a><br>' for p in sorted(projects)))


def root_json(projects: Iterable[str]) -> str:
    """The PEP 691 project list."""
    return _json({"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in sorted(projects)]})


def find_links_html(files: Iterable[Listed]) -> str:
    """Every file on one page, for ``pip install --find-links URL/find-links.html``."""
    ordered = sorted(files, key=lambda f: (f.project, f.version, f.filename))
    return _html("Links for all projects", (_anchor(f, f.root_url) for f in ordered))


def pages(files: Sequence[Listed]) -> dict[str, bytes]:
    """Every page of the index, by its path in the index folder."""
    by_project: dict[str, list[Listed]] = {}
    for item in files:
        by_project.setdefault(item.project, []).append(item)
    out = {
        "index.html": root_html(by_project),
        "index.json": root_json(by_project),
        FIND_LINKS: find_links_html(files),
    }
    for project, items in by_project.items():
        out[f"{project}/index.html"] = project_html(project, items)
        out[f"{project}/index.json"] = project_json(project, items)
    return {path: text.encode() for path, text in sorted(out.items())}


# ---- writing ------------------------------------------------------------------------------


def check_destination(settings: Settings) -> None:
    """INDEX_DIR may be new, empty, or an index this wrote: never a folder of anything else."""
    dest, wheels = settings.index_dir, settings.wheels_dir
    if dest == wheels or wheels in dest.parents or dest in wheels.parents:
        raise WheelTasksError(
            f"INDEX_DIR={dest} and WHEELS_DIR={wheels} overlap: write the index to a folder of its own"
        )
    if dest.is_symlink():
        raise WheelTasksError(f"INDEX_DIR={dest} is a symbolic link: name the folder itself")
    if not dest.exists():
        return
    if not dest.is_dir():
        raise WheelTasksError(f"INDEX_DIR={dest} is a file, not a folder: remove it or choose another")
    if any(dest.iterdir()) and not (dest / MARKER).is_file():
        raise WheelTasksError(
            f"INDEX_DIR={dest} holds files that no `inv index` wrote (it replaces the whole folder): "
            "choose another folder, or empty this one"
        )


def _link_or_copy(source: Path, dest: Path) -> None:
    """A hard link where the file system allows it (no second copy), else a whole copy."""
    try:
        os.link(source, dest)
    except OSError:
        copy_atomic(source, dest, running.cancelled)


def _list(cands: Sequence[Candidate], staging: Path, base_url: str) -> list[Listed]:
    """Read each wheel (from its place in the new index, so the pages describe exactly the
    bytes it holds) and list it; the same file in several arch folders is listed once."""
    seen: dict[str, tuple[Candidate, WheelData]] = {}
    listed: list[Listed] = []
    for cand in cands:
        name = cand.filename
        if name in seen or base_url:
            data = read_wheel(cand.path, cand.project, cand.version)
        else:
            check_regular(cand.path, cand.path)
            folder = staging / cand.project
            folder.mkdir(exist_ok=True)
            _link_or_copy(cand.path, folder / name)
            data = read_wheel(folder / name, cand.project, cand.version, shown=cand.path)
        if name in seen:
            first, first_data = seen[name]
            if first_data.sha256 != data.sha256:
                raise WheelTasksError(
                    f"{first.path} and {cand.path} have one name but different contents; an index holds one file "
                    "per name: remove the wrong one"
                )
            continue
        seen[name] = (cand, data)
        if base_url:
            url = root_url = f"{base_url}/{quote(cand.arch)}/{quote(name)}"
            metadata_sha = None
        else:
            url, root_url = quote(name), f"{cand.project}/{quote(name)}"
            write_atomic(staging / cand.project / f"{name}.metadata", data.metadata)
            metadata_sha = hashlib.sha256(data.metadata).hexdigest()
        listed.append(Listed(name, cand.project, cand.version, url, root_url, data.sha256, data.size,
                             data.requires_python, metadata_sha))
    return listed


def write_index(settings: Settings, exchange: Callable[[Path, Path], bool] | None = None) -> Written:
    """Write the index of ``wheels/`` into INDEX_DIR, whole or not at all.

    ``exchange`` swaps two folders atomically, or returns False where it cannot (default:
    :func:`exchange_paths`); the fallback is two renames.
    """
    check_destination(settings)
    cands, skipped = candidates(settings.wheels_dir)
    if not cands:
        raise WheelTasksError(
            f"no wheels in {settings.wheels_dir}/<arch>/ to index: run `inv build …` (or `inv export …`) first"
        )
    dest = settings.index_dir
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    except OSError as exc:
        raise WheelTasksError(f"cannot write the index beside {dest} ({exc.strerror or exc})") from None
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide it from the web server
        listed = _list(cands, staging, settings.index_base_url)
        for path, data in pages(listed).items():
            (staging / path).parent.mkdir(exist_ok=True)
            write_atomic(staging / path, data)
        write_atomic(staging / MARKER, MARKER_TEXT)
        swap_in(staging, dest, exchange or exchange_paths)
    except OSError as exc:
        clear(staging)
        raise WheelTasksError(f"cannot write the index to {dest} ({exc.strerror or exc}): nothing was changed") from None
    except BaseException:
        clear(staging)
        raise
    return Written(dest, len({f.project for f in listed}), len(listed), tuple(skipped))


def swap_in(staging: Path, dest: Path, exchange: Callable[[Path, Path], bool]) -> None:
    """Put the complete folder ``staging`` in the place of ``dest``, and drop the old ``dest``."""
    if not os.path.lexists(dest):
        os.rename(staging, dest)
        return
    if exchange(staging, dest):
        clear(staging)  # which now holds the old index
        return
    old = staging.with_name(staging.name[: -len(".partial")] + ".old")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    clear(old)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or file system has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
