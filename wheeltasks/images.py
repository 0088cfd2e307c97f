"""Wheel images: ``FROM scratch`` images holding only wheels, one OCI index per tag.

A wheel image for one platform is one layer (an uncompressed, deterministic tar of
the wheels at ``/``), a config blob and an OCI image manifest. The published tag
``<module><version>-py<python>`` is an OCI image index over the platforms; the
legacy per-arch tag ``...-<arch>`` points at the platform manifest.

Why an uncompressed layer: wheels are zip files, so gzip saves next to nothing,
while its output depends on the zlib build. A plain tar makes the same wheels give
the same digests on every machine, so a rebuild uploads nothing.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from .errors import WheelTasksError
from .files import newest_zip_time, write_atomic
from .job import Job
from .registry import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    sha256_digest,
)
from .settings import Repository, Settings
from .targets import ARCHES, Arch, module_label, parse_target
from .urls import split_credentials

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_INDEX_ROUNDS = 3
NO_REGISTRY = "no registry configured: set WHEELS_REGISTRY (e.g. ghcr.io/me or 127.0.0.1:5000/me)"


def open_registry(settings: Settings) -> RegistryClient:
    """A client for the registry of WHEELS_REGISTRY, with the configured credentials
    (else those of ``docker login`` for that host)."""
    if not settings.wheels_registry:
        raise WheelTasksError(NO_REGISTRY)
    return RegistryClient(
        settings.registry_host,
        username=settings.registry_username,
        password=settings.registry_password,
        ca_bundle=settings.ca_bundle,
    )


@dataclass(frozen=True)
class PushResult:
    """What one push did; a push of unchanged wheels uploads and writes nothing."""

    repository: str
    tag: str
    index_digest: str
    manifest_digest: str
    blobs_uploaded: int
    blobs_skipped: int
    bytes_uploaded: int
    manifests_written: int


# ---- pure parts: layer, config, manifest, index ----------------------------------------


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def layer_tar(wheels: Iterable[Path]) -> bytes:
    """A deterministic tar of the wheels at ``/``: sorted, mtime 0, root-owned, mode 0644."""
    by_name: dict[str, Path] = {}
    for wheel in wheels:
        if wheel.name in by_name:
            raise WheelTasksError(f"two wheels are named {wheel.name}: keep one of {by_name[wheel.name]} and {wheel}")
        by_name[wheel.name] = wheel
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(by_name):
            data = by_name[name].read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def wheels_created(wheels: Iterable[Path]) -> str | None:
    """The build date of the wheels (RFC 3339), from their newest entry: it only changes
    when the wheels do, so rebuilding the same wheels keeps the same digests."""
    newest = newest_zip_time(wheels)
    return newest.strftime("%Y-%m-%dT%H:%M:%SZ") if newest else None


def index_annotations(job: Job, index_url: str) -> dict[str, str]:
    """What is the same for every platform of the tag (so any job writes the same index)."""
    index = split_credentials(index_url)[0].rstrip("/")
    values = {
        "org.opencontainers.image.title": job.label,
        "org.opencontainers.image.version": str(job.version),
        "org.opencontainers.image.source": f"{index}/{job.module}/",
        "io.wheeltasks.module": job.module,
        "io.wheeltasks.version": str(job.version),
        "io.wheeltasks.python": job.python,
        "io.wheeltasks.kind": job.kind.value,
        "io.wheeltasks.index": index,
    }
    if job.ssl is not None:
        values["io.wheeltasks.ssl"] = job.ssl.value
    return values


def image_labels(job: Job, index_url: str, created: str | None) -> dict[str, str]:
    labels = index_annotations(job, index_url)
    labels["io.wheeltasks.arch"] = job.arch.name
    labels["org.opencontainers.image.description"] = (
        f"{job.kind.value} musl wheels of {job.label} {job.version} and its dependencies "
        f"for Python {job.python} on {job.platform}"
    )
    if created:
        labels["org.opencontainers.image.created"] = created
    return labels


def platform_of(arch: Arch) -> dict[str, str]:
    platform = {"architecture": arch.oci_architecture, "os": "linux"}
    if arch.variant:
        platform["variant"] = arch.variant
    return platform


def platform_key(platform: Mapping[str, Any] | None) -> tuple[str, str, str] | None:
    """(os, architecture, variant), with the variants Docker assumes when one is missing."""
    if not platform:
        return None
    os_name, architecture = str(platform.get("os", "")), str(platform.get("architecture", ""))
    variant = str(platform.get("variant") or {"arm64": "v8", "arm": "v7"}.get(architecture, ""))
    return os_name, architecture, variant


def config_blob(job: Job, layer: bytes, labels: Mapping[str, str], created: str | None) -> bytes:
    config: dict[str, Any] = {
        **platform_of(job.arch),
        "config": {"Labels": dict(labels)},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }
    if created:
        config["created"] = created
    return canonical_json(config)


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def image_manifest(config: bytes, layer: bytes, annotations: Mapping[str, str]) -> bytes:
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config),
        "layers": [_descriptor(LAYER_TAR, layer)],
        "annotations": dict(annotations),
    })


def _entry_order(entry: Mapping[str, Any]) -> tuple[int, str]:
    key = platform_key(entry.get("platform"))
    known = [platform_key(platform_of(arch)) for arch in ARCHES]
    return (known.index(key) if key in known else len(known), str(entry.get("digest")))


def merge_index(entries: Iterable[Mapping[str, Any]], new: Mapping[str, Any], annotations: Mapping[str, str]) -> bytes:
    """The index with ``new`` replacing any entry of its platform; the others kept, sorted."""
    key = platform_key(new.get("platform"))
    kept = [dict(e) for e in entries if platform_key(e.get("platform")) != key]
    manifests = sorted([*kept, dict(new)], key=_entry_order)
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        "annotations": dict(annotations),
    })


# ---- registry reads -----------------------------------------------------------------


def _manifest_platform(client: RegistryClient, repo: str, manifest: Manifest) -> dict[str, Any] | None:
    """The platform a single image manifest's config declares."""
    config_ref = json.loads(manifest.body).get("config") or {}
    if not config_ref.get("digest"):
        return None
    config = json.loads(client.get_blob(repo, str(config_ref["digest"])))
    platform = {k: config[k] for k in ("architecture", "os", "variant") if config.get(k)}
    return platform or None


def _entries_at(client: RegistryClient, repo: str, tag: str) -> tuple[Manifest | None, list[dict[str, Any]]]:
    """What the tag holds now, as index entries (an older single-platform push becomes one)."""
    found = client.find_manifest(repo, tag)
    if found is None:
        return None, []
    if found.media_type in INDEX_TYPES:
        return found, list(json.loads(found.body).get("manifests") or [])
    if found.media_type in IMAGE_MANIFEST_TYPES:
        entry: dict[str, Any] = {"mediaType": found.media_type, "digest": found.digest, "size": len(found.body)}
        platform = _manifest_platform(client, repo, found)
        if platform:
            entry["platform"] = platform
        return found, [entry]
    raise WheelTasksError(
        f"tag {tag} of {client.registry}/{repo} holds a {found.media_type or 'unknown'} manifest, not an image: "
        "delete the tag or use another repository"
    )


def _platform_manifest(
    client: RegistryClient, repo: str, ref: str, arch: Arch, *, trust_tag: bool
) -> Manifest | None:
    """The image manifest for ``arch`` at ``ref``; a legacy per-arch tag (``trust_tag``)
    is taken at its word, since old images were not always labelled with their platform."""
    found = client.find_manifest(repo, ref)
    if found is None:
        return None
    want = platform_key(platform_of(arch))
    if found.media_type in INDEX_TYPES:
        for entry in json.loads(found.body).get("manifests") or []:
            if platform_key(entry.get("platform")) == want:
                return client.get_manifest(repo, str(entry["digest"]))
        return None
    if found.media_type not in IMAGE_MANIFEST_TYPES:
        return None
    if trust_tag or platform_key(_manifest_platform(client, repo, found)) == want:
        return found
    return None


# ---- push ----------------------------------------------------------------------------


def push_wheels(client: RegistryClient, job: Job, wheels: list[Path], *, index_url: str) -> PushResult:
    """Publish the job's wheels: blobs, then the platform manifest, then the merged index.

    Each manifest is written only after everything it references is in, so an
    interrupted push never leaves a tag pointing at missing data; rerunning it
    skips what is already there.
    """
    if not wheels:
        raise WheelTasksError(f"no wheels to push for {job.target}: build it first (inv build {job.target})")
    repo = job.repository.path
    created = wheels_created(wheels)
    labels = image_labels(job, index_url, created)
    layer = layer_tar(wheels)
    config = config_blob(job, layer, labels, created)
    uploaded = [client.put_blob(repo, blob) for blob in (layer, config)]
    sent = sum(len(blob) for blob, done in zip((layer, config), uploaded, strict=True) if done)
    manifest = image_manifest(config, layer, labels)
    digest = sha256_digest(manifest)
    written = 0
    if client.manifest_exists(repo, digest) != digest:
        client.put_manifest(repo, digest, OCI_MANIFEST, manifest)
        written += 1
    if client.manifest_exists(repo, job.legacy_tag) != digest:
        client.put_manifest(repo, job.legacy_tag, OCI_MANIFEST, manifest)
        written += 1
    entry = {**_descriptor(OCI_MANIFEST, manifest), "platform": platform_of(job.arch)}
    index_digest, index_writes = _publish_index(client, repo, job, entry, index_annotations(job, index_url))
    return PushResult(
        repository=str(job.repository),
        tag=job.tag,
        index_digest=index_digest,
        manifest_digest=digest,
        blobs_uploaded=sum(uploaded),
        blobs_skipped=len(uploaded) - sum(uploaded),
        bytes_uploaded=sent,
        manifests_written=written + index_writes,
    )


def _publish_index(
    client: RegistryClient, repo: str, job: Job, entry: Mapping[str, Any], annotations: Mapping[str, str]
) -> tuple[str, int]:
    """Merge ``entry`` into the tag's index; re-read after writing, because another push of
    the same tag (another arch) may have replaced the index in between."""
    for writes in range(_INDEX_ROUNDS + 1):
        current, entries = _entries_at(client, repo, job.tag)
        if any(e.get("digest") == entry["digest"] for e in entries) and current and current.media_type == OCI_INDEX:
            return current.digest, writes
        if writes == _INDEX_ROUNDS:
            break
        body = merge_index(entries, entry, annotations)
        client.put_manifest(repo, job.tag, OCI_INDEX, body)
    raise WheelTasksError(
        f"the index {job.image} kept changing while this push wrote it (concurrent pushes?): run the push again"
    )


# ---- pull ----------------------------------------------------------------------------


def pull_wheels(client: RegistryClient, repository: Repository, tag: str, arch: Arch, dest: Path) -> list[Path] | None:
    """Download the wheels of ``repository:tag`` for ``arch`` into ``dest``.

    Reads the multi-platform tag, else the legacy ``<tag>-<arch>`` tag; None when
    neither has the platform. Only regular ``*.whl`` files are extracted.
    """
    repo = repository.path
    manifest = _platform_manifest(client, repo, tag, arch, trust_tag=False)
    if manifest is None:
        manifest = _platform_manifest(client, repo, f"{tag}-{arch.name}", arch, trust_tag=True)
    if manifest is None:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for layer in json.loads(manifest.body).get("layers") or []:
        blob = client.get_blob(repo, str(layer["digest"]))
        for path in extract_wheels(blob, dest, source=f"{repository}:{tag}"):
            written[path.name] = path
    return sorted(written.values())


def _safe_wheel_name(member: tarfile.TarInfo, source: str) -> str | None:
    """The wheel file name of a tar member, None for anything else; raise on path tricks."""
    parts = PurePosixPath(member.name.lstrip("/")).parts
    if ".." in parts:
        raise WheelTasksError(
            f"image {source} holds an entry that escapes its folder ({member.name!r}): "
            "not extracting it; rebuild and push that image"
        )
    if not member.isreg() or not parts or not parts[-1].endswith(".whl"):
        return None
    try:
        parse_wheel_filename(parts[-1])
    except InvalidWheelFilename:
        return None
    return parts[-1]


def extract_wheels(layer: bytes, dest: Path, *, source: str) -> list[Path]:
    """Write the layer's wheels into ``dest``, each atomically (temp file + rename)."""
    paths = []
    try:
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as tar:
            for member in tar:
                name = _safe_wheel_name(member, source)
                handle = tar.extractfile(member) if name else None
                if name is None or handle is None:
                    continue
                paths.append(write_atomic(dest / name, handle.read()))
    except tarfile.TarError:
        raise WheelTasksError(f"a layer of image {source} is not a readable tar: rebuild and push that image") from None
    return paths


# ---- check ---------------------------------------------------------------------------


def latest_tag_versions(client: RegistryClient, repository: Repository, python: str | None = None) -> dict[str, Version]:
    """The newest version published per label (module with its SSL suffix), by ``packaging``
    order, among current and legacy per-arch tags (and one Python if given): one tag listing."""
    newest: dict[str, Version] = {}
    for tag in client.tags(repository.path):
        try:
            target = parse_target(tag)
        except WheelTasksError:
            continue
        if target.version is None or (python is not None and target.python != python):
            continue
        label = module_label(target.module, target.ssl)
        newest[label] = max(target.version, newest.get(label, target.version))
    return newest
