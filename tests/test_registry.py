"""Registry client and wheel images against Debian's real ``docker-registry`` on 127.0.0.1."""

from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from packaging.version import Version

from tests.fixtures_registry import PASSWORD, USERNAME, RegistryServer
from tests.helpers import make_wheel
from wheeltasks.errors import WheelTasksError
from wheeltasks.imageformat import canonical_json, config_blob, image_manifest, layer_tar
from wheeltasks.images import latest_tag_versions, pull_wheels, push_wheels
from wheeltasks.job import Job, make_job
from wheeltasks.oci import LAYER_TAR, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, sha256_digest
from wheeltasks.registry import RegistryClient
from wheeltasks.registry_transport import is_loopback
from wheeltasks.settings import Kind, Repository, Settings
from wheeltasks.targets import SSL, get_arch

# Markers come from the fixtures each test uses (conftest.py): pure tests run without servers.

INDEX_URL = "https://reader:index-token-xyz@pypi.example.org/simple/"

AMD64 = get_arch("amd64")
ARM64 = get_arch("arm64v8")
ARMV7 = get_arch("armv7")


# ---- helpers ---------------------------------------------------------------------------


def wheels_for(folder: Path, arch_machine: str, payload: str = "") -> list[Path]:
    platform = f"musllinux_1_2_{arch_machine}"
    return [
        make_wheel(folder / arch_machine, "demo", "1.0.0", platform, payload),
        make_wheel(folder / arch_machine, "helper", "2.0", platform, payload),
    ]


def settings_for(server: RegistryServer, tmp_path: Path) -> Settings:
    env = {
        "WHEELS_REGISTRY": f"{server.host}/test",
        "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"),
        "HOME": str(tmp_path / "home"),
        "PYPI_INDEX": INDEX_URL,
    }
    if server.username:
        env |= {"REGISTRY_USERNAME": server.username, "REGISTRY_PASSWORD": server.password}
    return Settings.load(config={}, env=env, flags={})


def client_for(settings: Settings, tmp_path: Path, **kwargs: Any) -> RegistryClient:
    # An empty Docker config keeps the user's own ~/.docker out of the tests.
    kwargs.setdefault("docker_config", str(tmp_path / "no-docker-config.json"))
    kwargs.setdefault("backoff", 0.05)
    return RegistryClient(
        settings.registry_host, username=settings.registry_username, password=settings.registry_password, **kwargs
    )


def job_for(settings: Settings, arch_name: str, module: str = "demo", version: str = "1.0.0",
            ssl: SSL | None = None) -> Job:
    return make_job(settings, module=module, ssl=ssl, version=Version(version), python="3.12", arch=get_arch(arch_name), kind=Kind.SHARED)


def skopeo_raw(server: RegistryServer, ref: str) -> dict[str, Any]:
    args = ["skopeo", "inspect", "--raw", "--tls-verify=false"]
    if server.username:
        args.append(f"--creds={server.username}:{server.password}")
    result = subprocess.run([*args, f"docker://{server.host}/{ref}"], check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout))


def referenced_blobs_exist(client: RegistryClient, repo: str, tag: str) -> None:
    index = client.get_manifest(repo, tag)
    assert index.media_type == OCI_INDEX
    for entry in json.loads(index.body)["manifests"]:
        manifest = json.loads(client.get_manifest(repo, entry["digest"]).body)
        for blob in [manifest["config"], *manifest["layers"]]:
            assert client.blob_exists(repo, blob["digest"]), blob


def platforms(index: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [
        (m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"))
        for m in index["manifests"]
    ]


def push_single(client: RegistryClient, repo: str, tag: str, layer: bytes, arch_config: dict[str, str]) -> str:
    """Push a plain single-platform image (as older tools did) at ``tag``."""
    config = canonical_json({**arch_config, "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}})
    client.put_blob(repo, layer)
    client.put_blob(repo, config)
    manifest = image_manifest(config, layer, {})
    return client.put_manifest(repo, tag, OCI_MANIFEST, manifest)


# ---- pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.8.9.1", True), ("localhost:5000", True), ("[::1]:5000", True),
     ("::1", True), ("ghcr.io", False), ("10.0.0.1:5000", False), ("registry.local:443", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_layer_tar_is_deterministic(tmp_path: Path) -> None:
    wheels = wheels_for(tmp_path, "x86_64")
    first, second = layer_tar(wheels), layer_tar(list(reversed(wheels)))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(w.name for w in wheels)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


# ---- push / index ----------------------------------------------------------------------


def push_both(settings: Settings, client: RegistryClient, tmp_path: Path, payload: str = "") -> dict[str, Any]:
    results = {}
    for arch_name, machine in (("amd64", "x86_64"), ("arm64v8", "aarch64")):
        job = job_for(settings, arch_name)
        results[arch_name] = push_wheels(client, job, wheels_for(tmp_path / "w", machine, payload), index_url=INDEX_URL)
    return results


def test_push_two_platforms_gives_oci_index(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    first = push_both(settings, client, tmp_path)
    job = job_for(settings, "amd64")
    assert job.tag == "demo1.0.0-py3.12"

    index = skopeo_raw(registry_plain, f"test/python-musl-wheels:{job.tag}")
    assert index["mediaType"] == OCI_INDEX
    assert platforms(index) == [("linux", "amd64", None), ("linux", "arm64", "v8")]
    assert index["annotations"]["io.wheeltasks.module"] == "demo"
    assert "index-token-xyz" not in json.dumps(index)  # index credentials never land in an image

    manifest = skopeo_raw(registry_plain, f"test/python-musl-wheels@{index['manifests'][1]['digest']}")
    assert manifest["layers"][0]["mediaType"] == LAYER_TAR
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    config = json.loads(client.get_blob("test/python-musl-wheels", manifest["config"]["digest"]))
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"] == "2024-05-06T07:08:10Z"
    assert labels["io.wheeltasks.python"] == "3.12"
    assert labels["io.wheeltasks.kind"] == "shared"
    assert labels["io.wheeltasks.index"] == "https://pypi.example.org/simple"

    # The legacy per-arch tag points at the same platform manifest.
    legacy = client.manifest_exists("test/python-musl-wheels", f"{job.tag}-arm64v8")
    assert legacy == index["manifests"][1]["digest"] == first["arm64v8"].manifest_digest
    assert first["amd64"].blobs_uploaded == 2 and first["amd64"].bytes_uploaded > 0

    # Pushing the same wheels again uploads nothing and gives identical digests.
    second = push_both(settings, client, tmp_path)
    for arch_name in ("amd64", "arm64v8"):
        assert second[arch_name].blobs_uploaded == 0
        assert second[arch_name].blobs_skipped == 2
        assert second[arch_name].bytes_uploaded == 0
        assert second[arch_name].manifests_written == 0
        assert second[arch_name].manifest_digest == first[arch_name].manifest_digest
    assert second["arm64v8"].index_digest == first["arm64v8"].index_digest
    assert skopeo_raw(registry_plain, f"test/python-musl-wheels:{job.tag}") == index


def test_pushing_one_arch_keeps_the_others(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    repo = "test/python-musl-wheels"
    job = job_for(settings, "amd64", module="keeper")
    arm = job_for(settings, "arm64v8", module="keeper")
    push_wheels(client, job, wheels_for(tmp_path / "a", "x86_64"), index_url=INDEX_URL)
    arm_result = push_wheels(client, arm, wheels_for(tmp_path / "a", "aarch64"), index_url=INDEX_URL)
    # A rebuild of amd64 alone (different wheel content) replaces only its own entry.
    rebuilt = push_wheels(client, job, wheels_for(tmp_path / "b", "x86_64", payload="# rebuilt\n"), index_url=INDEX_URL)
    assert rebuilt.blobs_uploaded == 2
    index = json.loads(client.get_manifest(repo, job.tag).body)
    digests = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert digests == {"amd64": rebuilt.manifest_digest, "arm64": arm_result.manifest_digest}
    referenced_blobs_exist(client, repo, job.tag)


def test_older_single_manifest_at_tag_joins_the_index(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    repo = "test/python-musl-wheels"
    job = job_for(settings, "amd64", module="oldstyle")
    layer = layer_tar(wheels_for(tmp_path, "armv7l"))
    old = push_single(client, repo, job.tag, layer, {"architecture": "arm", "os": "linux", "variant": "v7"})
    push_wheels(client, job, wheels_for(tmp_path, "x86_64"), index_url=INDEX_URL)
    index = json.loads(client.get_manifest(repo, job.tag).body)
    assert platforms(index) == [("linux", "amd64", None), ("linux", "arm", "v7")]
    assert index["manifests"][1]["digest"] == old


# ---- pagination ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_tags(registry_plain: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp_path = tmp_path_factory.mktemp("tags")
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    layer = layer_tar(wheels_for(tmp_path, "x86_64"))
    config = config_blob(job_for(settings, "amd64").arch, layer, {}, None)
    client.put_blob("test/many", layer)
    client.put_blob("test/many", config)
    manifest = image_manifest(config, layer, {})
    tags = [f"t{i:03d}" for i in range(105)]
    for tag in tags:
        client.put_manifest("test/many", tag, OCI_MANIFEST, manifest)
    return tags


def test_tags_lists_all_105(registry_plain: RegistryServer, many_tags: list[str], tmp_path: Path) -> None:
    client = client_for(settings_for(registry_plain, tmp_path), tmp_path)
    assert sorted(client.tags("test/many", page_size=50)) == many_tags
    assert client.tags("test/never-pushed") == []


class PagingProxy:
    """Serves ``/v2/<repo>/tags/list?n=&last=`` pages with ``Link`` headers over the real registry.

    Why a stand-in: distribution 2.8 (Debian's docker-registry) ignores ``n`` and
    returns every tag at once, while Docker Hub, GHCR and distribution 3 paginate as
    the OCI distribution spec describes. Everything else is forwarded to the registry.
    """

    def __init__(self, upstream: str) -> None:
        self.pages = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.serve(self, upstream)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, request: http.server.BaseHTTPRequestHandler, upstream: str) -> None:
        url = urllib.parse.urlsplit(request.path)
        query = urllib.parse.parse_qs(url.query)
        real = requests.get(f"http://{upstream}{url.path}", timeout=10)
        body, link = real.content, ""
        if url.path.endswith("/tags/list") and real.status_code == 200:
            self.pages += 1
            tags = sorted(real.json()["tags"])
            last = query.get("last", [""])[0]
            size = int(query.get("n", ["1000"])[0])
            page = [t for t in tags if t > last][:size]
            body = json.dumps({"name": real.json()["name"], "tags": page}).encode()
            if page and page[-1] != tags[-1]:
                link = f'<{url.path}?n={size}&last={page[-1]}>; rel="next"'
        request.send_response(real.status_code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        if link:
            request.send_header("Link", link)
        request.end_headers()
        request.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_tags_follows_link_pages(registry_plain: RegistryServer, many_tags: list[str], tmp_path: Path) -> None:
    proxy = PagingProxy(registry_plain.host)
    try:
        client = RegistryClient(proxy.host, docker_config=str(tmp_path / "none.json"))
        assert client.tags("test/many", page_size=50) == many_tags
        assert proxy.pages == 3
    finally:
        proxy.stop()


# ---- interrupted push ------------------------------------------------------------------


class StopsRegistry(RegistryClient):
    """A real client that stops the real registry right before its ``stop_at``-th blob upload."""

    def __init__(self, server: RegistryServer, stop_at: int, **kwargs: Any) -> None:
        super().__init__(server.host, **kwargs)
        self.server, self.stop_at, self.calls = server, stop_at, 0

    def put_blob(self, repo: str, data: bytes, digest: str | None = None) -> bool:
        self.calls += 1
        if self.calls == self.stop_at:
            self.server.stop()
        return super().put_blob(repo, data, digest)


@pytest.mark.parametrize("stop_at", [2, 3], ids=["between-blobs", "second-arch"])
def test_interrupted_push_reruns_to_a_complete_tag(
    registry_restartable: RegistryServer, tmp_path: Path, stop_at: int
) -> None:
    server = registry_restartable
    settings = settings_for(server, tmp_path)
    repo = "test/python-musl-wheels"
    jobs = [job_for(settings, "amd64"), job_for(settings, "arm64v8")]
    wheels = {"amd64": wheels_for(tmp_path, "x86_64"), "arm64v8": wheels_for(tmp_path, "aarch64")}
    broken = StopsRegistry(server, stop_at, tries=2, backoff=0.05, docker_config=str(tmp_path / "none.json"))
    with pytest.raises(WheelTasksError, match=f"registry {server.host} is not reachable"):
        for job in jobs:
            push_wheels(broken, job, wheels[job.arch.name], index_url=INDEX_URL)
    server.start()
    client = client_for(settings, tmp_path)
    if stop_at == 2:
        # Blobs went in, but no manifest: the tag must not exist, let alone point at missing data.
        assert client.manifest_exists(repo, jobs[0].tag) is None
    else:
        index = json.loads(client.get_manifest(repo, jobs[0].tag).body)
        assert platforms(index) == [("linux", "amd64", None)]
    results = [push_wheels(client, job, wheels[job.arch.name], index_url=INDEX_URL) for job in jobs]
    assert results[0].blobs_skipped >= 1  # what made it in before the stop is not sent again
    index = json.loads(client.get_manifest(repo, jobs[0].tag).body)
    assert platforms(index) == [("linux", "amd64", None), ("linux", "arm64", "v8")]
    referenced_blobs_exist(client, repo, jobs[0].tag)


# ---- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_authenticated_push_and_pull(
    mode: str, registry_basic: RegistryServer, registry_token: RegistryServer, tmp_path: Path
) -> None:
    server = registry_basic if mode == "basic" else registry_token
    settings = settings_for(server, tmp_path)
    client = client_for(settings, tmp_path)
    push_both(settings, client, tmp_path)
    job = job_for(settings, "arm64v8")
    index = skopeo_raw(server, f"test/python-musl-wheels:{job.tag}")
    assert platforms(index) == [("linux", "amd64", None), ("linux", "arm64", "v8")]
    reader = client_for(settings, tmp_path)
    pulled = pull_wheels(reader, job.repository, job.tag, ARM64, tmp_path / "pulled")
    assert pulled is not None
    assert [p.name for p in pulled] == sorted(w.name for w in wheels_for(tmp_path / "w", "aarch64"))
    assert pulled[0].read_bytes() == (tmp_path / "w" / "aarch64" / pulled[0].name).read_bytes()


def test_token_is_fetched_once_per_repository_and_action(
    registry_token: RegistryServer, token_server: Any, tmp_path: Path
) -> None:
    settings = settings_for(registry_token, tmp_path)
    client = client_for(settings, tmp_path)
    before = len(token_server.requests)
    push_wheels(client, job_for(settings, "amd64", module="cached"), wheels_for(tmp_path, "x86_64"), index_url=INDEX_URL)
    scopes = token_server.requests[before:]
    assert sorted(scopes) == sorted(set(scopes))  # cached: no scope asked twice
    assert "repository:test/python-musl-wheels:pull,push" in scopes


def test_credentials_from_docker_config(registry_basic: RegistryServer, tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {registry_basic.host: {"auth": auth}}}))
    settings = Settings.load(config={}, env={
        "WHEELS_REGISTRY": f"{registry_basic.host}/test", "HOME": str(tmp_path), "PYPI_INDEX": INDEX_URL,
        "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"),
    }, flags={})
    client = RegistryClient(settings.registry_host, docker_config=str(config))
    result = push_wheels(client, job_for(settings, "amd64", module="fromconfig"), wheels_for(tmp_path, "x86_64"),
                         index_url=INDEX_URL)
    assert client.manifest_exists("test/python-musl-wheels", result.tag) == result.index_digest


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_wrong_password_is_one_clear_line_without_the_password(
    mode: str, registry_basic: RegistryServer, registry_token: RegistryServer, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = registry_basic if mode == "basic" else registry_token
    wrong = "Wr0ng-pa55word-XYZ"
    settings = Settings.load(config={}, env={
        "WHEELS_REGISTRY": f"{server.host}/test", "HOME": str(tmp_path), "PYPI_INDEX": INDEX_URL,
        "WHEELTASKS_CACHE_DIR": str(tmp_path / "cache"),
        "REGISTRY_USERNAME": USERNAME, "REGISTRY_PASSWORD": wrong,
    }, flags={})
    client = client_for(settings, tmp_path)
    with pytest.raises(WheelTasksError) as caught:
        push_wheels(client, job_for(settings, "amd64"), wheels_for(tmp_path, "x86_64"), index_url=INDEX_URL)
    message = str(caught.value)
    assert message == (
        f"registry {server.host} refused the credentials for repository test/python-musl-wheels: "
        f"set REGISTRY_USERNAME/REGISTRY_PASSWORD or docker login {server.host}"
    )
    assert caught.value.exit_code == 2
    captured = capsys.readouterr()
    encoded = base64.b64encode(f"{USERNAME}:{wrong}".encode()).decode()
    for secret in (wrong, encoded):
        assert secret not in message
        assert secret not in repr(caught.value.__cause__) and caught.value.__cause__ is None
        assert secret not in captured.out + captured.err
        assert secret not in caplog.text
    assert wrong not in repr(client) and wrong not in repr(settings)


def test_missing_credentials_say_what_to_do(registry_basic: RegistryServer, tmp_path: Path) -> None:
    client = RegistryClient(registry_basic.host, docker_config=str(tmp_path / "none.json"))
    with pytest.raises(WheelTasksError, match="needs credentials for repository test/x: set REGISTRY_USERNAME"):
        client.tags("test/x")


def test_unreachable_registry(tmp_path: Path, closed_port: int) -> None:
    host = f"127.0.0.1:{closed_port}"
    client = RegistryClient(host, docker_config=str(tmp_path / "none.json"), tries=2, backoff=0.01)
    with pytest.raises(WheelTasksError, match=f"^registry {host} is not reachable .*check that it runs"):
        client.tags("test/x")


def test_missing_manifest_names_the_repository(registry_plain: RegistryServer, tmp_path: Path) -> None:
    client = client_for(settings_for(registry_plain, tmp_path), tmp_path)
    assert client.manifest_exists("test/nothing", "latest") is None
    with pytest.raises(WheelTasksError, match="has no manifest latest in repository test/nothing"):
        client.get_manifest("test/nothing", "latest")


# ---- pull ------------------------------------------------------------------------------


def test_pull_legacy_per_arch_tag(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    job = job_for(settings, "armv7", module="legacy")
    wheels = wheels_for(tmp_path / "src", "armv7l")
    # Old images were single manifests per arch, sometimes labelled with the wrong platform.
    push_single(client, "test/python-musl-wheels", job.legacy_tag, layer_tar(wheels),
                {"architecture": "amd64", "os": "linux"})
    assert job.legacy_tag == "legacy1.0.0-py3.12-armv7"
    pulled = pull_wheels(client, job.repository, job.tag, ARMV7, tmp_path / "out")
    assert pulled is not None and [p.name for p in pulled] == sorted(w.name for w in wheels)
    assert pull_wheels(client, job.repository, job.tag, AMD64, tmp_path / "none") is None


def test_pull_missing_is_none(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    assert pull_wheels(client, settings.repository(Kind.SHARED), "absent1.0-py3.12", AMD64, tmp_path / "d") is None


def _tar(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, link target or None, data) -> tar bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, link, data in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_pull_extracts_only_regular_wheels(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    wheel = make_wheel(tmp_path / "src", "good", "1.0", "musllinux_1_2_x86_64")
    layer = _tar([
        (wheel.name, None, wheel.read_bytes()),
        ("README.txt", None, b"not a wheel"),
        ("link-1.0-py3-none-any.whl", b"/etc/passwd", b""),
        ("not-a-wheel-name.whl", None, b"x"),
    ])
    job = job_for(settings, "amd64", module="mixed")
    push_single(client, "test/python-musl-wheels", job.tag, layer, {"architecture": "amd64", "os": "linux"})
    dest = tmp_path / "out"
    pulled = pull_wheels(client, job.repository, job.tag, AMD64, dest)
    assert pulled == [dest / wheel.name]
    assert sorted(p.name for p in dest.iterdir()) == [wheel.name]  # no temp files left
    assert pulled[0].read_bytes() == wheel.read_bytes()


def test_pull_refuses_path_traversal(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    wheel = make_wheel(tmp_path / "src", "evil", "1.0", "musllinux_1_2_x86_64")
    job = job_for(settings, "amd64", module="evil")
    push_single(client, "test/python-musl-wheels", job.tag, _tar([(f"../{wheel.name}", None, wheel.read_bytes())]),
                {"architecture": "amd64", "os": "linux"})
    with pytest.raises(WheelTasksError, match="escapes its folder"):
        pull_wheels(client, job.repository, job.tag, AMD64, tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / wheel.name).exists()


def test_pull_verifies_blob_digests(registry_restartable: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_restartable, tmp_path)
    client = client_for(settings, tmp_path)
    job = job_for(settings, "amd64", module="corrupt")
    result = push_wheels(client, job, wheels_for(tmp_path, "x86_64"), index_url=INDEX_URL)
    manifest = json.loads(client.get_manifest("test/python-musl-wheels", result.manifest_digest).body)
    digest = manifest["layers"][0]["digest"].removeprefix("sha256:")
    data = next(registry_restartable.storage.rglob(f"blobs/sha256/{digest[:2]}/{digest}/data"))
    data.write_bytes(data.read_bytes().replace(b"VERSION", b"VERSIOM"))  # same size, other bytes
    with pytest.raises(WheelTasksError, match="does not match its digest"):
        pull_wheels(client, job.repository, job.tag, AMD64, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.whl"))


# ---- latest_tag_versions ---------------------------------------------------------------


@pytest.fixture(scope="module")
def versioned_repo(registry_plain: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> Repository:
    tmp_path = tmp_path_factory.mktemp("versions")
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    layer = layer_tar(wheels_for(tmp_path, "x86_64"))
    config = config_blob(job_for(settings, "amd64").arch, layer, {}, None)
    client.put_blob("test/versions", layer)
    client.put_blob("test/versions", config)
    manifest = image_manifest(config, layer, {})
    for tag in (
        "cffi1.9.0-py3.12", "cffi1.10.0-py3.12", "cffi1.11.0-py3.11", "cffi1.12.0rc1-py3.12-amd64",
        "cffi1.2.0-py3.12-armv7", "cryptography-openssl45.0.1-py3.12", "cryptography-libressl46.0.0-py3.12",
        "cryptography44.0.0-py3.12", "jinja2_3.1.4-py3.12", "latest", "weird-tag-",
    ):
        client.put_manifest("test/versions", tag, OCI_MANIFEST, manifest)
    return Repository(registry_plain.host, "test/versions")


@pytest.mark.parametrize(
    ("label", "python", "expected"),
    [
        ("cffi", None, "1.12.0rc1"),
        ("cffi", "3.12", "1.12.0rc1"),
        ("cffi", "3.11", "1.11.0"),
        ("cffi", "3.13", None),
        ("cryptography-openssl", None, "45.0.1"),
        ("cryptography-libressl", "3.12", "46.0.0"),
        ("cryptography", None, "44.0.0"),
        ("jinja2", None, "3.1.4"),
        ("psutil", None, None),
    ],
)
def test_latest_tag_version(
    registry_plain: RegistryServer, versioned_repo: Repository, tmp_path: Path,
    label: str, python: str | None, expected: str | None,
) -> None:
    client = client_for(settings_for(registry_plain, tmp_path), tmp_path)
    found = latest_tag_versions(client, versioned_repo, python).get(label)
    assert found == (Version(expected) if expected else None)


def test_latest_tag_version_uses_packaging_order(registry_plain: RegistryServer, tmp_path: Path) -> None:
    settings = settings_for(registry_plain, tmp_path)
    client = client_for(settings, tmp_path)
    for version in ("1.9.0", "1.10.0"):
        job = job_for(settings, "amd64", module="ordered", version=version)
        push_wheels(client, job, wheels_for(tmp_path / version, "x86_64"), index_url=INDEX_URL)
    assert latest_tag_versions(client, settings.repository(Kind.SHARED), "3.12")["ordered"] == Version("1.10.0")


# ---- transport: chunks, retries, rate limits --------------------------------------------


def test_chunked_upload(registry_plain: RegistryServer, tmp_path: Path) -> None:
    client = client_for(settings_for(registry_plain, tmp_path), tmp_path, chunk_size=1000)
    data = bytes(range(256)) * 17  # 4352 bytes: four full PATCH chunks and a short one
    assert client.put_blob("test/chunks", data) is True
    assert client.get_blob("test/chunks", sha256_digest(data)) == data
    assert client.put_blob("test/chunks", data) is False


def test_retries_until_the_registry_is_back(registry_restartable: RegistryServer, tmp_path: Path) -> None:
    server = registry_restartable
    client = client_for(settings_for(server, tmp_path), tmp_path, tries=4, backoff=0.5)
    assert client.tags("test/x") == []  # scheme known before the outage
    server.stop()
    restarter = threading.Timer(0.3, server.start)
    restarter.start()
    try:
        assert client.put_blob("test/x", b"after the outage") is True
    finally:
        restarter.join()


class RateLimiter:
    """Answers 429 with ``Retry-After`` a few times, then 200 — like Docker Hub's pull limit.

    Why a stand-in: distribution has no rate limiting, so a real 429 cannot be had here.
    """

    def __init__(self, limited: int, retry_after: str) -> None:
        self.left = limited
        limiter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                limiter.serve(self, retry_after)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, request: http.server.BaseHTTPRequestHandler, retry_after: str) -> None:
        status, body = (429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}') if self.left > 0 else (200, b'{"tags":["a"]}')
        self.left -= 1
        request.send_response(status)
        if status == 429:
            request.send_header("Retry-After", retry_after)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rate_limiter() -> Iterator[Callable[[int, str], RateLimiter]]:
    """``rate_limiter(limited, retry_after)``: a RateLimiter on 127.0.0.1, stopped after the test
    (a server the test starts: conftest marks its tests ``services``)."""
    started: list[RateLimiter] = []

    def start(limited: int, retry_after: str) -> RateLimiter:
        started.append(RateLimiter(limited, retry_after))
        return started[-1]

    yield start
    for limiter in started:
        limiter.stop()


def test_429_waits_retry_after_bounded(tmp_path: Path, rate_limiter: Callable[[int, str], RateLimiter]) -> None:
    waits: list[float] = []
    limiter = rate_limiter(2, "3600")
    client = RegistryClient(limiter.host, docker_config=str(tmp_path / "none.json"), sleep=waits.append,
                            max_retry_after=30.0)
    assert client.tags("test/x") == ["a"]
    assert waits == [30.0, 30.0]


def test_429_that_persists_says_what_to_do(tmp_path: Path, rate_limiter: Callable[[int, str], RateLimiter]) -> None:
    limiter = rate_limiter(10, "1")
    client = RegistryClient(limiter.host, docker_config=str(tmp_path / "none.json"), sleep=lambda _: None)
    with pytest.raises(WheelTasksError, match="rate-limits requests for test/x: wait a while or log in"):
        client.tags("test/x")
