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

import bz2
import gzip
import io
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from . import remote
from .errors import RemoteError, WheelTasksError
from .files import atomic_writer, newest_zip_time
from .job import Job
from .platforms import oci_platform_key, platform_of
from .registry import (
    CONFIG_LIMIT,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    is_digest,
    json_or_none,
    sha256_digest,
)
from .settings import Repository, Settings
from .targets import ARCHES, SSL, Arch, implied_ssl, module_label, parse_target
from .urls import split_credentials

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_INDEX_ROUNDS = 3
# A wheel image layer holds a few wheels; a tar of many thousands of entries is not one
# (and tarfile keeps every member's header in memory).
MAX_LAYER_ENTRIES = 10_000
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
    key = oci_platform_key(entry.get("platform"))
    known = [oci_platform_key(platform_of(arch)) for arch in ARCHES]
    return (known.index(key) if key in known else len(known), str(entry.get("digest")))


def merge_index(entries: Iterable[Mapping[str, Any]], new: Mapping[str, Any], annotations: Mapping[str, str]) -> bytes:
    """The index with ``new`` replacing any entry of its platform; the others kept, sorted."""
    key = oci_platform_key(new.get("platform"))
    kept = [dict(e) for e in entries if oci_platform_key(e.get("platform")) != key]
    manifests = sorted([*kept, dict(new)], key=_entry_order)
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        "annotations": dict(annotations),
    })


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
    for descriptor in value:
        if not is_digest(descriptor.get("digest")):
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
            raise _too_large(source, client.max_layer_bytes)
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


def other_spellings(
    tags: Iterable[str], module: str, ssl: SSL | None, version: Version, python: str, arch: Arch
) -> list[str]:
    """Tags that name the same image in another spelling: the project's own capitalisation
    (``PyNaCl1.5.0-py3.11``, as the original system wrote them), or an SSL module's OpenSSL
    build without its suffix (written before the suffix was the rule). Multi-platform tags
    first, then per-arch ones."""
    found: list[tuple[bool, str]] = []
    for tag in tags:
        try:
            target = parse_target(tag)
        except WheelTasksError:
            continue
        # The job's SSL is set exactly when its module links an SSL library.
        same_ssl = implied_ssl(target.ssl, ssl is not None) == ssl
        if (target.module, target.version, target.python) == (module, version, python) and same_ssl:
            if target.arch is None or target.arch == arch:
                found.append((target.arch is not None, tag))
    return [tag for _, tag in sorted(found)]


def _safe_wheel_name(member: tarfile.TarInfo, source: str) -> str | None:
    """The wheel file name of a tar member, None for anything else; raise on path tricks."""
    parts = PurePosixPath(member.name.lstrip("/")).parts
    if ".." in parts:
        raise RemoteError(
            f"image {source} holds an entry that escapes its folder ({member.name[:200]!r}): "
            "not extracting it; rebuild and push that image"
        )
    if not member.isreg() or not parts or not parts[-1].endswith(".whl"):
        return None
    try:
        parse_wheel_filename(parts[-1])
    except InvalidWheelFilename:
        return None
    return parts[-1]


def extract_wheels(layer: bytes | BinaryIO, dest: Path, *, source: str, limit: int | None = None) -> list[Path]:
    """Write the layer's wheels into ``dest``, each atomically (temp file + rename).

    ``layer`` is a tar (plain, gzip, bzip2 or xz), as bytes or a seekable file; at most
    ``limit`` bytes of it are unpacked, whatever the compressed size.
    """
    stream = io.BytesIO(layer) if isinstance(layer, bytes) else layer
    paths = []
    try:
        with _Unpacked(stream, limit) as unpacked, tarfile.open(fileobj=unpacked, mode="r|") as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_LAYER_ENTRIES:
                    raise RemoteError(
                        f"a layer of image {source} holds more than {MAX_LAYER_ENTRIES} entries: "
                        "not a wheel image; rebuild and push that image"
                    )
                name = _safe_wheel_name(member, source)
                handle = tar.extractfile(member) if name else None
                if name is None or handle is None:
                    continue
                with atomic_writer(dest / name) as out:
                    shutil.copyfileobj(handle, out, 1 << 20)
                paths.append(dest / name)
    except _LayerTooLarge:
        raise _too_large(source, limit or 0) from None
    except (tarfile.TarError, _UnreadableLayer):
        raise RemoteError(f"a layer of image {source} is not a readable tar: rebuild and push that image") from None
    return paths


def _too_large(source: str, limit: int) -> RemoteError:
    return RemoteError(
        f"a layer of image {source} is larger than {remote.mib(limit)} unpacked: not extracting it; "
        "raise MAX_LAYER_MB if the image is genuine"
    )


class _LayerTooLarge(Exception):
    pass


class _UnreadableLayer(Exception):
    pass


class _Unpacked(io.RawIOBase):
    """The uncompressed tar stream of a layer, which refuses to give more than ``limit`` bytes.

    tarfile's own ``r:*`` detects the compression too, but cannot bound what it unpacks:
    a 1 MB gzip layer unpacked to 1 GiB, and a pax header may claim any size. Errors of
    the decompressors become _UnreadableLayer, so a disk error while writing stays one.
    """

    def __init__(self, raw: BinaryIO, limit: int | None) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0
        self._inner = _decompressed(raw)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        if self.limit is not None:
            want = min(want, self.limit - self.size + 1)  # one byte past the limit tells
        try:
            data = self._inner.read(want)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise _UnreadableLayer(str(exc)) from None
        buffer[: len(data)] = data
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise _LayerTooLarge
        return len(data)


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _decompressed(raw: BinaryIO) -> _Reader:
    start = raw.read(6)
    raw.seek(0)
    if start.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if start.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if start.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    if start.startswith(b"\x28\xb5\x2f\xfd"):
        raise _UnreadableLayer("zstd")  # no zstd in this Python's standard library
    return raw


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
