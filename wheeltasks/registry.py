"""A small OCI distribution client on ``requests``: tags, manifests, blobs, auth.

It talks to any registry that speaks the distribution API (Docker Hub, GHCR, a
company registry, a local ``registry:2``) without loading images into a daemon.
Registry calls are never cached (plain :class:`requests.Session`): a stale answer
would make a push skip data the registry no longer has.

Credentials never appear in a message, log line or exception text: they travel
only in ``Authorization`` headers, and error texts name the registry and the
repository, never a URL with user information. They go to a token service only over
https (or http on loopback), and to a next-page link only on the registry itself.

Bad servers: every operation ends by its deadline, every answer is read within a
size limit, tag pages are followed at most ``max_tag_pages`` times, and an answer of
the wrong shape is one RemoteError line, never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import math
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

import docker.auth
import docker.errors
import docker.utils.config
import requests
import requests.auth
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from . import remote, running
from .errors import RemoteError, WheelTasksError
from .imagenames import DOCKER_HUB_ALIASES
from .urls import http_url_problem, join, redact

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Registries answer 404 to a manifest HEAD/GET whose type the Accept header omits
# (distribution 2.8 does so for OCI manifests), so always offer all four.
MANIFEST_ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"

_DOCKER_HUB_API = "registry-1.docker.io"
PULL = "pull"
PUSH = "pull,push"

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_LAYER_BYTES = 512 * MIB
# Bounds on what a registry may send besides layers. Manifests: distribution refuses to
# store more than 4 MiB, and the OCI spec names 4 MiB as the size registries must accept.
MANIFEST_LIMIT = 4 * MIB
CONFIG_LIMIT = 4 * MIB
TAG_PAGE_LIMIT = 16 * MIB  # distribution 2.8 ignores `n`: one page holds every tag
TOKEN_LIMIT = 1 * MIB
ERROR_BODY_LIMIT = 64 * 1024  # read only for the registry's own error codes
MAX_TAG_PAGES = 1000
_PROBE_SECONDS = 10.0
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# A token goes into an Authorization header: visible ASCII only (RFC 6750's b64token and JWTs).
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


class Manifest(NamedTuple):
    media_type: str
    body: bytes
    digest: str

    def document(self) -> dict[str, Any]:
        """The manifest's JSON object (``find_manifest`` refuses anything else)."""
        value = json_or_none(self.body)
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True, eq=False)
class _Call:
    """One request: a success's body is read within ``limit`` bytes, into ``sink`` if given."""

    method: str
    url: str
    params: Mapping[str, str] | None = None
    data: bytes | None = None
    headers: Mapping[str, str] | None = None
    limit: int = ERROR_BODY_LIMIT
    sink: BinaryIO | None = None


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange with a registry, its body read within the bounds."""

    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes = b""
    url: str = ""
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


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


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without a port)."""
    name = host
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` -> ("bearer", {realm, service, …})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM_RE.findall(rest))


def _errors(answer: Answer) -> list[dict[str, Any]]:
    """The registry's own errors (``{"errors": [{"code", "message"}]}``), if it sent any."""
    data = json_or_none(answer.body)
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _error_detail(answer: Answer) -> str:
    parts = [f"{e.get('code', '')} {e.get('message', '')}".strip() for e in _errors(answer)]
    return " ".join("; ".join(p for p in parts if p)[:300].split())  # one line, whatever it sent


def _error_codes(answer: Answer) -> set[str]:
    return {str(e.get("code")) for e in _errors(answer)}


def docker_credentials(registry: str, config_path: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, str]:
    """(username, password) for ``registry`` from the Docker config and its credential helpers.

    docker-py reads the config (``docker.auth``); the helper it names runs here, not through
    docker-py's credential store, which waits for it without end and lets its stderr (which
    may quote a secret) reach ours: it gets ``timeout`` seconds, and its output is captured
    and never shown. A config that is not a regular file, or that docker-py cannot read
    (an ``auth`` that is not base64 of user:password, a JSON list), is one line.
    """
    located = docker.utils.config.find_config_file(config_path)
    path = os.fsdecode(located) if isinstance(located, (str, bytes, os.PathLike)) else None
    fix = "fix or remove it, or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
    if path is not None:
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)
        except OSError as exc:
            raise WheelTasksError(f"cannot read the Docker config {path} ({exc.strerror}): {fix}") from None
        if not regular:  # a FIFO would block the read for good
            raise WheelTasksError(f"the Docker config {path} is not a regular file: {fix}")
    try:
        config = docker.auth.load_config(config_path=path) if path else docker.auth.AuthConfig({})
        helper = config.get_credential_store(registry)
        auths = docker.auth.AuthConfig({"auths": dict(config.auths)})
    except (docker.errors.DockerException, ValueError, TypeError, AttributeError, KeyError) as exc:
        # ValueError: binascii.Error and UnicodeDecodeError of an "auth"; the others: wrong shapes.
        raise WheelTasksError(f"cannot read the Docker config {path} ({type(exc).__name__}): {fix}") from None
    if isinstance(helper, str) and helper:
        from_helper = _helper_credentials(helper, registry, timeout)
        if from_helper is not None:
            return from_helper
    try:
        entry = docker.auth.resolve_authconfig(auths, registry=registry)
    except (docker.errors.DockerException, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise WheelTasksError(f"cannot read the Docker config {path} ({type(exc).__name__}): {fix}") from None
    if not isinstance(entry, dict):
        return "", ""
    username = entry.get("Username") or entry.get("username") or ""
    password = entry.get("Password") or entry.get("password") or ""
    return str(username), str(password)


def _helper_credentials(name: str, registry: str, timeout: float) -> tuple[str, str] | None:
    """What ``docker-credential-<name> get`` answers for ``registry`` (None: it has none),
    within ``timeout`` seconds; its stderr is read, never shown."""
    program = f"docker-credential-{name}"
    fix = f"check `docker login {registry}` and the helper, or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
    executable = shutil.which(program)
    if executable is None:
        raise WheelTasksError(
            f"the Docker credential helper {program} (named in the Docker config) is not installed: {fix}"
        )
    # The protocol's server name: Docker Hub's is its v1 index URL (as the docker CLI asks).
    server = docker.auth.INDEX_URL if registry in DOCKER_HUB_ALIASES else registry
    try:
        process = running.start(
            [executable, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise WheelTasksError(f"the Docker credential helper {program} could not start ({exc.strerror}): {fix}") from None
    try:
        with running.process(process):
            out, _ = process.communicate(server.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(process)
        raise WheelTasksError(
            f"the Docker credential helper {program} did not answer within {timeout:g} s (REMOTE_TIMEOUT) "
            f"for registry {registry}: stopped it; {fix}"
        ) from None
    except BaseException:
        _end(process)
        raise
    if process.returncode != 0:
        if b"credentials not found" in out:
            return None
        raise WheelTasksError(
            f"the Docker credential helper {program} failed (exit {process.returncode}) for registry {registry}: {fix}"
        )
    answer = json_or_none(out)
    if not isinstance(answer, dict) or not all(isinstance(answer.get(k, ""), str) for k in ("Username", "Secret")):
        raise WheelTasksError(f"the Docker credential helper {program} answered something that is not credentials: {fix}")
    username, secret = answer.get("Username", ""), answer.get("Secret", "")
    if username == docker.auth.TOKEN_USERNAME:
        return "", ""  # an identity token, which this client does not use (as before: docker-py's IdentityToken)
    return (username, secret) if username or secret else None


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill a helper and all it started (its process group), and close its pipes unread: a
    child that outlived it must not keep us reading."""
    running.kill(process)
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        process.wait(5)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


class _Token(NamedTuple):
    value: str
    expires: float


class RegistryClient:
    """One registry host; operations take the repository path (``namespace/repo``).

    Each operation (one request with its retries, authentication and body) ends by its
    deadline (``timeout`` seconds), and every answer is read within a size limit: a layer
    within ``max_layer_bytes``, manifests, tag pages and tokens within fixed bounds.
    """

    def __init__(
        self,
        registry: str,
        *,
        username: str = "",
        password: str = "",
        ca_bundle: str = "",
        docker_config: str | None = None,
        tries: int = 4,
        backoff: float = 0.5,
        max_retry_after: float = 60.0,
        chunk_size: int = 16 * MIB,
        timeout: float = DEFAULT_TIMEOUT,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        max_tag_pages: int = MAX_TAG_PAGES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.tries = max(1, tries)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.max_layer_bytes = max_layer_bytes
        self.max_tag_pages = max_tag_pages
        self._sleep = sleep
        if not username and not password:
            username, password = docker_credentials(registry, docker_config, timeout)
        self._credentials = (username, password) if username or password else None
        self._session = remote.Session()
        self._session.verify = ca_bundle or True
        self._base: str | None = None
        self._scheme = ""  # "basic" or "bearer" once the registry has told us
        self._bearer: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r})"

    def close(self) -> None:
        self._session.close()

    # ---- operations -------------------------------------------------------------------

    def tags(self, repo: str, page_size: int = 100) -> list[str]:
        """Every tag of ``repo`` (following ``Link`` pages); [] when the repository is unknown.

        The listing is one operation: all its pages together end by one deadline.
        """
        target = f"/v2/{repo}/tags/list"
        params: dict[str, str] | None = {"n": str(page_size)}
        tags: list[str] = []
        seen: set[str] = set()
        deadline = remote.Deadline(self.timeout)
        for _ in range(self.max_tag_pages):
            answer = self._request(
                "GET", repo, target, PULL, "list the tags of", params=params, limit=TAG_PAGE_LIMIT, deadline=deadline
            )
            if answer.status == 404:
                return tags
            self._check(answer, repo, "list the tags of")
            tags.extend(self._page_tags(answer, repo))
            following = answer.links.get("next", {}).get("url")
            if not following:
                return tags
            target = self._same_origin(self._joined(answer, following, f"a tag page link of {repo}"), repo)
            if target in seen:
                raise RemoteError(
                    f"registry {self.registry} sent tag pages of {repo} whose Link leads back to an earlier page: "
                    "retry; if it persists, report it to the registry's operators"
                )
            seen.add(target)
            params = None  # the next link carries n and last itself
        raise RemoteError(
            f"registry {self.registry} sent more than {self.max_tag_pages} pages of tags for {repo} "
            "(its Link header never ends): retry later; if it persists, report it to the registry's operators"
        )

    def manifest_exists(self, repo: str, ref: str) -> str | None:
        """The digest of manifest ``ref`` (tag or digest), or None; a HEAD, cheap on rate limits."""
        answer = self._request(
            "HEAD", repo, self._manifest_path(repo, ref), PULL, f"look up {ref} in",
            headers={"Accept": MANIFEST_ACCEPT},
        )  # fmt: skip
        if answer.status == 404:
            return None
        self._check(answer, repo, f"look up {ref} in")
        digest = answer.headers.get("Docker-Content-Digest")
        if is_digest(digest):
            return digest
        found = self.find_manifest(repo, ref)
        return found.digest if found else None

    def find_manifest(self, repo: str, ref: str) -> Manifest | None:
        """Manifest or index ``ref`` (OCI or Docker types), or None when it does not exist."""
        doing = f"read manifest {ref} of"
        answer = self._request(
            "GET", repo, self._manifest_path(repo, ref), PULL, doing, headers={"Accept": MANIFEST_ACCEPT},
            limit=MANIFEST_LIMIT,
        )  # fmt: skip
        if answer.status == 404:
            return None
        self._check(answer, repo, doing)
        body = answer.body
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise RemoteError(
                f"registry {self.registry} sent manifest {ref} of {repo} with digest {digest}: "
                "retry; if it persists the registry's storage is damaged"
            )
        if not isinstance(json_or_none(body), dict):
            raise RemoteError(
                f"registry {self.registry} sent manifest {ref} of {repo} that is not a JSON object: "
                "push that tag again, or check the registry"
            )
        return Manifest(_media_type(answer), body, digest)

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        found = self.find_manifest(repo, ref)
        if found is None:
            raise WheelTasksError(
                f"registry {self.registry} has no manifest {ref} in repository {repo}: check the tag and repository"
            )
        return found

    def blob_exists(self, repo: str, digest: str, actions: str = PULL) -> bool:
        doing = f"look up blob {digest} in"
        answer = self._request("HEAD", repo, f"/v2/{repo}/blobs/{self._digest(repo, digest)}", actions, doing)
        if answer.status == 404:
            return False
        self._check(answer, repo, doing)
        return True

    def get_blob(self, repo: str, digest: str, limit: int | None = None) -> bytes:
        """Blob ``digest`` in memory (at most ``limit`` bytes, default ``max_layer_bytes``), verified."""
        answer = self._get_blob(repo, digest, limit or self.max_layer_bytes, None)
        self._verify(repo, digest, sha256_digest(answer.body))
        return answer.body

    def download_blob(self, repo: str, digest: str, sink: BinaryIO) -> None:
        """Blob ``digest`` written to ``sink`` (a seekable file, rewritten from its start),
        at most ``max_layer_bytes``, its sha256 verified."""
        self._get_blob(repo, digest, self.max_layer_bytes, sink)
        sink.flush()
        sink.seek(0)
        hasher = hashlib.sha256()
        while chunk := sink.read(remote.CHUNK * 16):
            hasher.update(chunk)
        sink.seek(0)
        self._verify(repo, digest, "sha256:" + hasher.hexdigest())

    def put_blob(self, repo: str, data: bytes, digest: str | None = None) -> bool:
        """Upload ``data`` unless the registry has it; True when it was uploaded."""
        digest = digest or sha256_digest(data)
        if self.blob_exists(repo, digest, PUSH):
            return False
        location = self._start_upload(repo)
        if len(data) > self.chunk_size:
            for start in range(0, len(data), self.chunk_size):
                location = self._upload_chunk(repo, location, data, start)
            data = b""
        doing = f"upload blob {digest} to"
        answer = self._request(
            "PUT", repo, location, PUSH, doing, params={"digest": digest}, data=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        self._check(answer, repo, doing, expect=(201,))
        return True

    def put_manifest(self, repo: str, ref: str, media_type: str, body: bytes) -> str:
        """PUT a manifest or index at ``ref`` (tag or digest); its digest."""
        doing = f"write manifest {ref} to"
        answer = self._request(
            "PUT", repo, self._manifest_path(repo, ref), PUSH, doing, data=body, headers={"Content-Type": media_type}
        )
        self._check(answer, repo, doing, expect=(201,))
        return sha256_digest(body)

    # ---- helpers of the operations ------------------------------------------------------

    def _page_tags(self, answer: Answer, repo: str) -> list[str]:
        data = json_or_none(answer.body)
        tags = data.get("tags", []) if isinstance(data, dict) else None
        if tags is None and isinstance(data, dict):
            return []  # distribution sends "tags": null for a repository without tags
        if not isinstance(tags, list):
            raise RemoteError(
                f"registry {self.registry} sent a malformed tag list for {repo} (not a JSON object with a list of "
                "tags): retry; if it persists, report it to the registry's operators"
            )
        return [t for t in tags if isinstance(t, str)]

    def _on_registry(self, url: str) -> bool:
        return urlsplit(url)[:2] == urlsplit(self.base_url)[:2]

    def _same_origin(self, url: str, repo: str) -> str:
        """A URL the registry sent (a next page) must stay on the registry: credentials go with it."""
        if not self._on_registry(url):
            raise RemoteError(
                f"registry {self.registry} sent a tag page link of {repo} to another host: not following it "
                "with the credentials; report it to the registry's operators"
            )
        return url

    def _get_blob(self, repo: str, digest: str, limit: int, sink: BinaryIO | None) -> Answer:
        doing = f"download blob {digest} of"
        answer = self._request(
            "GET", repo, f"/v2/{repo}/blobs/{self._digest(repo, digest)}", PULL, doing, limit=limit, sink=sink
        )
        if answer.status == 404:
            raise RemoteError(
                f"registry {self.registry} lacks blob {digest} of repository {repo}: push the image again"
            )
        self._check(answer, repo, doing)
        return answer

    def _digest(self, repo: str, digest: str) -> str:
        if not is_digest(digest):
            shown = digest[:80] if isinstance(digest, str) else type(digest).__name__
            raise RemoteError(
                f"an image in {self.registry}/{repo} names blob {shown!r}, which is not a sha256 digest: "
                "push that image again"
            )
        return digest

    def _verify(self, repo: str, digest: str, actual: str) -> None:
        if actual != digest:
            raise RemoteError(
                f"blob {digest} from registry {self.registry} ({repo}) does not match its digest: "
                "retry; if it persists the registry's storage is damaged"
            )

    # ---- upload steps -----------------------------------------------------------------

    def _start_upload(self, repo: str) -> str:
        doing = "start a blob upload to"
        answer = self._request("POST", repo, f"/v2/{repo}/blobs/uploads/", PUSH, doing)
        self._check(answer, repo, doing, expect=(202,))
        return self._location(answer, repo)

    def _upload_chunk(self, repo: str, location: str, data: bytes, start: int) -> str:
        chunk = data[start : start + self.chunk_size]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        }
        doing = "upload a blob chunk to"
        answer = self._request("PATCH", repo, location, PUSH, doing, data=chunk, headers=headers)
        self._check(answer, repo, doing, expect=(202,))
        return self._location(answer, repo)

    def _location(self, answer: Answer, repo: str) -> str:
        location = answer.headers.get("Location")
        if not location:
            raise RemoteError(
                f"registry {self.registry} gave no upload location for {repo}: it does not follow the OCI "
                "distribution API; use another registry"
            )
        return self._joined(answer, location, f"an upload location for {repo}")

    def _joined(self, answer: Answer, reference: str, what: str) -> str:
        """A URL the registry sent (a Link, a Location), resolved; one line if it is no URL
        to follow (the reason never quotes it: a signed URL carries secrets)."""
        try:
            return join(answer.url, reference)
        except ValueError as exc:
            raise RemoteError(
                f"registry {self.registry} sent {what} that cannot be followed ({exc}): "
                "report it to the registry's operators"
            ) from None

    def _manifest_path(self, repo: str, ref: str) -> str:
        return f"/v2/{repo}/manifests/{ref}"

    # ---- transport: scheme, deadline, retries, auth -----------------------------------

    @property
    def base_url(self) -> str:
        return self._base_url(remote.Deadline(self.timeout))

    def _base_url(self, deadline: remote.Deadline) -> str:
        if self._base is None:
            probe = remote.Deadline(max(0.0, min(deadline.remaining(), _PROBE_SECONDS)))
            self._base = self._probe_scheme(probe)
        return self._base

    def _api_host(self) -> str:
        return _DOCKER_HUB_API if self.registry in DOCKER_HUB_ALIASES else self.registry

    def _probe_scheme(self, deadline: remote.Deadline) -> str:
        """HTTPS; a loopback registry falls back to HTTP when HTTPS fails, as Docker does."""
        https = f"https://{self._api_host()}"
        if not is_loopback(self.registry):
            return https

        def probe() -> None:
            self._session.get(f"{https}/v2/", timeout=deadline.timeout(5.0), stream=True).close()

        try:
            remote.call(probe, deadline)
        except requests.exceptions.SSLError:
            return f"http://{self.registry}"
        except (requests.RequestException, urllib3.exceptions.HTTPError, remote.DeadlineExceeded):
            # Nothing answers (yet): plain HTTP is the loopback default; requests will retry.
            return f"http://{self.registry}"
        return https

    def _request(
        self,
        method: str,
        repo: str,
        target: str,
        actions: str,
        doing: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = ERROR_BODY_LIMIT,
        sink: BinaryIO | None = None,
        deadline: remote.Deadline | None = None,
    ) -> Answer:
        """Send with auth, all within one deadline (the operation's, when it is one of
        several requests); retry 5xx/connection errors with backoff and 429 after
        Retry-After. ``target`` is a path on the registry or a URL it sent."""
        deadline = deadline or remote.Deadline(self.timeout)
        try:
            url = target if "://" in target else self._base_url(deadline) + target
            call = _Call(method, url, params, data, headers, limit, sink)
            return self._send(call, repo, actions, deadline)
        except remote.DeadlineExceeded:
            raise RemoteError(
                f"registry {self.registry} did not finish answering within {self.timeout:g} s when trying to "
                f"{doing} {repo}: check that it runs; on a slow link raise REMOTE_TIMEOUT"
            ) from None
        except remote.TooLarge as exc:
            hint = "raise MAX_LAYER_MB if the image is genuine" if limit == self.max_layer_bytes else "check the registry"
            raise RemoteError(
                f"registry {self.registry} sent more than {remote.mib(exc.limit)} when trying to {doing} {repo}: "
                f"stopped reading; {hint}"
            ) from None

    def _send(self, call: _Call, repo: str, actions: str, deadline: remote.Deadline) -> Answer:
        challenged = False
        attempt = 0
        while True:
            attempt += 1
            try:
                # A URL the registry sent (an upload location) may be elsewhere, e.g. signed
                # storage: credentials and tokens go only to the registry itself.
                auth = self._auth_header(repo, actions, deadline) if self._on_registry(call.url) else ""
                answer = self._exchange(call, deadline, auth)
            except _Unreachable as exc:
                if attempt >= self.tries or not self._pause(self.backoff * 2 ** (attempt - 1), deadline):
                    raise RemoteError(
                        f"registry {self.registry} is not reachable ({exc} after {attempt} tries): "
                        "check that it runs and the host in WHEELS_REGISTRY"
                    ) from None
                continue
            if answer.status == 401 and not challenged:
                challenged = True
                attempt -= 1  # authenticating is not a failed try
                self._authenticate(answer, repo, actions)
                continue
            if answer.status == 429 and attempt < self.tries:
                if self._pause(self._retry_after(answer, attempt), deadline):
                    continue
            elif answer.status >= 500 and attempt < self.tries:
                if self._pause(self.backoff * 2 ** (attempt - 1), deadline):
                    continue
            return answer

    def _pause(self, seconds: float, deadline: remote.Deadline) -> bool:
        """Wait before a retry; False when the deadline would pass first (then do not retry)."""
        if seconds >= deadline.remaining():
            return False
        self._sleep(seconds)
        return True

    def _exchange(self, call: _Call, deadline: remote.Deadline, auth: str) -> Answer:
        """One request and its answer on a daemon thread (see remote.call); a success's body is
        read within ``call.limit`` (into ``call.sink`` if given), an error's only for its detail."""
        sink = call.sink

        def run() -> Answer:
            with self._session.request(
                call.method, call.url, params=call.params, data=call.data, headers=call.headers,
                auth=_HeaderAuth(auth), timeout=deadline.timeout(), stream=True,
            ) as response:  # fmt: skip
                body = b""
                if not 200 <= response.status_code < 300:
                    body = remote.read_body(response, deadline, ERROR_BODY_LIMIT, truncate=True)
                elif sink is not None:
                    sink.seek(0)
                    sink.truncate()
                    remote.read_body(response, deadline, call.limit, sink)
                else:
                    body = remote.read_body(response, deadline, call.limit)
                return Answer(response.status_code, response.headers, body, response.url, response.links)

        try:
            return remote.call(run, deadline)
        except requests.exceptions.SSLError:
            raise WheelTasksError(
                f"TLS verification failed for registry {self.registry}: set CA_BUNDLE (or PIP_CERT) "
                "to the CA file that signs its certificate"
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError) as exc:  # fmt: skip
            raise _Unreachable(type(exc).__name__) from None
        except remote.BadRedirect as exc:
            raise RemoteError(
                f"registry {self.registry} sent {exc} for {urlsplit(call.url).path}: check the registry"
            ) from None
        except (requests.RequestException, ValueError) as exc:  # a redirect loop, a Location that is no URL...
            raise RemoteError(
                f"registry {self.registry} sent an answer that cannot be followed ({type(exc).__name__}) "
                f"for {urlsplit(call.url).path}: check the registry"
            ) from None

    def _retry_after(self, answer: Answer, attempt: int) -> float:
        value = answer.headers.get("Retry-After", "")
        try:
            wait = float(value)
        except ValueError:
            wait = self.backoff * 2 ** (attempt - 1)
        if not math.isfinite(wait):
            wait = self.max_retry_after
        return min(max(wait, 0.0), self.max_retry_after)

    def _auth_header(self, repo: str, actions: str, deadline: remote.Deadline) -> str:
        if self._scheme == "basic" and self._credentials:
            return _basic(self._credentials)
        if self._scheme == "bearer":
            token = self._tokens.get((repo, actions))
            if token is None or token.expires <= time.monotonic():
                token = self._fetch_token(repo, actions, deadline)
            return f"Bearer {token.value}" if token.value else ""
        return ""

    def _authenticate(self, answer: Answer, repo: str, actions: str) -> None:
        """Learn the scheme from a 401's ``WWW-Authenticate``; drop a rejected token."""
        scheme, params = parse_challenge(answer.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self._credentials or self._scheme == "basic":
                raise self._refused(repo)
            self._scheme = "basic"
        elif scheme == "bearer" and params.get("realm"):
            self._check_realm(params["realm"])
            if self._scheme == "bearer" and (repo, actions) in self._tokens:
                del self._tokens[(repo, actions)]  # expired or revoked: fetch a fresh one once
            self._scheme, self._bearer = "bearer", params
        else:
            raise self._refused(repo)

    def _check_realm(self, realm: str) -> None:
        """The token service gets the credentials: only over https, or http on loopback."""
        problem = http_url_problem(realm)
        if problem:
            raise RemoteError(
                f"registry {self.registry} names a token service that is not an http(s) URL "
                f"({redact(realm)[:100]!r}: {problem}): check the registry's auth configuration"
            )
        parts = urlsplit(realm)
        if parts.scheme == "http" and self._credentials and not is_loopback(parts.hostname or ""):
            raise WheelTasksError(
                f"registry {self.registry} wants the credentials sent to its token service {parts.hostname} over "
                "plain http: not sending them unencrypted; configure an https token realm on the registry"
            )

    def _fetch_token(self, repo: str, actions: str, deadline: remote.Deadline) -> _Token:
        params = {"scope": f"repository:{repo}:{actions}"}
        if self._bearer.get("service"):
            params["service"] = self._bearer["service"]
        auth = _basic(self._credentials) if self._credentials else ""
        try:
            answer = self._exchange(_Call("GET", self._bearer["realm"], params, limit=TOKEN_LIMIT), deadline, auth)
        except _Unreachable as exc:
            raise RemoteError(
                f"the token service of registry {self.registry} is not reachable ({exc}): "
                "check the registry's auth configuration and your network"
            ) from None
        if answer.status in (401, 403):
            raise self._refused(repo)
        if answer.status != 200:
            raise RemoteError(
                f"the token service of registry {self.registry} answered {answer.status} for "
                f"repository {repo}: retry later or check the registry's auth configuration"
            )
        token = self._parse_token(answer.body)
        self._tokens[(repo, actions)] = token
        return token

    def _parse_token(self, body: bytes) -> _Token:
        data = json_or_none(body)
        value = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
            what = "no usable token" if isinstance(data, dict) else "something that is not a JSON object"
            raise RemoteError(
                f"the token service of registry {self.registry} answered {what}: "
                "retry later, or check the registry's auth configuration"
            )
        try:
            lifetime = float(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            lifetime = 60.0
        if not math.isfinite(lifetime):
            lifetime = 60.0
        return _Token(value, time.monotonic() + min(max(lifetime - 10, 1.0), 24 * 3600.0))

    def _refused(self, repo: str) -> WheelTasksError:
        what = "refused the credentials" if self._credentials else "needs credentials"
        return WheelTasksError(
            f"registry {self.registry} {what} for repository {repo}: "
            f"set REGISTRY_USERNAME/REGISTRY_PASSWORD or docker login {self.registry}"
        )

    def _check(self, answer: Answer, repo: str, doing: str, expect: tuple[int, ...] = (200,)) -> None:
        """Turn an unexpected answer into one line that names the registry and repository."""
        status = answer.status
        if status in expect:
            return
        if status == 401:
            raise self._refused(repo)
        if status == 403:
            raise WheelTasksError(
                f"registry {self.registry} denies access to repository {repo} (trying to {doing} it): "
                "use an account with push/pull rights (REGISTRY_USERNAME) or another WHEELS_REGISTRY"
            )
        if status == 404 and "NAME_UNKNOWN" in _error_codes(answer):
            raise WheelTasksError(
                f"registry {self.registry} has no repository {repo}: create it or check WHEELS_REGISTRY"
            )
        if status == 429:
            raise RemoteError(
                f"registry {self.registry} rate-limits requests for {repo}: wait a while or log in (docker login)"
            )
        detail = _error_detail(answer)
        raise RemoteError(
            f"registry {self.registry} answered {status} when trying to {doing} repository {repo}"
            f"{': ' + detail if detail else ''}; retry, or check the registry's logs"
        )


class _Unreachable(Exception):
    """No answer (refused, reset, timed out): worth a retry."""


class _HeaderAuth(requests.auth.AuthBase):
    """Sets ``Authorization`` (or nothing); being an auth object keeps ~/.netrc from overriding it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._value:
            request.headers["Authorization"] = self._value
        return request


def _basic(credentials: tuple[str, str] | None) -> str:
    user, password = credentials or ("", "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _media_type(answer: Answer) -> str:
    header = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if header in INDEX_TYPES | IMAGE_MANIFEST_TYPES:
        return header
    data = json_or_none(answer.body)
    declared = data.get("mediaType") if isinstance(data, dict) else None
    return declared if isinstance(declared, str) and declared else header
