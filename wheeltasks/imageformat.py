"""The wheel image format: ``FROM scratch`` images holding only wheels, one OCI index per tag.

A wheel image for one platform is one layer (an uncompressed, deterministic tar of
the wheels at ``/``), a config blob and an OCI image manifest. The published tag
``<module><version>-py<python>`` is an OCI image index over the platforms; the
legacy per-arch tag ``...-<arch>`` points at the platform manifest.

Why an uncompressed layer: wheels are zip files, so gzip saves next to nothing,
while its output depends on the zlib build. A plain tar makes the same wheels give
the same digests on every machine, so a rebuild uploads nothing.

No registry here: this module makes the blobs and manifests (and unpacks a layer into wheels);
``images.py`` pushes and pulls them over a :class:`~wheeltasks.registry.RegistryClient`.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import shutil
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from . import remote
from .errors import RemoteError, WheelTasksError
from .files import atomic_writer, newest_zip_time
from .job import Job
from .oci import LAYER_TAR, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, sha256_digest
from .platforms import oci_platform_key, platform_of
from .targets import ARCHES, SSL, Arch, implied_ssl, parse_target
from .urls import split_credentials

# A wheel image layer holds a few wheels; a tar of many thousands of entries is not one
# (and tarfile keeps every member's header in memory).
MAX_LAYER_ENTRIES = 10_000


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


def config_blob(arch: Arch, layer: bytes, labels: Mapping[str, str], created: str | None) -> bytes:
    config: dict[str, Any] = {
        **platform_of(arch),
        "config": {"Labels": dict(labels)},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]},
    }
    if created:
        config["created"] = created
    return canonical_json(config)


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def image_manifest(config: bytes, layer: bytes, annotations: Mapping[str, str]) -> bytes:
    return canonical_json({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(LAYER_TAR, layer)],
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


# ---- tags ----------------------------------------------------------------------------


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


# ---- reading a layer -------------------------------------------------------------------


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
        raise too_large(source, limit or 0) from None
    except (tarfile.TarError, _UnreadableLayer):
        raise RemoteError(f"a layer of image {source} is not a readable tar: rebuild and push that image") from None
    return paths


def too_large(source: str, limit: int) -> RemoteError:
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
