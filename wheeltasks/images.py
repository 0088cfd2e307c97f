"""Wheel images in a registry: push a job's wheels as one (see ``imageformat.py`` for the
format), pull a platform's wheels out of one, and list the versions a repository holds.

Each manifest is written only after everything it references is in, and pulled wheels
appear only once every layer was read: an interrupted push or pull leaves nothing half-done.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from .errors import RemoteError, WheelTasksError
from .imageformat import (
    config_blob,
    descriptor,
    extract_wheels,
    image_labels,
    image_manifest,
    index_annotations,
    layer_tar,
    merge_index,
    too_large,
    wheels_created,
)
from .job import Job
from .oci import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    is_digest,
    json_or_none,
    sha256_digest,
)
from .platforms import oci_platform_key, platform_of
from .registry import CONFIG_LIMIT, RegistryClient
from .settings import Repository, Settings
from .targets import Arch, module_label, parse_target

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
        timeout=settings.remote_timeout,
        max_layer_bytes=settings.max_layer_bytes,
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


# ---- registry reads -----------------------------------------------------------------


def _malformed(client: RegistryClient, repo: str, ref: str, what: str) -> RemoteError:
    return RemoteError(
        f"manifest {ref} of {client.registry}/{repo} is malformed ({what}): push that tag again, or check the registry"
    )


def _descriptors(client: RegistryClient, repo: str, ref: str, value: object, what: str) -> list[dict[str, Any]]:
    """A manifest's list of descriptors (index entries, layers), each an object with a digest;
    a missing or null list is an empty one."""
    value = [] if value is None else value
    if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
        raise _malformed(client, repo, ref, f"its {what} are not a list of objects")
    for item in value:
        if not is_digest(item.get("digest")):
            raise _malformed(client, repo, ref, f"one of its {what} has no sha256 digest")
    return value


def _index_entries(client: RegistryClient, repo: str, ref: str, index: Manifest) -> list[dict[str, Any]]:
    return _descriptors(client, repo, ref, index.document().get("manifests"), "manifests")


def _manifest_platform(client: RegistryClient, repo: str, ref: str, manifest: Manifest) -> dict[str, Any] | None:
    """The platform a single image manifest's config declares."""
    config_ref = manifest.document().get("config")
    if not isinstance(config_ref, dict) or config_ref.get("digest") is None:
        return None
    (config_ref,) = _descriptors(client, repo, ref, [config_ref], "config")
    config = json_or_none(client.get_blob(repo, str(config_ref["digest"]), CONFIG_LIMIT))
    if not isinstance(config, dict):
        raise _malformed(client, repo, ref, "its config is not a JSON object")
    platform = {k: config[k] for k in ("architecture", "os", "variant") if isinstance(config.get(k), str) and config[k]}
    return platform or None


def _entries_at(client: RegistryClient, repo: str, tag: str) -> tuple[Manifest | None, list[dict[str, Any]]]:
    """What the tag holds now, as index entries (an older single-platform push becomes one)."""
    found = client.find_manifest(repo, tag)
    if found is None:
        return None, []
    if found.media_type in INDEX_TYPES:
        return found, _index_entries(client, repo, tag, found)
    if found.media_type in IMAGE_MANIFEST_TYPES:
        entry: dict[str, Any] = {"mediaType": found.media_type, "digest": found.digest, "size": len(found.body)}
        platform = _manifest_platform(client, repo, tag, found)
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
    want = oci_platform_key(platform_of(arch))
    if found.media_type in INDEX_TYPES:
        for entry in _index_entries(client, repo, ref, found):
            if oci_platform_key(entry.get("platform")) == want:
                return client.get_manifest(repo, str(entry["digest"]))
        return None
    if found.media_type not in IMAGE_MANIFEST_TYPES:
        return None
    if trust_tag or oci_platform_key(_manifest_platform(client, repo, ref, found)) == want:
        return found
    return None


# ---- push ----------------------------------------------------------------------------


def push_wheels(client: RegistryClient, job: Job, wheels: list[Path], *, index_url: str) -> PushResult:
    """Publish the job's wheels: blobs, then the platform manifest (also at the legacy
    per-arch tag), then the merged index.

    Each manifest is written only after everything it references is in, so an
    interrupted push never leaves a tag pointing at missing data; rerunning it
    skips what is already there.
    """
    if not wheels:
        raise WheelTasksError(f"no wheels to push for {job.target}: build it first (inv build {job.target})")
    labels = image_labels(job, index_url, wheels_created(wheels))
    return push_platform(client, job.repository, job.tag, job.arch, wheels, labels, index_annotations(job, index_url),
                         legacy_tag=job.legacy_tag)


def push_platform(
    client: RegistryClient,
    repository: Repository,
    tag: str,
    arch: Arch,
    wheels: list[Path],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    *,
    legacy_tag: str = "",
) -> PushResult:
    """One platform's image of ``wheels`` (one layer) merged into the multi-platform ``tag``:
    a job's image, or a requirements file's wheel set (``wheelset.py``)."""
    repo = repository.path
    created = wheels_created(wheels)
    layer = layer_tar(wheels)
    config = config_blob(arch, layer, labels, created)
    uploaded = [client.put_blob(repo, blob) for blob in (layer, config)]
    sent = sum(len(blob) for blob, done in zip((layer, config), uploaded, strict=True) if done)
    manifest = image_manifest(config, layer, labels)
    digest = sha256_digest(manifest)
    written = 0
    for ref in (digest, legacy_tag) if legacy_tag else (digest,):
        if client.manifest_exists(repo, ref) != digest:
            client.put_manifest(repo, ref, OCI_MANIFEST, manifest)
            written += 1
    entry = {**descriptor(OCI_MANIFEST, manifest), "platform": platform_of(arch)}
    index_digest, index_writes = _publish_index(client, repository, tag, entry, annotations)
    return PushResult(
        repository=str(repository),
        tag=tag,
        index_digest=index_digest,
        manifest_digest=digest,
        blobs_uploaded=sum(uploaded),
        blobs_skipped=len(uploaded) - sum(uploaded),
        bytes_uploaded=sent,
        manifests_written=written + index_writes,
    )


def _publish_index(
    client: RegistryClient, repository: Repository, tag: str, entry: Mapping[str, Any], annotations: Mapping[str, str]
) -> tuple[str, int]:
    """Merge ``entry`` into the tag's index; re-read after writing, because another push of
    the same tag (another arch) may have replaced the index in between."""
    repo = repository.path
    for writes in range(_INDEX_ROUNDS + 1):
        current, entries = _entries_at(client, repo, tag)
        if any(e.get("digest") == entry["digest"] for e in entries) and current and current.media_type == OCI_INDEX:
            return current.digest, writes
        if writes == _INDEX_ROUNDS:
            break
        body = merge_index(entries, entry, annotations)
        client.put_manifest(repo, tag, OCI_INDEX, body)
    raise WheelTasksError(
        f"the index {repository.image(tag)} kept changing while this push wrote it (concurrent pushes?): run the push again"
    )


# ---- pull ----------------------------------------------------------------------------


def pull_wheels(
    client: RegistryClient, repository: Repository, tag: str, arch: Arch, dest: Path, others: Sequence[str] = ()
) -> list[Path] | None:
    """Download the wheels of ``repository:tag`` for ``arch`` into ``dest``.

    Reads the multi-platform tag, else the legacy ``<tag>-<arch>`` tag, else the ``others``
    (the same image written otherwise, see :func:`other_spellings`); None when none has
    the platform. Only regular ``*.whl`` files are extracted. Each layer is
    streamed to a temporary file (at most ``client.max_layer_bytes``), verified, and
    unpacked within the same bound; the wheels appear in ``dest`` only when every layer
    was read, each renamed into place, so a failure or Ctrl-C leaves no part behind (and
    no ``dest`` of its own: one this call created is removed again).
    """
    repo = repository.path
    manifest, ref = None, tag
    for ref, trust in ((tag, False), (f"{tag}-{arch.name}", True), *((other, True) for other in others)):
        manifest = _platform_manifest(client, repo, ref, arch, trust_tag=trust)
        if manifest is not None:
            break
    if manifest is None:
        return None
    layers = _descriptors(client, repo, ref, manifest.document().get("layers"), "layers")
    source = f"{repository}:{tag}"
    for layer in layers:
        size = layer.get("size")
        if isinstance(size, int) and size > client.max_layer_bytes:
            raise too_large(source, client.max_layer_bytes)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    moved: list[Path] = []
    try:
        staging = Path(tempfile.mkdtemp(dir=dest, prefix=".pull-"))
        try:
            for layer in layers:
                with tempfile.TemporaryFile(dir=staging) as blob:
                    client.download_blob(repo, str(layer["digest"]), blob)
                    extract_wheels(blob, staging, source=source, limit=client.max_layer_bytes)
            for path in sorted(staging.glob("*.whl")):
                os.replace(path, dest / path.name)
                moved.append(dest / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        # All or nothing, and no folder of its own left behind: a failure, Ctrl-C or SIGTERM.
        for path in moved:
            path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    return moved


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
