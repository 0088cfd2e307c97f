"""The OCI and Docker distribution vocabulary both sides of the registry use: media types,
digests, and a manifest as the registry sent it (the wheel image format is ``imageformat.py``,
the client ``registry.py``)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, NamedTuple

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Registries answer 404 to a manifest HEAD/GET whose type the Accept header omits
# (distribution 2.8 does so for OCI manifests), so always offer all four.
MANIFEST_ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class Manifest(NamedTuple):
    media_type: str
    body: bytes
    digest: str

    def document(self) -> dict[str, Any]:
        """The manifest's JSON object (``find_manifest`` refuses anything else)."""
        value = json_or_none(self.body)
        return value if isinstance(value, dict) else {}


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: object) -> bool:
    """A sha256 digest (the only algorithm this client verifies), safe to put in a URL."""
    return isinstance(value, str) and DIGEST_RE.fullmatch(value) is not None


def json_or_none(data: bytes | str) -> Any:
    """Parsed JSON, or None for anything that is not (deep nesting included)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None
