"""Image names by Docker's rules: which part is the registry host, the repository, the tag.

``python:3.12-alpine`` is ``docker.io/library/python`` tag ``3.12-alpine``;
``127.0.0.1:5000/me/builder@sha256:...`` is host ``127.0.0.1:5000``, repository
``me/builder``, digest ``sha256:...``. The first part of a name is a host when it holds a
``.`` or a ``:`` or is ``localhost``; otherwise the image is Docker Hub's.
"""

from __future__ import annotations

DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})


def is_host(first: str) -> bool:
    """Whether the first part of an image or repository name is a registry host."""
    return "." in first or ":" in first or first == "localhost"


def split_host(name: str) -> tuple[str, str]:
    """``(host, rest)`` of a name without its tag: Docker Hub's when the first part is no host."""
    first, slash, rest = name.partition("/")
    if slash and is_host(first):
        return first, rest
    return DOCKER_HUB, name


def split_image(image: str) -> tuple[str, str, str]:
    """``(host, repository, reference)`` of an image name; the reference is its digest, else
    its tag, else ``latest``. Docker Hub's official images are ``library/<name>``."""
    name, at, digest = image.partition("@")
    head, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:  # a tag, not a port
        name = head
    else:
        tag = ""
    host, path = split_host(name)
    if host in DOCKER_HUB_ALIASES and "/" not in path:
        path = f"library/{path}"
    return host, path, digest if at else (tag or "latest")
