"""Build engines: buildx builders, their nodes, and which node builds each platform.

wheeltasks does not schedule machines itself: a user attaches machines to buildx (a
docker context per engine, ``docker buildx create --append`` for more nodes) and
BUILDERS says which builder builds which platform:

- empty: buildx's current builder for every platform;
- one name (``BUILDERS=arm-farm``): that builder for every platform;
- ``platform=builder`` entries (``linux/arm64=arm-node,linux/amd64=default``): those
  builders, and the current builder for platforms not named.

Within a builder, buildx picks the node for a one-platform build itself (the first node
that lists the platform); :meth:`Engines.route` predicts that choice, so wheeltasks knows the
engine a job's build runs on: its repair and import-check containers run there too, and a
platform the node runs natively needs neither QEMU nor cross-compilation.

This module is the model, pure: what buildx and the engines answered is read into it by
``buildx.py``, and the ``engines`` task shows it with ``enginereport.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .docker_engine import Endpoint
from .errors import RemoteError, WheelTasksError
from .platforms import arch_of, platform_key
from .targets import ARCHES, Arch, find_arch, runs_natively

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


# ---- BUILDERS (pure) -----------------------------------------------------------------


@dataclass(frozen=True)
class BuilderMap:
    """BUILDERS, parsed: one builder for everything, or builders per platform (keys normal)."""

    everything: str | None = None
    by_platform: tuple[tuple[str, str], ...] = ()  # (platform key, builder), in BUILDERS' order

    def name_for(self, platform: str) -> str | None:
        """The builder named for a platform; None means buildx's current builder."""
        return dict(self.by_platform).get(platform_key(platform), self.everything)

    def names(self) -> frozenset[str]:
        named = {name for _, name in self.by_platform}
        return frozenset(named | {self.everything} if self.everything else named)

    def __str__(self) -> str:
        if self.everything:
            return self.everything
        return ",".join(f"{_display(key)}={name}" for key, name in self.by_platform)


_BUILDERS_HELP = "give platform=builder entries (e.g. linux/arm64=arm-node,linux/amd64=default) or one builder's name"


def parse_builders(entries: Iterable[str]) -> BuilderMap:
    """Read BUILDERS (Settings.builders); an error naming the bad entry otherwise."""
    names: list[str] = []
    by_platform: dict[str, str] = {}
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if "=" not in entry:
            names.append(_builder_name(entry, entry))
            continue
        where, _, name = entry.partition("=")
        arch = _platform_arch(where.strip(), entry)
        key = platform_key(arch.platform)
        name = _builder_name(name.strip(), entry)
        if by_platform.get(key, name) != name:
            raise WheelTasksError(f"BUILDERS maps {arch.platform} twice ({by_platform[key]} and {name}): keep one")
        by_platform[key] = name
    if names and by_platform:
        raise WheelTasksError(f"BUILDERS mixes a builder name ({names[0]}) with platform=builder entries: {_BUILDERS_HELP}")
    if len(set(names)) > 1:
        raise WheelTasksError(f"BUILDERS names several builders without platforms ({', '.join(names)}): {_BUILDERS_HELP}")
    return BuilderMap(everything=names[0] if names else None, by_platform=tuple(by_platform.items()))


def _builder_name(name: str, entry: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise WheelTasksError(f"BUILDERS entry {entry!r} is not platform=builder or a builder's name: {_BUILDERS_HELP}")
    return name


def _platform_arch(text: str, entry: str) -> Arch:
    """The architecture a BUILDERS platform names: a Docker platform or a wheeltasks arch name."""
    arch = arch_of(text) if "/" in text else find_arch(text)
    if arch is None:
        known = ", ".join(a.platform for a in ARCHES)
        raise WheelTasksError(f"BUILDERS entry {entry!r}: {text!r} is not a platform wheeltasks builds (one of {known})")
    return arch


# ---- the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One node of a builder: where it builds, what, and whether it answers.

    ``engine`` is the Docker engine the node runs on (None for drivers without one:
    remote buildkitd, kubernetes); ``machine`` that engine's CPU (``x86_64``), None when
    unknown; ``error`` why it cannot be reached, empty when it can.
    """

    builder: str
    name: str
    endpoint: str
    status: str
    platforms: tuple[str, ...]
    engine: Endpoint | None = None
    machine: str | None = None
    error: str = ""

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def where(self) -> str:
        return str(self.engine) if self.engine is not None else self.endpoint

    def lists(self, platform: str) -> bool:
        return platform_key(platform) in self.platforms

    def native(self, platform: str) -> bool:
        """Whether the node's own CPU runs the platform (no QEMU, no cross-compilation)."""
        arch = arch_of(platform)
        if arch is None:
            return False
        if self.machine is not None:
            return runs_natively(arch, self.machine)
        # No Docker engine to ask (remote buildkitd, kubernetes): a running BuildKit lists
        # its own platform first, then the ones it emulates.
        return self.engine is None and self.status == "running" and self.platforms[:1] == (platform_key(platform),)

    def native_platforms(self) -> tuple[str, ...]:
        return tuple(p for p in self.platforms if self.native(p))


@dataclass(frozen=True)
class Builder:
    name: str
    driver: str
    nodes: tuple[Node, ...]
    current: bool = False
    error: str = ""

    def node_for(self, platform: str) -> Node | None:
        """The node buildx picks for a one-platform build: the first that lists the platform."""
        return next((n for n in self.nodes if n.lists(platform)), None)


@dataclass(frozen=True)
class Route:
    """Where one platform's jobs build: the builder and node, and how (native or not)."""

    platform: str
    builder: Builder
    node: Node

    @property
    def native(self) -> bool:
        return self.node.native(self.platform)

    @property
    def engine(self) -> Endpoint | None:
        """The Docker engine for the job's containers (repair, import checks); None: the default."""
        return self.node.engine

    def buildx_build(self) -> list[str]:
        """The command's first words, to replace ``docker buildx build`` with."""
        if self.builder.driver == "docker":
            # A docker-driver builder refuses --builder from any other context.
            return ["docker", "--context", self.builder.name, "buildx", "build", "--builder", self.builder.name]
        return ["docker", "buildx", "build", "--builder", self.builder.name]

    def to_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "builder": self.builder.name,
            "node": self.node.name,
            **endpoint_json(self.node),
            "native": self.native,
        }


@dataclass(frozen=True)
class Engines:
    """Every builder buildx knows, with its nodes resolved and probed."""

    builders: tuple[Builder, ...]

    @property
    def current(self) -> Builder | None:
        return next((b for b in self.builders if b.current), None)

    def builder(self, name: str | None) -> Builder:
        """A builder by name (None: the current one); an error saying how to create it."""
        if name is None:
            current = self.current
            if current is None:
                raise WheelTasksError("buildx has no current builder that it can load: run `docker buildx use <name>` or set BUILDERS")
            return current
        found = next((b for b in self.builders if b.name == name), None)
        if found is None:
            known = ", ".join(b.name for b in self.builders) or "none"
            raise WheelTasksError(
                f"BUILDERS names builder {name!r}, which buildx does not know (builders: {known}): create it "
                f"(`docker context create {name} --docker host=...` or `docker buildx create --name {name} ...`) or fix BUILDERS"
            )
        return found

    def route(self, mapping: BuilderMap, platform: str) -> Route:
        """Where a job of ``platform`` builds; an error naming the builder or node that cannot."""
        builder = self.builder(mapping.name_for(platform))
        node = builder.node_for(platform)
        if node is None:
            raise _no_node(builder, platform)
        if not node.reachable:
            look = f"docker context inspect {node.endpoint}" if "://" not in node.endpoint else f"docker buildx inspect {builder.name}"
            raise RemoteError(
                f"builder {builder.name!r} node {node.name!r} at {node.where} cannot be reached ({node.error}): "
                f"start its engine or fix its endpoint (`{look}`), or map {_display(platform)} to another builder in BUILDERS"
            )
        return Route(platform=platform, builder=builder, node=node)


def _no_node(builder: Builder, platform: str) -> WheelTasksError:
    unreachable = [n for n in builder.nodes if not n.reachable]
    if builder.error or (unreachable and not any(n.platforms for n in builder.nodes)):
        why = builder.error or unreachable[0].error
        where = unreachable[0].where if unreachable else builder.name
        return RemoteError(
            f"builder {builder.name!r} at {where} cannot be reached ({why}): start its engine, "
            f"fix its docker context (`docker context inspect {builder.name}`), or map {_display(platform)} to another builder in BUILDERS"
        )
    listed = ", ".join(sorted({p for n in builder.nodes for p in n.platforms})) or "none yet"
    return WheelTasksError(
        f"builder {builder.name!r} has no node that builds {_display(platform)} (its platforms: {listed}): "
        f"map it to another builder in BUILDERS, add a node (`docker buildx create --append --name {builder.name} "
        f"--platform {_display(platform)} <endpoint>`), boot inactive nodes (`docker buildx inspect --bootstrap {builder.name}`), "
        "or install QEMU on its engine (qemu-user-static, binfmt-support)"
    )


def _display(platform: str) -> str:
    arch = arch_of(platform)
    return arch.platform if arch is not None else platform


def endpoint_json(node: Node) -> dict[str, str | None]:
    """The node's address as buildx lists it, and the Docker engine behind it (None without one)."""
    return {
        "endpoint": node.endpoint,
        "docker_host": node.engine.host if node.engine else None,
        "context": (node.engine.context or None) if node.engine else None,
    }
