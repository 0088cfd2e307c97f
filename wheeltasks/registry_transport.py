"""The HTTP side of one registry host: the scheme (https; http on loopback when https fails,
as Docker does), one deadline per operation, retries (5xx, connection errors, 429 after
Retry-After), and authentication from ``WWW-Authenticate`` (Basic, or Bearer tokens from the
registry's token service). ``registry.py`` builds the distribution API's operations on it.

Credentials travel only in ``Authorization`` headers, only to the registry itself, and to a
token service only over https (or http on loopback).
"""

from __future__ import annotations

import base64
import ipaddress
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import urlsplit

import requests
import requests.auth
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from . import remote
from .errors import RemoteError, WheelTasksError
from .imagenames import DOCKER_HUB_ALIASES
from .oci import json_or_none
from .urls import http_url_problem, redact

_DOCKER_HUB_API = "registry-1.docker.io"
TOKEN_LIMIT = 1024 * 1024
ERROR_BODY_LIMIT = 64 * 1024  # read only for the registry's own error codes
_PROBE_SECONDS = 10.0
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
# A token goes into an Authorization header: visible ASCII only (RFC 6750's b64token and JWTs).
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


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


class _Token(NamedTuple):
    value: str
    expires: float


class Transport:
    """Requests to one registry host, each operation within its deadline (``timeout``)."""

    def __init__(
        self,
        registry: str,
        *,
        credentials: tuple[str, str] | None,
        ca_bundle: str,
        tries: int,
        backoff: float,
        max_retry_after: float,
        timeout: float,
        max_layer_bytes: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.tries = max(1, tries)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self.max_layer_bytes = max_layer_bytes  # only to say which setting a too-large answer hit
        self._sleep = sleep
        self._credentials = credentials
        self._session = remote.Session()
        self._session.verify = ca_bundle or True
        self._base: str | None = None
        self._scheme = ""  # "basic" or "bearer" once the registry has told us
        self._bearer: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], _Token] = {}

    def close(self) -> None:
        self._session.close()

    def on_registry(self, url: str) -> bool:
        """Whether a URL is on the registry itself (only there do credentials and tokens go)."""
        return urlsplit(url)[:2] == urlsplit(self.base_url)[:2]

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

    def request(
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
                auth = self._auth_header(repo, actions, deadline) if self.on_registry(call.url) else ""
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

    def check(self, answer: Answer, repo: str, doing: str, expect: tuple[int, ...] = (200,)) -> None:
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


