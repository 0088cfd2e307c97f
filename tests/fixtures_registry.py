"""Real registries for tests: Debian's ``docker-registry`` (CNCF distribution) on 127.0.0.1.

Three modes: no auth, htpasswd Basic auth, and token auth with a small token server
run here (JWTs signed with an RSA key made by the openssl CLI). Each registry has
its own config and storage under a temp folder and can be stopped and restarted on
the same port and storage (for the interrupted-push test).
"""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.fixtures_index import free_port

REGISTRY_BIN = "docker-registry"
USERNAME = "wheeler"
PASSWORD = "s3cret-Pa55-for-tests"
SERVICE = "wheeltasks-test-registry"
ISSUER = "wheeltasks-test-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenIssuer:
    """Signs registry JWTs (RS256, cert in ``x5c``) with a key/cert made by openssl."""

    folder: Path
    key: Path = field(init=False)
    cert: Path = field(init=False)
    cert_der_b64: str = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = self.folder / "token.key", self.folder / "token.crt"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=wheeltasks-test-token-issuer", "-keyout", str(self.key), "-out", str(self.cert)],
            check=True, capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.cert_der_b64 = base64.b64encode(der).decode("ascii")

    def sign(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]}
        claims = {
            "iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": secrets.token_hex(8), "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"


def _granted(scopes: list[str]) -> list[dict[str, object]]:
    access: list[dict[str, object]] = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


class TokenServer:
    """``GET /token?service=&scope=``: checks Basic credentials; anonymous gets no access."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        self.requests.append(",".join(query.get("scope", [])))
        auth = request.headers.get("Authorization", "")
        subject = ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (user, password) != (USERNAME, PASSWORD):
                self._reply(request, 401, {"details": "bad credentials"})
                return
            subject = user
        access = _granted(query.get("scope", [])) if subject else []
        token = self.issuer.sign(subject, access)
        self._reply(request, 200, {"token": token, "access_token": token, "expires_in": 300})

    @staticmethod
    def _reply(request: http.server.BaseHTTPRequestHandler, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class RegistryServer:
    """One ``docker-registry serve`` process with its own config and storage."""

    folder: Path
    mode: str  # "none", "basic" or "token"
    token_server: TokenServer | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @property
    def log(self) -> Path:
        return self.folder / "registry.log"

    @property
    def username(self) -> str:
        return "" if self.mode == "none" else USERNAME

    @property
    def password(self) -> str:
        return "" if self.mode == "none" else PASSWORD

    def write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            # A fixed secret keeps upload URLs valid across a restart.
            f"  secret: wheeltasks-test-{self.port}",
        ]
        lines += self._auth_lines()
        config = self.folder / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _auth_lines(self) -> list[str]:
        if self.mode == "basic":
            htpasswd = self.folder / "htpasswd"
            result = subprocess.run(["htpasswd", "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True)
            htpasswd.write_bytes(result.stdout)
            return ["auth:", "  htpasswd:", "    realm: wheeltasks-test", f"    path: {htpasswd}"]
        if self.mode == "token":
            assert self.token_server is not None
            return [
                "auth:", "  token:",
                f"    realm: {self.token_server.realm}",
                f"    service: {SERVICE}",
                f"    issuer: {ISSUER}",
                f"    rootcertbundle: {self.token_server.issuer.cert}",
            ]
        return []

    def start(self, timeout: float = 20.0) -> None:
        config = self.write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"docker-registry ({self.mode}) exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                requests.get(f"http://{self.host}/v2/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"docker-registry ({self.mode}) did not answer on {self.host} within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _require_registry() -> None:
    if shutil.which(REGISTRY_BIN) is None:
        pytest.fail(f"{REGISTRY_BIN} is not installed: apt-get install docker-registry")


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(TokenIssuer(tmp_path_factory.mktemp("token-issuer")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Callable[[str], RegistryServer]]:
    """Start a new registry (``"none"``, ``"basic"`` or ``"token"``); all stop at session end."""
    _require_registry()
    started: list[RegistryServer] = []

    def start(mode: str) -> RegistryServer:
        server = RegistryServer(
            tmp_path_factory.mktemp(f"registry-{mode}"), mode, token_server if mode == "token" else None
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def registry_plain(registry_factory: Callable[[str], RegistryServer]) -> RegistryServer:
    return registry_factory("none")


@pytest.fixture(scope="session")
def registry_basic(registry_factory: Callable[[str], RegistryServer]) -> RegistryServer:
    return registry_factory("basic")


@pytest.fixture(scope="session")
def registry_token(registry_factory: Callable[[str], RegistryServer]) -> RegistryServer:
    return registry_factory("token")


@pytest.fixture
def registry_restartable(registry_factory: Callable[[str], RegistryServer]) -> RegistryServer:
    """A registry of its own, for tests that stop and restart it."""
    return registry_factory("none")
