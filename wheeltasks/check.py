"""check: is the index newer than what wheels/ and the registry already hold?"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from . import builders, console
from .images import latest_tag_versions, open_registry
from .index import IndexClient
from .plan import SslModule, default_targets, ssl_modules
from .settings import Kind, Settings
from .targets import SSL, implied_ssl, is_exported, join_version, module_label, parse_target
from .wheelsdir import exported_wheels

OK = "ok"
OUTDATED = "OUT OF DATE"
# LibreSSL builds are only published as images: without a registry nothing tells.
UNKNOWN = "unknown (images only; set WHEELS_REGISTRY)"


@dataclass(frozen=True)
class CheckRow:
    module: str
    ssl: SSL | None
    index_version: Version
    local_version: Version | None
    registry_version: Version | None
    status: str  # OK, OUTDATED or UNKNOWN

    @property
    def outdated(self) -> bool:
        return self.status == OUTDATED

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
            "status": self.status,
        }


def local_versions(wheels_dir: Path) -> dict[str, Version]:
    """Newest version of each project among the wheels in ``wheels/<arch>/``."""
    found: dict[str, Version] = {}
    for path in exported_wheels(wheels_dir):
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        found[name] = max(version, found.get(name, version))
    return found


def registry_versions(settings: Settings, is_ssl: SslModule) -> dict[str, Version]:
    """Newest published version per label, over both kinds' repositories. A tag of an SSL
    module without a suffix (written before the suffix was the rule) counts as OpenSSL."""
    client = open_registry(settings)
    newest: dict[str, Version] = {}
    for kind in Kind:
        for label, version in latest_tag_versions(client, settings.repository(kind)).items():
            target = parse_target(label)
            label = module_label(target.module, implied_ssl(target.ssl, is_ssl(target.module)))
            newest[label] = max(version, newest.get(label, version))
    return newest


def check(settings: Settings, index: IndexClient | None = None) -> list[CheckRow]:
    index = index or IndexClient(settings)
    is_ssl = ssl_modules(settings)
    targets = default_targets(settings, "all", is_ssl)
    latest = index.latest_many(sorted({t.module for t in targets}), builders.newest_builder_python(settings))
    local = local_versions(settings.wheels_dir)
    published = registry_versions(settings, is_ssl) if settings.wheels_registry else {}
    if not settings.wheels_registry:
        console.note("no WHEELS_REGISTRY: compared the index with wheels/ only")
    rows = []
    for target in targets:
        label = module_label(target.module, target.ssl)
        newest = latest[target.module]
        # LibreSSL builds never go to wheels/, so only the registry can tell about them.
        exported = is_exported(target.ssl)
        mine = local.get(canonicalize_name(target.module)) if exported else None
        theirs = published.get(label)
        if settings.wheels_registry:
            status = OUTDATED if theirs is None or newest > theirs else OK
        elif exported:
            status = OUTDATED if mine is None or newest > mine else OK
        else:
            status = UNKNOWN
        rows.append(CheckRow(target.module, target.ssl, newest, mine, theirs, status))
    return rows
