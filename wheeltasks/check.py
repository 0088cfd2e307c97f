"""check: is the index newer than what wheels/ and the registry already hold?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from . import console
from .images import latest_tag_versions, open_registry
from .index import IndexClient
from .plan import default_targets, newest_python
from .settings import Kind, Settings
from .targets import SSL, join_version, module_label


@dataclass(frozen=True)
class CheckRow:
    module: str
    ssl: SSL | None
    index_version: Version
    local_version: Version | None
    registry_version: Version | None
    outdated: bool

    @property
    def label(self) -> str:
        return module_label(self.module, self.ssl)

    @property
    def update_target(self) -> str:
        """What `update` builds: this version for every default Python."""
        return f"{join_version(self.label, self.index_version)}-pyall"

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "ssl": self.ssl.value if self.ssl else None,
            "index_version": str(self.index_version),
            "local_version": str(self.local_version) if self.local_version else None,
            "registry_version": str(self.registry_version) if self.registry_version else None,
            "outdated": self.outdated,
        }


def local_versions(wheels_dir: Path) -> dict[str, Version]:
    """Newest version of each project among the wheels in ``wheels/<arch>/``."""
    found: dict[str, Version] = {}
    for path in wheels_dir.glob("*/*.whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        found[name] = max(version, found.get(name, version))
    return found


def _newest(versions: Iterable[Version | None]) -> Version | None:
    present = [v for v in versions if v is not None]
    return max(present) if present else None


def registry_versions(settings: Settings, labels: list[str]) -> dict[str, Version | None]:
    """Newest published version per label, over both kinds' repositories."""
    client = open_registry(settings)
    published = [latest_tag_versions(client, settings.repository(kind)) for kind in Kind]
    return {label: _newest(versions.get(label) for versions in published) for label in labels}


def check(settings: Settings, index: IndexClient | None = None) -> list[CheckRow]:
    index = index or IndexClient(settings)
    targets = default_targets(settings, "all")
    latest = index.latest_many(sorted({t.module for t in targets}), newest_python(settings))
    local = local_versions(settings.wheels_dir)
    labels = [module_label(t.module, t.ssl) for t in targets]
    published = registry_versions(settings, labels) if settings.wheels_registry else {}
    rows = []
    for target, label in zip(targets, labels, strict=True):
        newest = latest[target.module]
        # LibreSSL builds never go to wheels/, so only the registry can tell about them.
        mine = local.get(canonicalize_name(target.module)) if target.ssl in (None, SSL.OPENSSL) else None
        theirs = published.get(label)
        have = theirs if settings.wheels_registry else mine
        rows.append(CheckRow(target.module, target.ssl, newest, mine, theirs, have is None or newest > have))
    return rows


def show_rows(rows: list[CheckRow], json: bool) -> None:
    if json:
        console.emit_json([row.to_json() for row in rows])
    else:
        print_rows(rows)


def print_rows(rows: list[CheckRow]) -> None:
    console.table(
        ("module", "index", "wheels/", "registry", "status"),
        [
            (r.label, r.index_version, r.local_version, r.registry_version, "OUT OF DATE" if r.outdated else "ok")
            for r in rows
        ],
    )
    outdated = [r.label for r in rows if r.outdated]
    console.note(f"{len(outdated)} of {len(rows)} out of date{': ' + ', '.join(outdated) if outdated else ''}")
