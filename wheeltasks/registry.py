"""A small OCI distribution client on ``requests``: tags, manifests, blobs, auth.

It talks to any registry that speaks the distribution API (Docker Hub, GHCR, a
company registry, a local ``registry:2``) without loading images into a daemon.
Registry calls are never cached (plain :class:`requests.Session`): a stale answer
would make a push skip data the registry no longer has.

Credentials never appear in a message, log line or exception text: they travel
only in ``Authorization`` headers, and error texts name the registry and the
repository, never a URL with user information.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import urljoin

import docker.auth
import docker.errors
import requests
import requests.auth

from .errors import WheelTasksError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# Registries answer 404 to a manifest HEAD/GET whose type the Accept header omits
# (distribution 2.8 does so for OCI manifests), so always offer all four.
MANIFEST_ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, {DOCKER_LIST}, {DOCKER_MANIFEST}"

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
PULL = "pull"
PUSH = "pull,push"

_TIMEOUT = (10.0, 300.0)
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


class Manifest(NamedTuple):
    media_type: str
    body: bytes
    digest: str


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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


def _error_detail(response: requests.Response) -> str:
    """The registry's own error codes/messages (``{"errors": [...]}``), if any."""
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return ""
    parts = [f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)]
    return "; ".join(p for p in parts if p)[:300]


def _error_codes(response: requests.Response) -> set[str]:
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return set()
    return {str(e.get("code")) for e in errors if isinstance(e, dict)}


def docker_credentials(registry: str, config_path: str | None = None) -> tuple[str, str]:
    """(username, password) for ``registry`` from the Docker config (and its credential helpers)."""
    try:
        config = docker.auth.load_config(config_path=config_path)
        entry = docker.auth.resolve_authconfig(config, registry=registry)
    except docker.errors.DockerException as exc:
        # The helper's own message may quote its output; keep only the type.
        raise WheelTasksError(
            f"the Docker credential helper failed for registry {registry} ({type(exc).__name__}): "
            "check `docker login` or set REGISTRY_USERNAME/REGISTRY_PASSWORD"
        ) from None
    if not entry:
        return "", ""
    username = entry.get("Username") or entry.get("username") or ""
    password = entry.get("Password") or entry.get("password") or ""
    return str(username), str(password)


class _Token(NamedTuple):
    value: str
    expires: float


class RegistryClient:
    """One registry host; operations take the repository path (``namespace/repo``)."""

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
        chunk_size: int = 16 * 1024 * 1024,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.tries = max(1, tries)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.chunk_size = chunk_size
        self._sleep = sleep
        if not username and not password:
            username, password = docker_credentials(registry, docker_config)
        self._credentials = (username, password) if username or password else None
        self._session = requests.Session()
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
        """Every tag of ``repo`` (following ``Link`` pages); [] when the repository is unknown."""
        url: str | None = f"{self.base_url}/v2/{repo}/tags/list"
        params: dict[str, str] | None = {"n": str(page_size)}
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            response = self._request("GET", repo, url, PULL, params=params)
            if response.status_code == 404:
                return tags
            self._check(response, repo, "list the tags of")
            tags.extend(response.json().get("tags") or [])
            following = response.links.get("next", {}).get("url")
            url = urljoin(response.url, following) if following else None
            params = None  # the next link carries n and last itself
        return tags

    def manifest_exists(self, repo: str, ref: str) -> str | None:
        """The digest of manifest ``ref`` (tag or digest), or None; a HEAD, cheap on rate limits."""
        response = self._request("HEAD", repo, self._manifest_url(repo, ref), PULL, headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, repo, f"look up {ref} in")
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        found = self.find_manifest(repo, ref)
        return found.digest if found else None

    def find_manifest(self, repo: str, ref: str) -> Manifest | None:
        """Manifest or index ``ref`` (OCI or Docker types), or None when it does not exist."""
        response = self._request("GET", repo, self._manifest_url(repo, ref), PULL, headers={"Accept": MANIFEST_ACCEPT})
        if response.status_code == 404:
            return None
        self._check(response, repo, f"read manifest {ref} of")
        body = response.content
        digest = sha256_digest(body)
        if ref.startswith("sha256:") and digest != ref:
            raise WheelTasksError(
                f"registry {self.registry} sent manifest {ref} of {repo} with digest {digest}: "
                "retry; if it persists the registry's storage is damaged"
            )
        return Manifest(_media_type(response, body), body, digest)

    def get_manifest(self, repo: str, ref: str) -> Manifest:
        found = self.find_manifest(repo, ref)
        if found is None:
            raise WheelTasksError(
                f"registry {self.registry} has no manifest {ref} in repository {repo}: check the tag and repository"
            )
        return found

    def blob_exists(self, repo: str, digest: str, actions: str = PULL) -> bool:
        response = self._request("HEAD", repo, f"{self.base_url}/v2/{repo}/blobs/{digest}", actions)
        if response.status_code == 404:
            return False
        self._check(response, repo, f"look up blob {digest} in")
        return True

    def get_blob(self, repo: str, digest: str) -> bytes:
        """Blob ``digest``, its sha256 verified."""
        response = self._request("GET", repo, f"{self.base_url}/v2/{repo}/blobs/{digest}", PULL)
        if response.status_code == 404:
            raise WheelTasksError(
                f"registry {self.registry} lacks blob {digest} of repository {repo}: push the image again"
            )
        self._check(response, repo, f"download blob {digest} of")
        data = response.content
        if sha256_digest(data) != digest:
            raise WheelTasksError(
                f"blob {digest} from registry {self.registry} ({repo}) does not match its digest: "
                "retry; if it persists the registry's storage is damaged"
            )
        return data

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
        response = self._request(
            "PUT", repo, location, PUSH, params={"digest": digest}, data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(response, repo, f"upload blob {digest} to", expect=(201,))
        return True

    def put_manifest(self, repo: str, ref: str, media_type: str, body: bytes) -> str:
        """PUT a manifest or index at ``ref`` (tag or digest); its digest."""
        response = self._request(
            "PUT", repo, self._manifest_url(repo, ref), PUSH, data=body, headers={"Content-Type": media_type}
        )
        self._check(response, repo, f"write manifest {ref} to", expect=(201,))
        return sha256_digest(body)

    # ---- upload steps -----------------------------------------------------------------

    def _start_upload(self, repo: str) -> str:
        response = self._request("POST", repo, f"{self.base_url}/v2/{repo}/blobs/uploads/", PUSH)
        self._check(response, repo, "start a blob upload to", expect=(202,))
        return self._location(response, repo)

    def _upload_chunk(self, repo: str, location: str, data: bytes, start: int) -> str:
        chunk = data[start : start + self.chunk_size]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        }
        response = self._request("PATCH", repo, location, PUSH, data=chunk, headers=headers)
        self._check(response, repo, "upload a blob chunk to", expect=(202,))
        return self._location(response, repo)

    def _location(self, response: requests.Response, repo: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise WheelTasksError(
                f"registry {self.registry} gave no upload location for {repo}: it does not follow the OCI "
                "distribution API; use another registry"
            )
        return urljoin(response.url, location)

    def _manifest_url(self, repo: str, ref: str) -> str:
        return f"{self.base_url}/v2/{repo}/manifests/{ref}"

    # ---- transport: scheme, retries, auth ---------------------------------------------

    @property
    def base_url(self) -> str:
        if self._base is None:
            self._base = self._probe_scheme()
        return self._base

    def _api_host(self) -> str:
        return _DOCKER_HUB_API if self.registry in (DOCKER_HUB, "index.docker.io") else self.registry

    def _probe_scheme(self) -> str:
        """HTTPS; a loopback registry falls back to HTTP when HTTPS fails, as Docker does."""
        https = f"https://{self._api_host()}"
        if not is_loopback(self.registry):
            return https
        try:
            self._session.get(f"{https}/v2/", timeout=(5.0, 10.0))
        except requests.exceptions.SSLError:
            return f"http://{self.registry}"
        except requests.exceptions.ConnectionError:
            # Nothing listens (yet): plain HTTP is the loopback default; requests will retry.
            return f"http://{self.registry}"
        return https

    def _request(
        self,
        method: str,
        repo: str,
        url: str,
        actions: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with auth; retry 5xx/connection errors with backoff and 429 after Retry-After."""
        challenged = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._session.request(
                    method, url, params=params, data=data, headers=headers, timeout=_TIMEOUT,
                    auth=_HeaderAuth(self._auth_header(repo, actions)),
                )
            except requests.exceptions.SSLError:
                raise WheelTasksError(
                    f"TLS verification failed for registry {self.registry}: set CA_BUNDLE (or PIP_CERT) "
                    "to the CA file that signs its certificate"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                if attempt >= self.tries:
                    raise WheelTasksError(
                        f"registry {self.registry} is not reachable ({type(exc).__name__} after {attempt} tries): "
                        "check that it runs and the host in WHEELS_REGISTRY"
                    ) from None
                self._sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if response.status_code == 401 and not challenged:
                challenged = True
                attempt -= 1  # authenticating is not a failed try
                self._authenticate(response, repo, actions)
                continue
            if response.status_code == 429 and attempt < self.tries:
                self._sleep(self._retry_after(response, attempt))
                continue
            if response.status_code >= 500 and attempt < self.tries:
                self._sleep(self.backoff * 2 ** (attempt - 1))
                continue
            return response

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        value = response.headers.get("Retry-After", "")
        try:
            wait = float(value)
        except ValueError:
            wait = self.backoff * 2 ** (attempt - 1)
        return min(max(wait, 0.0), self.max_retry_after)

    def _auth_header(self, repo: str, actions: str) -> str:
        if self._scheme == "basic" and self._credentials:
            return _basic(self._credentials)
        if self._scheme == "bearer":
            token = self._tokens.get((repo, actions))
            if token is None or token.expires <= time.monotonic():
                token = self._fetch_token(repo, actions)
            return f"Bearer {token.value}" if token.value else ""
        return ""

    def _authenticate(self, response: requests.Response, repo: str, actions: str) -> None:
        """Learn the scheme from a 401's ``WWW-Authenticate``; drop a rejected token."""
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self._credentials or self._scheme == "basic":
                raise self._refused(repo)
            self._scheme = "basic"
        elif scheme == "bearer" and params.get("realm"):
            if self._scheme == "bearer" and (repo, actions) in self._tokens:
                del self._tokens[(repo, actions)]  # expired or revoked: fetch a fresh one once
            self._scheme, self._bearer = "bearer", params
        else:
            raise self._refused(repo)

    def _fetch_token(self, repo: str, actions: str) -> _Token:
        params = {"scope": f"repository:{repo}:{actions}"}
        if self._bearer.get("service"):
            params["service"] = self._bearer["service"]
        auth = _HeaderAuth(_basic(self._credentials) if self._credentials else "")
        try:
            response = self._session.get(self._bearer["realm"], params=params, auth=auth, timeout=_TIMEOUT)
        except requests.exceptions.RequestException as exc:
            raise WheelTasksError(
                f"the token service of registry {self.registry} is not reachable ({type(exc).__name__}): "
                "check the registry's auth configuration and your network"
            ) from None
        if response.status_code in (401, 403):
            raise self._refused(repo)
        if response.status_code != 200:
            raise WheelTasksError(
                f"the token service of registry {self.registry} answered {response.status_code} for "
                f"repository {repo}: retry later or check the registry's auth configuration"
            )
        body = response.json()
        value = str(body.get("token") or body.get("access_token") or "")
        lifetime = float(body.get("expires_in") or 60)
        token = _Token(value, time.monotonic() + max(lifetime - 10, 1))
        self._tokens[(repo, actions)] = token
        return token

    def _refused(self, repo: str) -> WheelTasksError:
        what = "refused the credentials" if self._credentials else "needs credentials"
        return WheelTasksError(
            f"registry {self.registry} {what} for repository {repo}: "
            f"set REGISTRY_USERNAME/REGISTRY_PASSWORD or docker login {self.registry}"
        )

    def _check(self, response: requests.Response, repo: str, doing: str, expect: tuple[int, ...] = (200,)) -> None:
        """Turn an unexpected answer into one line that names the registry and repository."""
        status = response.status_code
        if status in expect:
            return
        if status == 401:
            raise self._refused(repo)
        if status == 403:
            raise WheelTasksError(
                f"registry {self.registry} denies access to repository {repo} (trying to {doing} it): "
                "use an account with push/pull rights (REGISTRY_USERNAME) or another WHEELS_REGISTRY"
            )
        if status == 404 and "NAME_UNKNOWN" in _error_codes(response):
            raise WheelTasksError(
                f"registry {self.registry} has no repository {repo}: create it or check WHEELS_REGISTRY"
            )
        if status == 429:
            raise WheelTasksError(
                f"registry {self.registry} rate-limits requests for {repo}: wait a while or log in (docker login)"
            )
        detail = _error_detail(response)
        raise WheelTasksError(
            f"registry {self.registry} answered {status} when trying to {doing} repository {repo}"
            f"{': ' + detail if detail else ''}; retry, or check the registry's logs"
        )


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


def _media_type(response: requests.Response, body: bytes) -> str:
    header = response.headers.get("Content-Type", "").split(";")[0].strip()
    if header in INDEX_TYPES | IMAGE_MANIFEST_TYPES:
        return header
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    return str(declared or header)
