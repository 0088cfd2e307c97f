"""A small OCI distribution client on ``requests``: tags, manifests, blobs, auth.

It talks to any registry that speaks the distribution API (Docker Hub, GHCR, a
company registry, a local ``registry:2``) without loading images into a daemon.
Registry calls are never cached (plain :class:`requests.Session`): a stale answer
would make a push skip data the registry no longer has.

Credentials never appear in a message, log line or exception text: they travel
only in ``Authorization`` headers (``registry_transport.py``), and error texts name the
registry and the repository, never a URL with user information. They go to a next-page
link only on the registry itself.

Bad servers: every operation ends by its deadline, every answer is read within a
size limit, tag pages are followed at most ``max_tag_pages`` times, and an answer of
the wrong shape is one RemoteError line, never a traceback.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import BinaryIO

from . import remote
from .credentials import docker_credentials
from .errors import RemoteError, WheelTasksError
from .oci import IMAGE_MANIFEST_TYPES, INDEX_TYPES, MANIFEST_ACCEPT, Manifest, is_digest, json_or_none, sha256_digest
from .registry_transport import Answer, Transport
from .urls import join

PULL = "pull"
PUSH = "pull,push"

MIB = 1024 * 1024
DEFAULT_MAX_LAYER_BYTES = 512 * MIB
# Bounds on what a registry may send besides layers. Manifests: distribution refuses to
# store more than 4 MiB, and the OCI spec names 4 MiB as the size registries must accept.
MANIFEST_LIMIT = 4 * MIB
CONFIG_LIMIT = 4 * MIB
TAG_PAGE_LIMIT = 16 * MIB  # distribution 2.8 ignores `n`: one page holds every tag
MAX_TAG_PAGES = 1000


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
        timeout: float = remote.DEFAULT_TIMEOUT,
        max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES,
        max_tag_pages: int = MAX_TAG_PAGES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.max_layer_bytes = max_layer_bytes
        self.max_tag_pages = max_tag_pages
        if not username and not password:
            username, password = docker_credentials(registry, docker_config, timeout)
        self._http = Transport(
            registry, credentials=(username, password) if username or password else None, ca_bundle=ca_bundle,
            tries=tries, backoff=backoff, max_retry_after=max_retry_after, timeout=timeout,
            max_layer_bytes=max_layer_bytes, sleep=sleep,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r})"

    def close(self) -> None:
        self._http.close()

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
            answer = self._http.request(
                "GET", repo, target, PULL, "list the tags of", params=params, limit=TAG_PAGE_LIMIT, deadline=deadline
            )
            if answer.status == 404:
                return tags
            self._http.check(answer, repo, "list the tags of")
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
        answer = self._http.request(
            "HEAD", repo, self._manifest_path(repo, ref), PULL, f"look up {ref} in",
            headers={"Accept": MANIFEST_ACCEPT},
        )  # fmt: skip
        if answer.status == 404:
            return None
        self._http.check(answer, repo, f"look up {ref} in")
        digest = answer.headers.get("Docker-Content-Digest")
        if is_digest(digest):
            return digest
        found = self.find_manifest(repo, ref)
        return found.digest if found else None

    def find_manifest(self, repo: str, ref: str) -> Manifest | None:
        """Manifest or index ``ref`` (OCI or Docker types), or None when it does not exist."""
        doing = f"read manifest {ref} of"
        answer = self._http.request(
            "GET", repo, self._manifest_path(repo, ref), PULL, doing, headers={"Accept": MANIFEST_ACCEPT},
            limit=MANIFEST_LIMIT,
        )  # fmt: skip
        if answer.status == 404:
            return None
        self._http.check(answer, repo, doing)
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
        answer = self._http.request("HEAD", repo, f"/v2/{repo}/blobs/{self._digest(repo, digest)}", actions, doing)
        if answer.status == 404:
            return False
        self._http.check(answer, repo, doing)
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
        answer = self._http.request(
            "PUT", repo, location, PUSH, doing, params={"digest": digest}, data=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        self._http.check(answer, repo, doing, expect=(201,))
        return True

    def put_manifest(self, repo: str, ref: str, media_type: str, body: bytes) -> str:
        """PUT a manifest or index at ``ref`` (tag or digest); its digest."""
        doing = f"write manifest {ref} to"
        answer = self._http.request(
            "PUT", repo, self._manifest_path(repo, ref), PUSH, doing, data=body, headers={"Content-Type": media_type}
        )
        self._http.check(answer, repo, doing, expect=(201,))
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

    def _same_origin(self, url: str, repo: str) -> str:
        """A URL the registry sent (a next page) must stay on the registry: credentials go with it."""
        if not self._http.on_registry(url):
            raise RemoteError(
                f"registry {self.registry} sent a tag page link of {repo} to another host: not following it "
                "with the credentials; report it to the registry's operators"
            )
        return url

    def _get_blob(self, repo: str, digest: str, limit: int, sink: BinaryIO | None) -> Answer:
        doing = f"download blob {digest} of"
        answer = self._http.request(
            "GET", repo, f"/v2/{repo}/blobs/{self._digest(repo, digest)}", PULL, doing, limit=limit, sink=sink
        )
        if answer.status == 404:
            raise RemoteError(
                f"registry {self.registry} lacks blob {digest} of repository {repo}: push the image again"
            )
        self._http.check(answer, repo, doing)
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
        answer = self._http.request("POST", repo, f"/v2/{repo}/blobs/uploads/", PUSH, doing)
        self._http.check(answer, repo, doing, expect=(202,))
        return self._location(answer, repo)

    def _upload_chunk(self, repo: str, location: str, data: bytes, start: int) -> str:
        chunk = data[start : start + self.chunk_size]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
        }
        doing = "upload a blob chunk to"
        answer = self._http.request("PATCH", repo, location, PUSH, doing, data=chunk, headers=headers)
        self._http.check(answer, repo, doing, expect=(202,))
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


def _media_type(answer: Answer) -> str:
    header = answer.headers.get("Content-Type", "").split(";")[0].strip()
    if header in INDEX_TYPES | IMAGE_MANIFEST_TYPES:
        return header
    data = json_or_none(answer.body)
    declared = data.get("mediaType") if isinstance(data, dict) else None
    return declared if isinstance(declared, str) and declared else header
