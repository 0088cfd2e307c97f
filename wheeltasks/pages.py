"""Simple-API project pages (PEP 691 JSON, PEP 503 HTML): the files they list, the releases
those make, and which release a Python may install (Requires-Python, PEP 345/503; yanked
files, PEP 592). Pure: the client (``index.py``) fetches the pages and caches them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from typing import NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import InvalidVersion, Version

from .errors import WheelTasksError

log = logging.getLogger("wheeltasks.index")

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
# PEP 691: prefer JSON, accept the HTML forms (the versioned one, then plain text/html).
ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01"
# A Python like "3.12" stands for the newest 3.12.x, which is what a `python:3.12-alpine`
# builder runs; a large patch number stands in for it (see `python_admitted`).
NEWEST_PATCH = 999


# ---- data ------------------------------------------------------------------------------


class DistFile(NamedTuple):
    """One file listed on a project page; ``url`` is absolute (resolved against the page's
    URL), without its fragment; ``sha256`` the hash the index gives, empty when none.
    A named tuple: a page lists thousands, and a frozen dataclass takes seven times as long
    to make (most of reading a cached page's files)."""

    filename: str
    version: Version
    requires_python: SpecifierSet | None
    yanked: bool
    yanked_reason: str = ""
    url: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Release:
    """One version of a project, as the index lists it.

    ``requires_python`` is the restriction of the usable files (the non-yanked ones, or all
    of them when every file is yanked); None when one of them states no restriction.
    When files disagree, a Python is admitted when any one of them admits it, so the other
    distinct restrictions are kept in ``other_requires_python``.
    """

    version: Version
    requires_python: SpecifierSet | None
    yanked: bool
    other_requires_python: tuple[SpecifierSet, ...] = ()
    yanked_reason: str = ""

    def admits(self, python: str | None) -> bool:
        if python is None or self.requires_python is None:
            return True
        candidate = python_candidate(python)
        return any(spec.contains(candidate, prereleases=True) for spec in self.specifiers)

    @property
    def specifiers(self) -> tuple[SpecifierSet, ...]:
        first = () if self.requires_python is None else (self.requires_python,)
        return first + self.other_requires_python


def python_candidate(python: str) -> Version:
    """The Python version a Requires-Python check is made against.

    "3.12" means whatever 3.12.x the builder image has, normally the newest patch release.
    Testing a high patch number (3.12.999) admits `>=3.12.1` (installs on the builder)
    and rejects `<3.12` and `!=3.12.*`; it wrongly admits the rare `<3.12.4`, which errs
    toward a version that installs on the newest patch release. A full "3.12.3" is exact.
    """
    try:
        version = Version(python)
    except InvalidVersion as exc:
        raise WheelTasksError(f"Python version {python!r} is not a version like 3.12") from exc
    if len(version.release) >= 3:
        return version
    major, minor = (*version.release, 0)[:2]
    return Version(f"{major}.{minor}.{NEWEST_PATCH}")


# ---- parsing ---------------------------------------------------------------------------


# A project page lists thousands of files but few distinct versions and Requires-Python
# strings; both parsed objects are immutable, so each distinct string is parsed once.
_version = functools.lru_cache(maxsize=65536)(Version)
_canonical = functools.lru_cache(maxsize=4096)(canonicalize_name)  # the page's project and its spellings


def file_version(project: str, filename: str) -> Version | None:
    """The version in a wheel or sdist filename of `project`; None for anything else."""
    try:
        if filename.endswith(".whl"):
            # The wheel spec fixes name and version as the first two fields, so the tags
            # (the costly part of parse_wheel_filename) need no parsing to find the version.
            parts = filename[:-4].split("-")
            if len(parts) not in (5, 6):
                return None
            name, version = parts[0], _version(parts[1])
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidSdistFilename, InvalidVersion):
        return None
    # A name mismatch means a legacy filename split at the wrong dash (or a stray file).
    return version if _canonical(name) == _canonical(project) else None


@functools.lru_cache(maxsize=4096)
def parse_requires_python(text: str | None) -> SpecifierSet | None:
    if not text or not text.strip():
        return None
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        # pip ignores an invalid Requires-Python too; the file is then unrestricted.
        log.debug("ignoring invalid Requires-Python %r", text)
        return None


def make_file(
    project: str, filename: str, requires_python: object, yanked: object, url: str = "", sha256: object = ""
) -> DistFile | None:
    """A DistFile of `project` from one listed file; None for another project's file or
    a filename that is not a distribution. Values of the wrong type count as absent:
    PEP 691 (and PEP 592) yank a file by ``true`` or a non-empty reason, so ``[]``, ``{}``,
    ``0`` or ``""`` leave it installable."""
    version = file_version(project, filename)
    if version is None:
        return None
    spec = parse_requires_python(requires_python if isinstance(requires_python, str) else None)
    reason = yanked if isinstance(yanked, str) else ""
    digest = sha256.lower() if isinstance(sha256, str) and _SHA256_RE.fullmatch(sha256) else ""
    return DistFile(filename, version, spec, yanked is True or bool(reason), reason, url, digest)


_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


# A file as a row of plain values (JSON), and back: the index cache keeps parsed pages so,
# and a row that does not read back raises ValueError or TypeError.
FileRow = tuple[str, str, str | None, bool, str, str, str]


def file_row(file: DistFile) -> FileRow:
    spec = None if file.requires_python is None else str(file.requires_python)
    return (file.filename, str(file.version), spec, file.yanked, file.yanked_reason, file.url, file.sha256)


def file_from_row(row: list[object]) -> DistFile:
    filename, version, spec, yanked, reason, url, sha256 = row
    if _ROW_TYPES != (type(filename), type(version), spec is None or type(spec) is str,
                      type(yanked), type(reason), type(url), type(sha256)):
        raise TypeError(f"not a file row: {row!r:.80}")
    return DistFile(filename, _version(version), parse_requires_python(spec), yanked, reason, url, sha256)  # type: ignore[arg-type]


_ROW_TYPES = (str, str, True, bool, str, str, str)


def file_url(base: str, href: str) -> tuple[str, str]:
    """(absolute URL without fragment, sha256 from a ``#sha256=`` fragment) of a link on a page."""
    # Most indexes give absolute URLs (the public one does): urljoin is a third of a large
    # page's parse time, so only a relative link is joined.
    url, _, fragment = (href if href.startswith(("https://", "http://")) else urljoin(base, href)).partition("#")
    name, _, value = fragment.partition("=")
    return url, value if name == "sha256" else ""


class UnreadablePage(ValueError):
    """A page that is not a simple-API project page (garbage, a proxy's page, another format)."""


def parse_json_page(project: str, text: str | bytes, base: str = "") -> list[DistFile]:
    """A PEP 691 JSON project page: ``{"meta": ..., "files": [{"filename", "yanked", ...}]}``.

    UnreadablePage when the page is not such an object; a file entry that is not an
    object with a filename is skipped (one odd entry should not hide the others).
    """
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise UnreadablePage(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadablePage(f"JSON {type(data).__name__}, not an object")
    meta = data.get("meta", {})
    api_version = str(meta.get("api-version", "1.0")) if isinstance(meta, dict) else "?"
    if not api_version.startswith("1."):
        raise UnreadablePage(f"simple API version {api_version}; only 1.x is understood")
    entries = data.get("files", [])
    if not isinstance(entries, list):
        raise UnreadablePage(f"'files' is a JSON {type(entries).__name__}, not a list")
    files = (
        make_file(project, entry["filename"], entry.get("requires-python"), entry.get("yanked", False),
                  *_json_location(base, entry))
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("filename"), str)
    )
    return [f for f in files if f is not None]


def _json_location(base: str, entry: Mapping[str, object]) -> tuple[str, object]:
    href = entry.get("url")
    url, fragment_hash = file_url(base, href) if isinstance(href, str) else ("", "")
    hashes = entry.get("hashes")
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    return url, sha256 if isinstance(sha256, str) else fragment_hash


class _AnchorParser(HTMLParser):
    """Collects (filename, attributes) of the anchors of a PEP 503 page.

    HTMLParser already unescapes attribute values (``&gt;=3.8`` becomes ``>=3.8``).
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, dict[str, str | None]]] = []
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._current, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((_anchor_filename(self._current, "".join(self._text)), self._current))
            self._current = None


def _anchor_filename(attrs: Mapping[str, str | None], text: str) -> str:
    # PEP 503: the filename is the last path segment of the URL (the text should match it).
    path = urlsplit(attrs.get("href") or "").path
    return unquote(path.rsplit("/", 1)[-1]) or text.strip()


def parse_html_page(project: str, text: str, base: str = "") -> list[DistFile]:
    """A PEP 503 HTML project page (``data-requires-python``, ``data-yanked``, ``#sha256=``)."""
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    files = (
        make_file(project, name, attrs.get("data-requires-python"), _html_yanked(attrs),
                  *file_url(base, attrs.get("href") or ""))
        for name, attrs in parser.anchors
    )
    return [f for f in files if f is not None]


def parse_page(project: str, content_type: str, body: bytes, base: str = "") -> list[DistFile]:
    """The files of a project page in either format, by its Content-Type.

    HTML has no structure to check, so an HTML page that lists no file of the project
    (a proxy's login page, an error page sent with 200) is unreadable too: caching it
    would hide every version until the cache expires.
    """
    media_type = content_type.split(";")[0].strip().lower()
    if media_type.endswith("json"):
        return parse_json_page(project, body, base)
    files = parse_html_page(project, _decode(content_type, body), base)
    if not files:
        raise UnreadablePage(f"an HTML page listing no file of {project}")
    return files


def _decode(content_type: str, body: bytes) -> str:
    # Index pages are UTF-8 unless they say otherwise (requests would assume ISO-8859-1).
    header = Message()
    header["Content-Type"] = content_type or "text/html"
    charset = header.get_content_charset() or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _html_yanked(attrs: Mapping[str, str | None]) -> bool | str:
    # PEP 592: in HTML the attribute's presence yanks; its value is the reason, if any.
    if "data-yanked" not in attrs:
        return False
    return attrs["data-yanked"] or True  # a bare attribute or an empty reason still yanks


def group_releases(files: Iterable[DistFile]) -> list[Release]:
    by_version: dict[Version, list[DistFile]] = {}
    for f in files:
        by_version.setdefault(f.version, []).append(f)
    return sorted((_release(v, fs) for v, fs in by_version.items()), key=lambda r: r.version)


def _release(version: Version, files: list[DistFile]) -> Release:
    usable = [f for f in files if not f.yanked]
    yanked = not usable
    considered = files if yanked else usable
    specs = [f.requires_python for f in considered]
    reason = next((f.yanked_reason for f in files if f.yanked_reason), "") if yanked else ""
    if any(s is None for s in specs):
        return Release(version, None, yanked, yanked_reason=reason)
    # By identity first: parse_requires_python gives one object per text, and hashing a
    # SpecifierSet canonicalises every specifier again (a third of a warm plan of `all`).
    distinct = list(dict.fromkeys({id(s): s for s in specs if s is not None}.values()))
    return Release(version, distinct[0], yanked, tuple(distinct[1:]), reason)


def newest_installable(releases: Iterable[Release], python: str | None) -> Version | None:
    """Newest final (not pre-release), non-yanked version whose Requires-Python admits python."""
    candidates = [r.version for r in releases if not r.version.is_prerelease and not r.yanked and r.admits(python)]
    return max(candidates, default=None)
