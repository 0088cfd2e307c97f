"""Asking buildx and the Docker engines: which builders and nodes there are, where each
node's engine is and what CPU it has, read into the model of ``engines.py``.

Facts from buildx 0.13 relied on here:

- ``docker buildx ls --format json`` prints one JSON object per builder, but once per
  table row (the builder's row and each node's), so a builder repeats; a builder it
  cannot load has ``Err`` and one empty node; a node it cannot reach has ``Err`` and
  status ``error``. It marks no current builder: ``docker buildx inspect`` (text) names it.
- A node's ``Endpoint`` is a docker context name or an address (``unix://``, ``tcp://``,
  ``ssh://``); for the ``remote`` and ``kubernetes`` drivers it is not a Docker engine.
- A docker-driver builder is its docker context and refuses ``--builder`` from another
  context: it needs ``docker --context <name> buildx build``.
- Platforms are listed without default variants (``linux/arm64`` for ``linux/arm64/v8``).
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import docker_engine
from .docker_engine import Endpoint
from .engines import Builder, Engines, Node, Route, parse_builders
from .errors import WheelTasksError
from .platforms import platform_key
from .settings import Settings

CLI_TIMEOUT = 120  # seconds for one buildx or context look-up (buildx ls asks every node)
_DOCKER_DRIVERS = frozenset({"docker", "docker-container"})  # nodes that run on a Docker engine


# ---- what buildx lists (pure) --------------------------------------------------------


@dataclass(frozen=True)
class ListedNode:
    """A node as ``docker buildx ls`` lists it."""

    name: str
    endpoint: str
    status: str
    platforms: tuple[str, ...]
    error: str = ""


@dataclass(frozen=True)
class ListedBuilder:
    """A builder as ``docker buildx ls`` lists it."""

    name: str
    driver: str
    nodes: tuple[ListedNode, ...]
    error: str = ""


def parse_ls(text: str) -> tuple[ListedBuilder, ...]:
    """``docker buildx ls --format json`` output: each builder once, in buildx's order."""
    seen: dict[str, ListedBuilder] = {}
    for item in _json_objects(text):
        name = str(item.get("Name") or "")
        if name and name not in seen:
            seen[name] = _listed_builder(name, item)
    return tuple(seen.values())


def _json_objects(text: str) -> list[dict[str, Any]]:
    stripped = text.strip()
    try:
        if stripped.startswith("["):  # a later buildx may print one array
            items = json.loads(stripped)
        else:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise WheelTasksError(f"`docker buildx ls --format json` printed something that is not JSON ({exc}): upgrade buildx to 0.13 or newer") from exc
    return [item for item in items if isinstance(item, dict)]


def _listed_builder(name: str, item: Mapping[str, Any]) -> ListedBuilder:
    nodes = tuple(
        ListedNode(
            name=str(node.get("Name") or ""),
            endpoint=str(node.get("Endpoint") or ""),
            status=str(node.get("Status") or ""),
            platforms=tuple(_key_or_text(str(p)) for p in node.get("Platforms") or ()),
            error=str(node.get("Err") or ""),
        )
        for node in item.get("Nodes") or ()
        if isinstance(node, dict) and node.get("Name")  # a builder buildx cannot load lists one empty node
    )
    return ListedBuilder(name=name, driver=str(item.get("Driver") or ""), nodes=nodes, error=str(item.get("Err") or ""))


def _key_or_text(platform: str) -> str:
    try:
        return platform_key(platform)
    except ValueError:  # a form this code does not know: kept, though nothing will match it
        return platform


def parse_inspect_name(text: str) -> str | None:
    """The builder's name from ``docker buildx inspect`` text (its first ``Name:`` line)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Name" and value.strip():
            return value.strip()
    return None


# ---- asking buildx and the engines (I/O) ---------------------------------------------


Probe = Callable[[Endpoint], str]  # an engine's machine; raises WheelTasksError when it does not answer
Contexts = Callable[[str], Endpoint | None]  # a docker context's engine, None when there is no such context


def discover(only: frozenset[str] | None = None, probe: Probe | None = None) -> Engines:
    """Every builder buildx lists, with each node's engine resolved and asked for its CPU.

    ``only`` limits the probing (not the listing) to those builders; a node that does not
    answer is kept with its error, so only routing a job to it fails.
    """
    # Each docker CLI call is a tenth of a second: the current builder and the default
    # context (the usual node's engine; cached) are asked while buildx lists the builders.
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="wheeltasks-buildx") as pool:
        asking = pool.submit(current_builder_name)
        pool.submit(context_endpoint, "default")
        listed = parse_ls(_cli(["docker", "buildx", "ls", "--format", "json"], "list the buildx builders"))
        current = asking.result()
    ask = probe or docker_engine.engine_machine
    wanted = None if only is None else only | {current or ""}  # unmapped platforms go to the current one
    builders = tuple(
        resolve_builder(b, current=b.name == current, probe=ask if wanted is None or b.name in wanted else None)
        for b in listed
    )
    return Engines(builders)


def resolve_builder(
    listed: ListedBuilder, *, current: bool, probe: Probe | None, contexts: Contexts | None = None
) -> Builder:
    """A listed builder with its nodes' engines resolved (``probe`` None: not asked)."""
    contexts = contexts or context_endpoint
    nodes = listed.nodes
    driver = listed.driver
    if listed.error and not nodes and contexts(listed.name) is not None:
        # A docker-driver builder whose engine is down: buildx lists neither driver nor node.
        driver = "docker"
        nodes = (ListedNode(name=listed.name, endpoint=listed.name, status="error", platforms=(), error=listed.error),)
    return Builder(
        name=listed.name,
        driver=driver,
        nodes=tuple(_resolve_node(listed.name, driver, n, probe, contexts) for n in nodes),
        current=current,
        error=listed.error if not nodes else "",
    )


def _resolve_node(builder: str, driver: str, listed: ListedNode, probe: Probe | None, contexts: Contexts) -> Node:
    engine = node_engine(driver, listed.endpoint, contexts)
    machine: str | None = None
    error = listed.error
    if engine is not None and probe is not None and not error:
        try:
            machine = probe(engine)
        except WheelTasksError as exc:
            error = str(exc)
    return Node(
        builder=builder, name=listed.name, endpoint=listed.endpoint, status=listed.status,
        platforms=listed.platforms, engine=engine, machine=machine, error=error,
    )


def node_engine(driver: str, endpoint: str, contexts: Contexts | None = None) -> Endpoint | None:
    """The Docker engine a node runs on: its context's host, or the address it names."""
    if driver not in _DOCKER_DRIVERS or not endpoint:
        return None
    if "://" in endpoint:
        return Endpoint(host=endpoint)
    return (contexts or context_endpoint)(endpoint)


@functools.cache
def context_endpoint(name: str) -> Endpoint | None:
    """A docker context's engine (``docker context inspect``), None when there is no such context."""
    done = _run(["docker", "context", "inspect", name])
    if done is None or done.returncode != 0:
        return None
    return parse_context(done.stdout)


def parse_context(text: str) -> Endpoint | None:
    """``docker context inspect`` JSON: the docker endpoint's host and TLS folder."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return None
    item = items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}
    docker_ep = (item.get("Endpoints") or {}).get("docker") or {}
    host = str(docker_ep.get("Host") or "")
    if not host:
        return None
    has_tls = bool((item.get("TLSMaterial") or {}).get("docker"))
    tls_path = str((item.get("Storage") or {}).get("TLSPath") or "")
    return Endpoint(
        host=host,
        tls_dir=f"{tls_path}/docker" if has_tls and tls_path else "",
        skip_tls_verify=bool(docker_ep.get("SkipTLSVerify")),
        context=str(item.get("Name") or ""),
    )


def current_builder_name() -> str | None:
    """buildx's current builder (``docker buildx inspect``), None when it cannot load it."""
    done = _run(["docker", "buildx", "inspect"])
    return parse_inspect_name(done.stdout) if done is not None and done.returncode == 0 else None


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _cli(command: Sequence[str], what: str) -> str:
    done = _run(command)
    if done is None or done.returncode != 0:
        docker_engine.buildx_version()  # no buildx: say how to install it, before the command's error
    if done is None:
        raise WheelTasksError(f"could not {what}: `{' '.join(command)}` did not finish within {CLI_TIMEOUT} s")
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        hint = "upgrade buildx to 0.13 or newer" if "--format" in (done.stderr or "") else "run it to see why"
        raise WheelTasksError(f"could not {what}: `{' '.join(command)}` failed ({detail[0] if detail else done.returncode}); {hint}")
    return done.stdout


# ---- routing jobs --------------------------------------------------------------------


def router(settings: Settings) -> Callable[[str], Route]:
    """``builder_for(platform) -> Route`` for a run: asks buildx and the engines once.

    Every builder BUILDERS names must exist (checked now, exit 2); a platform whose node
    cannot be reached fails when it is routed (exit 4), naming the node.
    """
    mapping = parse_builders(settings.builders)
    found = discover(only=mapping.names())
    for name in sorted(mapping.names()):
        found.builder(name)

    @functools.cache
    def builder_for(platform: str) -> Route:
        return found.route(mapping, platform)

    return builder_for


