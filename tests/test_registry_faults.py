"""The registry client and wheel-image pulls under bad registries: deadlines, size and page
limits, answers of the wrong shape, a token service over plain http, and layers that are
gzip bombs or not tars. Each fault is one line (RemoteError, or WheelTasksError for what
the user must fix), never a traceback; a failed pull leaves nothing in its folder.

Faults a real docker-registry can hold (a layer that is a bomb, not a tar, too large; a
config that is garbage) are pushed to it; the rest come from tests/fault_servers.py.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from tests import fault_servers as faults
from tests.fault_servers import FaultServer
from tests.fixtures_registry import RegistryServer
from tests.helpers import stop_and_time
from tests.test_registry import client_for, make_wheel, push_single, settings_for
from wheeltasks.credentials import docker_credentials
from wheeltasks.errors import RemoteError, WheelTasksError
from wheeltasks.imageformat import canonical_json, extract_wheels
from wheeltasks.images import pull_wheels
from wheeltasks.oci import LAYER_TAR, OCI_INDEX, OCI_MANIFEST, sha256_digest
from wheeltasks.registry import RegistryClient
from wheeltasks.settings import Repository
from wheeltasks.targets import get_arch

AMD64 = get_arch("amd64")
MIB = 1024 * 1024
LATE = 2.5  # seconds: a 1 s deadline plus generous slack for a loaded machine
REPO = "test/faulty"
SECRET = "Registry-pw-never-sent"


def fault_client(fault_server: FaultServer, tmp_path: Path, **kwargs: Any) -> RegistryClient:
    kwargs.setdefault("timeout", 1.0)
    kwargs.setdefault("backoff", 0.05)
    return RegistryClient(fault_server.host, docker_config=str(tmp_path / "none.json"), **kwargs)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def failure(fn: Callable[[], Any], fault_server: FaultServer | None = None) -> tuple[float, WheelTasksError]:
    """The project error ``fn()`` raised (one line), and how long it took: from its first
    request to ``fault_server`` when one is given (what a deadline bounds), else from the call."""
    mark, started = (fault_server.mark() if fault_server else 0), time.monotonic()
    with pytest.raises(WheelTasksError) as caught:
        fn()
    one_line(caught.value)
    seconds = fault_server.seconds_since(mark, started) if fault_server else time.monotonic() - started
    return seconds, caught.value


# ---- the token service ---------------------------------------------------------------------


def test_credentials_are_not_sent_to_a_plain_http_realm_off_loopback(
    fault_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Observes name look-ups (and passes them on): the realm host must never be resolved,
    # let alone connected to. realm.invalid cannot exist (RFC 2606).
    looked_up: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def observed(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", observed)
    fault_server.route("/v2/", faults.bearer_challenge("http://realm.invalid/token"))
    client = fault_client(fault_server, tmp_path, username="wheeler", password=SECRET)
    _, error = failure(lambda: client.tags(REPO))
    assert type(error) is WheelTasksError and error.exit_code == 2
    assert str(error) == (
        f"registry {fault_server.host} wants the credentials sent to its token service realm.invalid over plain http: "
        "not sending them unencrypted; configure an https token realm on the registry"
    )
    assert "realm.invalid" not in looked_up
    assert all("Authorization" not in seen.headers for seen in fault_server.seen)


def test_a_realm_that_is_not_http_is_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route("/v2/", faults.bearer_challenge("file:///etc/passwd"))
    _, error = failure(lambda: fault_client(fault_server, tmp_path, username="u", password=SECRET).tags(REPO))
    assert isinstance(error, RemoteError) and "not an http(s) URL" in str(error)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<html>gateway error</html>", "something that is not a JSON object"),
        (b"[1, 2, 3]", "something that is not a JSON object"),
        (b'"just a string"', "something that is not a JSON object"),
        (b"{}", "no usable token"),
        (b'{"token": 42}', "no usable token"),
        (b'{"token": ""}', "no usable token"),
        (b'{"token": "abc\\r\\nX-Injected: 1"}', "no usable token"),
        (b"[" * 100_000, "something that is not a JSON object"),
    ],
    ids=["html", "list", "string", "empty", "number", "blank", "header-injection", "deep-nesting"],
)
def test_a_garbage_token_is_one_line(fault_server: FaultServer, tmp_path: Path, body: bytes, said: str) -> None:
    fault_server.route("/v2/", faults.bearer_challenge(fault_server.url("/token")))
    fault_server.route("/token", faults.answer(body, "application/json"))
    _, error = failure(lambda: fault_client(fault_server, tmp_path, username="u", password=SECRET).tags(REPO))
    assert isinstance(error, RemoteError)
    assert str(error).startswith(f"the token service of registry {fault_server.host} answered {said}")


@pytest.mark.parametrize("expires_in", ['"soon"', "null", "1e999", "-5", '{"a": 1}'])
def test_an_odd_token_lifetime_is_ignored(fault_server: FaultServer, tmp_path: Path, expires_in: str) -> None:
    fault_server.route("/token", faults.answer(f'{{"token": "abc.def", "expires_in": {expires_in}}}', "application/json"))
    fault_server.route("/v2/", faults.bearer_protected(faults.json_answer({"tags": ["a"]}), fault_server.url("/token")))
    assert fault_client(fault_server, tmp_path).tags(REPO) == ["a"]


# ---- tag lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'["a", "b"]', b'{"tags": "a"}', b'{"tags": {"a": 1}}', b"\xff\xfe\x00garbage"],
    ids=["text", "list", "string", "object", "bytes"],
)
def test_a_malformed_tag_list_is_one_line(fault_server: FaultServer, tmp_path: Path, body: bytes) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.answer(body, "application/json"))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).tags(REPO))
    assert isinstance(error, RemoteError) and "malformed tag list" in str(error)


def test_odd_tags_are_skipped(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.json_answer({"tags": ["a", 1, None, "b"]}))
    assert fault_client(fault_server, tmp_path).tags(REPO) == ["a", "b"]
    fault_server.route(f"/v2/{REPO}/tags/list", faults.json_answer({"name": REPO, "tags": None}))
    assert fault_client(fault_server, tmp_path).tags(REPO) == []


def test_endless_tag_pages_stop_at_the_page_limit(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.endless_tags())
    _, error = failure(lambda: fault_client(fault_server, tmp_path, max_tag_pages=50).tags(REPO))
    assert isinstance(error, RemoteError)
    assert "sent more than 50 pages of tags for test/faulty (its Link header never ends)" in str(error)
    assert len(fault_server.requested(f"/v2/{REPO}/tags/list")) == 50


def test_the_default_page_limit(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.endless_tags())
    _, error = failure(lambda: fault_client(fault_server, tmp_path, timeout=60).tags(REPO))
    assert "more than 1000 pages" in str(error)


def test_a_tag_link_back_to_an_earlier_page(fault_server: FaultServer, tmp_path: Path) -> None:
    link = f'</v2/{REPO}/tags/list?n=1&last=a>; rel="next"'
    fault_server.route(f"/v2/{REPO}/tags/list", faults.json_answer({"tags": ["a"]}, Link=link))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).tags(REPO))
    assert "leads back to an earlier page" in str(error)


def test_a_tag_link_to_another_host_is_not_followed(fault_server: FaultServer, tmp_path: Path) -> None:
    elsewhere = FaultServer()
    try:
        link = f'<{elsewhere.url(f"/v2/{REPO}/tags/list?last=a")}>; rel="next"'
        fault_server.route(f"/v2/{REPO}/tags/list", faults.json_answer({"tags": ["a"]}, Link=link))
        _, error = failure(lambda: fault_client(fault_server, tmp_path, username="u", password=SECRET).tags(REPO))
        assert "link of test/faulty to another host" in str(error)
        assert elsewhere.seen == []
    finally:
        elsewhere.stop()


def test_an_upload_location_elsewhere_gets_no_credentials(fault_server: FaultServer, tmp_path: Path) -> None:
    storage = FaultServer()
    try:
        storage.route("/upload", faults.status(201))
        uploads = faults.status(202, Location=storage.url("/upload?signed=1"))
        fault_server.route("/v2/", faults.basic_auth_required("u", SECRET, faults.status(404)))
        fault_server.route(f"/v2/{REPO}/blobs/uploads/", faults.basic_auth_required("u", SECRET, uploads))
        assert fault_client(fault_server, tmp_path, username="u", password=SECRET).put_blob(REPO, b"data") is True
        assert [s.method for s in storage.seen] == ["PUT"]
        assert "Authorization" not in storage.seen[0].headers
    finally:
        storage.stop()


# ---- deadlines, retries and sizes ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["hang", "drip", "drip in the headers"])
def test_a_stalling_registry_fails_at_the_deadline(fault_server: FaultServer, tmp_path: Path, kind: str) -> None:
    behaviour = {
        "hang": faults.hang(fault_server),
        "drip": faults.drip(fault_server, 0.2, "application/json"),
        "drip in the headers": faults.drip(fault_server, 0.2, headers_too=True),
    }[kind]
    fault_server.route("/v2/", behaviour)
    client = fault_client(fault_server, tmp_path)
    seconds, error = failure(lambda: client.tags(REPO), fault_server)
    assert isinstance(error, RemoteError) and error.exit_code == 4
    assert f"registry {fault_server.host} did not finish answering within 1 s when trying to list the tags of" in str(error)
    assert seconds < LATE


def test_5xx_is_retried_only_while_the_deadline_allows(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route("/v2/", faults.status(503, b'{"errors":[{"code":"UNAVAILABLE","message":"down\\nfor a bit"}]}'))
    client = fault_client(fault_server, tmp_path, tries=100, backoff=0.2)
    seconds, error = failure(lambda: client.tags(REPO), fault_server)
    assert seconds < LATE
    assert str(error).startswith(f"registry {fault_server.host} answered 503 when trying to list the tags of repository")
    assert "UNAVAILABLE down for a bit" in str(error)


def test_a_long_retry_after_is_not_waited_past_the_deadline(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route("/v2/", faults.status(429, Retry_After="3600"))
    client = fault_client(fault_server, tmp_path, timeout=2.0)
    seconds, error = failure(lambda: client.tags(REPO), fault_server)
    assert "rate-limits requests" in str(error) and seconds < 1.0
    assert len(fault_server.seen) == 1


def test_a_redirect_loop_is_one_line(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route("/v2/", faults.redirect(f"/v2/{REPO}/tags/list", 302))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).tags(REPO))
    assert isinstance(error, RemoteError) and "cannot be followed (TooManyRedirects)" in str(error)


def test_a_huge_manifest_is_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/manifests/", faults.huge(200 * MIB, content_type=OCI_MANIFEST))
    client = fault_client(fault_server, tmp_path, timeout=10)
    seconds, error = failure(lambda: client.find_manifest(REPO, "t"), fault_server)
    assert "sent more than 4 MiB when trying to read manifest t of test/faulty: stopped reading" in str(error)
    assert seconds < LATE


def test_a_huge_tag_list_is_refused(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.huge(200 * MIB, content_type="application/json"))
    _, error = failure(lambda: fault_client(fault_server, tmp_path, timeout=10).tags(REPO))
    assert "sent more than 16 MiB" in str(error)


# ---- manifests of the wrong shape ------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("document", "said"),
    [
        (b"{not json", "that is not a JSON object"),
        (b"[1, 2]", "that is not a JSON object"),
        ({"mediaType": OCI_INDEX, "manifests": "all of them"}, "its manifests are not a list of objects"),
        ({"mediaType": OCI_INDEX, "manifests": ["x"]}, "its manifests are not a list of objects"),
        ({"mediaType": OCI_INDEX, "manifests": [{"platform": {"os": "linux", "architecture": "amd64"}}]},
         "one of its manifests has no sha256 digest"),
        ({"mediaType": OCI_INDEX, "manifests": [{"digest": "../../../etc/passwd", "platform": {}}]},
         "one of its manifests has no sha256 digest"),
        ({"mediaType": OCI_MANIFEST, "config": {"digest": 7}, "layers": []}, "its config has no sha256 digest"),
        ({"mediaType": OCI_MANIFEST, "layers": {"digest": DIGEST}}, "its layers are not a list of objects"),
        ({"mediaType": OCI_MANIFEST, "layers": [{"size": 3}]}, "one of its layers has no sha256 digest"),
    ],
    ids=["text", "list", "manifests-string", "manifests-of-strings", "entry-without-digest", "entry-path-digest",
         "config-digest-number", "layers-object", "layer-without-digest"],
)
def test_a_malformed_manifest_is_one_line(
    fault_server: FaultServer, tmp_path: Path, document: bytes | dict[str, Any], said: str
) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    media_type = document.get("mediaType", OCI_MANIFEST) if isinstance(document, dict) else OCI_MANIFEST
    fault_server.route(f"/v2/{REPO}/manifests/", faults.answer(body, str(media_type)))
    dest = tmp_path / "pulled"
    _, error = failure(lambda: pull_wheels(fault_client(fault_server, tmp_path), Repository(fault_server.host, REPO), "t", AMD64, dest))
    assert isinstance(error, RemoteError)
    assert said in str(error)
    assert not dest.exists()


def test_an_index_with_null_manifests_has_no_platform(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/manifests/", faults.json_answer({"mediaType": OCI_INDEX, "manifests": None}, OCI_INDEX))
    client = fault_client(fault_server, tmp_path)
    assert pull_wheels(client, Repository(fault_server.host, REPO), "t", AMD64, tmp_path / "d") is None


# ---- layers (on the real docker-registry) ------------------------------------------------------


def gzip_bomb_layer(unpacked: int, good: bytes = b"") -> bytes:
    """A gzip tar whose one wheel entry is ``unpacked`` zero bytes: tiny compressed."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        if good:
            info = tarfile.TarInfo("good-1.0-py3-none-any.whl")
            info.size = len(good)
            tar.addfile(info, io.BytesIO(good))
        info = tarfile.TarInfo("bomb-1.0-py3-none-any.whl")
        info.size = unpacked
        tar.addfile(info, _Zeros(unpacked))
    return buffer.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def push_layer(registry: RegistryServer, tmp_path: Path, tag: str, layer: bytes, config: bytes | None = None) -> None:
    client = client_for(settings_for(registry, tmp_path), tmp_path)
    if config is None:
        push_single(client, REPO, tag, layer, {"architecture": "amd64", "os": "linux"})
        return
    client.put_blob(REPO, layer)
    client.put_blob(REPO, config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": LAYER_TAR, "digest": sha256_digest(layer), "size": len(layer)}],
    })  # fmt: skip
    client.put_manifest(REPO, tag, OCI_MANIFEST, manifest)


def limited_client(registry: RegistryServer, tmp_path: Path, max_layer_bytes: int) -> RegistryClient:
    return client_for(settings_for(registry, tmp_path), tmp_path, max_layer_bytes=max_layer_bytes, timeout=30.0)


def test_a_gzip_bomb_layer_is_not_unpacked(registry_plain: RegistryServer, tmp_path: Path) -> None:
    good = make_wheel(tmp_path / "src", "good", "1.0", "musllinux_1_2_x86_64").read_bytes()
    layer = gzip_bomb_layer(256 * MIB, good)
    assert len(layer) < MIB // 2
    push_layer(registry_plain, tmp_path, "bomb", layer)
    dest = tmp_path / "pulled"
    tracemalloc.start()
    try:
        seconds, error = failure(
            lambda: pull_wheels(limited_client(registry_plain, tmp_path, 4 * MIB),
                                Repository(registry_plain.host, REPO), "bomb", AMD64, dest)
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(error, RemoteError)
    assert str(error) == (
        f"a layer of image {registry_plain.host}/{REPO}:bomb is larger than 4 MiB unpacked: not extracting it; "
        "raise MAX_LAYER_MB if the image is genuine"
    )
    assert peak < 32 * MIB and seconds < 10
    assert not dest.exists()  # not even the good wheel that came first, nor the folder: all or nothing


@pytest.mark.parametrize(
    "layer", [b"this is not a tar " * 100, b"\x1f\x8b\x08\x00" + b"\x00garbage" * 50, b""],
    ids=["text", "broken-gzip", "empty"],
)
def test_a_layer_that_is_not_a_tar(registry_plain: RegistryServer, tmp_path: Path, layer: bytes) -> None:
    push_layer(registry_plain, tmp_path, "notatar", layer)
    dest = tmp_path / "pulled"
    _, error = failure(
        lambda: pull_wheels(limited_client(registry_plain, tmp_path, MIB), Repository(registry_plain.host, REPO),
                            "notatar", AMD64, dest)
    )
    assert str(error) == f"a layer of image {registry_plain.host}/{REPO}:notatar is not a readable tar: rebuild and push that image"
    assert not dest.exists()


def test_a_layer_larger_than_the_limit(registry_plain: RegistryServer, tmp_path: Path) -> None:
    layer = bytes(range(256)) * (8 * 1024)  # 2 MiB, declared as such in the manifest
    push_layer(registry_plain, tmp_path, "large", layer)
    client = limited_client(registry_plain, tmp_path, MIB)
    _, error = failure(lambda: pull_wheels(client, Repository(registry_plain.host, REPO), "large", AMD64, tmp_path / "d"))
    assert "is larger than 1 MiB unpacked" in str(error)
    # The download itself stops at the limit, whatever the manifest declares.
    with (tmp_path / "blob").open("w+b") as sink:
        _, error = failure(lambda: client.download_blob(REPO, sha256_digest(layer), sink))
        assert sink.tell() <= MIB + 64 * 1024
    assert f"sent more than 1 MiB when trying to download blob {sha256_digest(layer)} of {REPO}" in str(error)
    assert "raise MAX_LAYER_MB" in str(error)
    _, error = failure(lambda: client.get_blob(REPO, sha256_digest(layer)))
    assert "sent more than 1 MiB" in str(error)


@pytest.mark.parametrize("config", [b"not json", b"[]"], ids=["text", "list"])
def test_a_config_that_is_not_json(registry_plain: RegistryServer, tmp_path: Path, config: bytes) -> None:
    wheel = make_wheel(tmp_path / "src", "good", "1.0", "musllinux_1_2_x86_64")
    layer = gzip_bomb_layer(0, wheel.read_bytes())
    push_layer(registry_plain, tmp_path, "badconfig", layer, config)
    _, error = failure(
        lambda: pull_wheels(limited_client(registry_plain, tmp_path, MIB), Repository(registry_plain.host, REPO),
                            "badconfig", AMD64, tmp_path / "d")
    )
    assert "its config is not a JSON object" in str(error)


def test_extract_wheels_bounds_a_bomb_in_memory(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match=r"larger than 1 MiB unpacked"):
        extract_wheels(gzip_bomb_layer(64 * MIB), tmp_path, source="x", limit=MIB)
    assert list(tmp_path.iterdir()) == []


# ---- a pull that fails or is stopped leaves nothing behind ------------------------------------


def wheel_image(fault_server: FaultServer, tmp_path: Path, repo: str, tag: str, layer_fault: faults.Behaviour | None = None,
                manifest_fault: faults.Behaviour | None = None) -> bytes:
    """Serve ``repo:tag`` as a real wheel image (an index, a manifest, a config, a layer with a
    wheel) from the fault server, with a fault in place of the layer or of the manifests."""
    wheel = make_wheel(tmp_path / "src", "wtfault", "1.1.0", "musllinux_1_2_x86_64")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(wheel, arcname=wheel.name)
    layer = buffer.getvalue()
    config = canonical_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": LAYER_TAR, "digest": sha256_digest(layer), "size": len(layer)}],
    })  # fmt: skip
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"}}]})  # fmt: skip
    manifests = {tag: (index, OCI_INDEX), sha256_digest(manifest): (manifest, OCI_MANIFEST)}
    blobs = {sha256_digest(config): faults.answer(config, "application/octet-stream"),
             sha256_digest(layer): layer_fault or faults.answer(layer, "application/octet-stream")}

    def manifest_for(request: faults.Request) -> None:
        found = manifests.get(request.path.rsplit("/", 1)[-1])
        if found is None:
            faults.send(request, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")
        else:
            faults.send(request, 200, found[0], found[1])

    def blob_for(request: faults.Request) -> None:
        blobs.get(request.path.rsplit("/", 1)[-1], faults.status(404))(request)

    fault_server.route("/v2/", faults.json_answer({}))
    fault_server.route(f"/v2/{repo}/manifests/", manifest_fault or manifest_for)
    fault_server.route(f"/v2/{repo}/blobs/", blob_for)
    return layer


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".partial") or p.name.startswith(".pull-")]


PULL_FAULTS = {
    "layer hangs": lambda fault_server: (faults.hang(fault_server), None),
    "layer drips": lambda fault_server: (faults.drip(fault_server, 0.2, "application/octet-stream"), None),
    "layer 500": lambda fault_server: (faults.status(500), None),
    "layer 404": lambda fault_server: (faults.status(404), None),
    "layer of the wrong digest": lambda fault_server: (faults.answer(b"not the layer", "application/octet-stream"), None),
    "layer that is not a tar": lambda fault_server: (faults.answer(b"x" * 100, "application/octet-stream"), None),
    "manifest 500": lambda fault_server: (None, faults.status(500)),
    "manifest garbage": lambda fault_server: (None, faults.answer(b"{not json", OCI_MANIFEST)),
    "manifest hangs": lambda fault_server: (None, faults.hang(fault_server)),
}


@pytest.mark.parametrize("kind", PULL_FAULTS)
def test_a_failed_pull_leaves_no_staging_folder(fault_server: FaultServer, tmp_path: Path, kind: str) -> None:
    from tests.helpers import make_settings
    from wheeltasks import pipeline
    from wheeltasks.job import make_job
    from wheeltasks.plan import Plan
    from wheeltasks.settings import Kind

    settings = make_settings(tmp_path, env={"WHEELS_REGISTRY": f"{fault_server.host}/me", "REMOTE_TIMEOUT": "1",
                                            "DOCKER_CONFIG": str(tmp_path / "no-docker")})
    job = make_job(settings, module="wtfault", version=Version("1.1.0"), python="3.12", arch=AMD64, kind=Kind.SHARED)
    layer_fault, manifest_fault = PULL_FAULTS[kind](fault_server)
    wheel_image(fault_server, tmp_path, job.repository.path, job.tag, layer_fault, manifest_fault)
    started = time.monotonic()
    with pytest.raises(WheelTasksError) as caught:
        pipeline.run(settings, Plan((job,)), steps=("pull-existing",))
    assert time.monotonic() - started < 10
    one_line(caught.value)
    assert leftovers(tmp_path) == []
    assert not job.work.pulled.exists()


def test_a_good_pull_through_the_same_server(fault_server: FaultServer, tmp_path: Path) -> None:
    """The image of the fault tests pulls when nothing is wrong with it: the faults are the cause."""
    from tests.helpers import make_settings
    from wheeltasks import pipeline
    from wheeltasks.job import make_job
    from wheeltasks.plan import Plan
    from wheeltasks.settings import Kind

    settings = make_settings(tmp_path, env={"WHEELS_REGISTRY": f"{fault_server.host}/me", "REMOTE_TIMEOUT": "5",
                                            "DOCKER_CONFIG": str(tmp_path / "no-docker")})
    job = make_job(settings, module="wtfault", version=Version("1.1.0"), python="3.12", arch=AMD64, kind=Kind.SHARED)
    wheel_image(fault_server, tmp_path, job.repository.path, job.tag)
    pipeline.run(settings, Plan((job,)), steps=("pull-existing",))
    assert [p.name for p in job.work.result_wheels()] == ["wtfault-1.1.0-cp312-cp312-musllinux_1_2_x86_64.whl"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_stop_signal_during_a_hanging_pull_leaves_nothing_behind(
    fault_server: FaultServer, tmp_path: Path, signum: int, code: int
) -> None:
    if signal.getsignal(signum) is signal.SIG_IGN:
        pytest.skip(f"{signal.Signals(signum).name} is ignored here (nohup?), and so in the command too")
    project = tmp_path / "project"
    project.mkdir()
    fault_server.route("/simple/", faults.json_page("wtfault"))
    layer = wheel_image(fault_server, tmp_path, "me/python-musl-wheels", "wtfault1.1.0-py3.12", faults.hang(fault_server))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_", "PIP_INDEX", "WHEELS_", "REMOTE_", "DOCKER_"))}
    env.update(PYPI_INDEX=fault_server.url("/simple/"), WHEELS_REGISTRY=f"{fault_server.host}/me", PYTHON_VERSIONS="3.12",
               REMOTE_TIMEOUT="120", HOME=str(tmp_path), WHEELTASKS_CACHE_DIR=str(tmp_path / "cache"),
               WHEELTASKS_PROJECT_DIR=str(project))
    process = subprocess.Popen([sys.executable, "-m", "wheeltasks", "pull-existing", "wtfault1.1.0-py3.12-amd64"],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert fault_server.wait_for(f"/v2/me/python-musl-wheels/blobs/{sha256_digest(layer)}", timeout=90), "no pull"
        time.sleep(0.2)  # inside the download
        assert [p.name for p in leftovers(project)][:1] == ["pulled.partial"]  # what must go
        seconds, out, err = stop_and_time(process, signum)  # from the signal to the exit
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    assert seconds < 2.5
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines()[-1] == ("wheeltasks: interrupted" if signum == signal.SIGINT
                                            else f"wheeltasks: stopped by {signal.Signals(signum).name}")
    assert leftovers(project) == []
    assert not (project / ".wheeltasks" / "shared" / "wtfault1.1.0-py3.12" / "amd64" / "pulled").exists()


# ---- one deadline for a whole tag listing ------------------------------------------------------


def slow_endless_tags(fault_server: FaultServer, delay: float) -> faults.Behaviour:
    """Endless tag pages, each after ``delay`` seconds: every page is well within a deadline."""
    pages = faults.endless_tags()

    def behave(request: faults.Request) -> None:
        if not fault_server.stopping.wait(delay):
            pages(request)

    return behave


def test_a_paged_tag_listing_ends_by_one_deadline(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", slow_endless_tags(fault_server, 0.3))
    client = fault_client(fault_server, tmp_path, timeout=1.0)
    seconds, error = failure(lambda: client.tags(REPO), fault_server)  # from the listing's first page
    assert isinstance(error, RemoteError) and error.exit_code == 4
    assert f"registry {fault_server.host} did not finish answering within 1 s when trying to list the tags of" in str(error)
    assert seconds < LATE  # one deadline: not 1000 pages x 1 s
    assert 2 <= len(fault_server.requested(f"/v2/{REPO}/tags/list")) <= 6


def test_a_short_paged_listing_within_the_deadline(fault_server: FaultServer, tmp_path: Path) -> None:
    first = f'</v2/{REPO}/tags/list?n=1&last=a>; rel="next"'
    pages = {"": (["a"], first), "a": (["b"], "")}

    def behave(request: faults.Request) -> None:
        last = request.path.partition("last=")[2]
        tags, link = pages[last]
        faults.send(request, 200, json.dumps({"tags": tags}).encode(), "application/json", {"Link": link} if link else {})

    fault_server.route(f"/v2/{REPO}/tags/list", behave)
    assert fault_client(fault_server, tmp_path, timeout=5.0).tags(REPO) == ["a", "b"]


# ---- URLs the registry sends: one line when they cannot be followed ---------------------------------


@pytest.mark.parametrize(
    ("link", "said"),
    [
        ('<http://[::1/v2/x>; rel="next"', "it cannot be parsed (Invalid IPv6 URL)"),
        ('<http://127.0.0.1:99999/v2/x>; rel="next"', "invalid port"),
        ('<file:///etc/passwd>; rel="next"', "not an http(s) URL"),
        ('<http://h/a b>; rel="next"', "control character or a space"),
        (f'<http://u:{SECRET}/x@h/v2/x>; rel="next"', "percent-encode"),
    ],
    ids=["ipv6", "port", "file", "space", "ambiguous"],
)
def test_a_malformed_tag_page_link_is_one_line(fault_server: FaultServer, tmp_path: Path, link: str, said: str) -> None:
    fault_server.route(f"/v2/{REPO}/tags/list", faults.json_answer({"tags": ["a"]}, Link=link))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).tags(REPO))
    assert isinstance(error, RemoteError) and error.exit_code == 4
    assert f"sent a tag page link of {REPO} that cannot be followed" in str(error) and said in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize(
    "location",
    ["http://[::1/upload", "http://127.0.0.1:99999/upload", "file:///tmp/upload", "gopher://h/x",
     f"http://u:{SECRET}?x@h/upload"],
    ids=["ipv6", "port", "file", "gopher", "ambiguous"],
)
def test_an_upload_location_that_is_no_url_is_one_line(fault_server: FaultServer, tmp_path: Path, location: str) -> None:
    fault_server.route(f"/v2/{REPO}/blobs/uploads/", faults.status(202, Location=location))
    fault_server.route(f"/v2/{REPO}/blobs/", faults.status(404))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).put_blob(REPO, b"data"))
    assert isinstance(error, RemoteError) and error.exit_code == 4
    assert f"sent an upload location for {REPO} that cannot be followed" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://[::1/blob", "http://127.0.0.1:99999/blob"])
def test_a_blob_redirect_that_cannot_be_followed_is_one_line(fault_server: FaultServer, tmp_path: Path, location: str) -> None:
    fault_server.route(f"/v2/{REPO}/blobs/", faults.redirect(location, 307))
    _, error = failure(lambda: fault_client(fault_server, tmp_path).get_blob(REPO, DIGEST))
    assert isinstance(error, RemoteError) and "a redirect to a URL that cannot be followed" in str(error)


def test_a_realm_that_is_no_url_is_one_line(fault_server: FaultServer, tmp_path: Path) -> None:
    fault_server.route("/v2/", faults.bearer_challenge(f"http://u:{SECRET}@[::1/token"))
    _, error = failure(lambda: fault_client(fault_server, tmp_path, username="u", password="p").tags(REPO))
    assert isinstance(error, RemoteError) and "not an http(s) URL" in str(error) and SECRET not in str(error)


# ---- the Docker config and its credential helpers -------------------------------------------------


def docker_config(tmp_path: Path, content: str | bytes) -> str:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


@pytest.mark.parametrize(
    "content",
    [
        '{"auths": {"127.0.0.1:5000": {"auth": "not base64!"}}}',
        '{"auths": {"127.0.0.1:5000": {"auth": "' + base64.b64encode(b"no-colon-" + SECRET.encode()).decode() + '"}}}',
        '{"auths": {"127.0.0.1:5000": {"auth": "' + base64.b64encode(b"u:\xff\xfe").decode() + '"}}}',
        '{"auths": {"127.0.0.1:5000": {"auth": 42}}}',
        '{"auths": {"127.0.0.1:5000": "a string"}}',
        '[{"auths": {}}]',
        '"just text"',
        '{"credHelpers": ["wtnone"]}',
        '{"auths": ["127.0.0.1:5000"]}',
    ],
    ids=["auth-not-base64", "auth-without-colon", "auth-not-utf8", "auth-number", "entry-string", "list", "string",
         "helpers-list", "auths-list"],
)
def test_a_malformed_docker_config_is_one_line(tmp_path: Path, content: str) -> None:
    config = docker_config(tmp_path, content)
    with pytest.raises(WheelTasksError) as caught:
        docker_credentials("127.0.0.1:5000", config)
    assert caught.value.exit_code == 2
    assert one_line(caught.value).startswith(f"cannot read the Docker config {config} (")
    assert SECRET not in str(caught.value)


def test_a_docker_config_that_is_a_fifo_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir()
    os.mkfifo(path)
    seconds, error = failure(lambda: docker_credentials("127.0.0.1:5000", str(path)))
    assert "is not a regular file" in str(error) and seconds < LATE


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], str]:
    """``helpers(name, script)``: a docker-credential-<name> on PATH; the Docker config naming it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    def make(name: str, script: str) -> str:
        helper = bindir / f"docker-credential-{name}"
        helper.write_text(f"#!/bin/sh\n{script}\n")
        helper.chmod(0o755)
        return docker_config(tmp_path, json.dumps({"credsStore": name}))

    return make


def test_a_hanging_credential_helper_is_stopped_at_the_deadline(
    helpers: Callable[[str, str], str], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # The helper and a child of its own (holding the pipes open), both hanging; the pids file
    # is written as the helper starts, which is what the deadline is measured from.
    config = helpers("wthang", f"sleep 300 & echo $$ $! > {pids}; wait")
    _, error = failure(lambda: RegistryClient("127.0.0.1:5000", docker_config=config, timeout=1.0))
    seconds = time.time() - pids.stat().st_mtime
    assert type(error) is WheelTasksError and error.exit_code == 2
    assert str(error).startswith("the Docker credential helper docker-credential-wthang did not answer within 1 s "
                                 "(REMOTE_TIMEOUT) for registry 127.0.0.1:5000: stopped it;")
    assert seconds < LATE
    time.sleep(0.2)
    for pid in map(int, pids.read_text().split()):
        state = Path(f"/proc/{pid}/status")
        assert not state.exists() or "(zombie)" in state.read_text(), f"{pid} outlived the deadline"


def test_a_credential_helpers_stderr_never_reaches_the_output(
    helpers: Callable[[str, str], str], capfd: pytest.CaptureFixture[str]
) -> None:
    config = helpers("wtloud", f"echo 'error: token {SECRET} rejected' >&2; echo 'details {SECRET}'; exit 3")
    _, error = failure(lambda: docker_credentials("127.0.0.1:5000", config, 5.0))
    assert str(error).startswith("the Docker credential helper docker-credential-wtloud failed (exit 3)")
    out, err = capfd.readouterr()
    assert SECRET not in str(error) and SECRET not in out and SECRET not in err


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (f'cat > /dev/null; echo \'{{"ServerURL": "x", "Username": "me", "Secret": "{SECRET}"}}\'', ("me", SECRET)),
        ("echo 'credentials not found in native keychain'; exit 1", ("", "")),
        ('echo \'{"Username": "", "Secret": ""}\'', ("", "")),
        ('echo \'{"Username": "<token>", "Secret": "idtoken"}\'', ("", "")),
    ],
    ids=["found", "not-found", "empty", "identity-token"],
)
def test_a_credential_helper_that_answers(
    helpers: Callable[[str, str], str], script: str, expected: tuple[str, str]
) -> None:
    assert docker_credentials("127.0.0.1:5000", helpers("wtok", script), 5.0) == expected


@pytest.mark.parametrize("script", ["echo 'not json'", "echo '[1]'", "echo '{\"Username\": 1, \"Secret\": 2}'"])
def test_a_credential_helper_that_answers_garbage(helpers: Callable[[str, str], str], script: str) -> None:
    _, error = failure(lambda: docker_credentials("127.0.0.1:5000", helpers("wtodd", script), 5.0))
    assert "answered something that is not credentials" in str(error)


def test_a_credential_helper_that_is_not_installed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = docker_config(tmp_path, json.dumps({"credHelpers": {"127.0.0.1:5000": "wt-not-installed"}}))
    _, error = failure(lambda: docker_credentials("127.0.0.1:5000", config))
    assert "docker-credential-wt-not-installed (named in the Docker config) is not installed" in str(error)
    assert capfd.readouterr().err == ""  # docker-py's warning is not printed either
