"""Build engines: buildx builders, their nodes, and which node builds each platform.

wheeltasks does not schedule machines itself: a user attaches machines to buildx (a
docker context per engine, ``docker buildx create --append`` for more nodes) and
BUILDERS says which builder builds which platform:

- empty: buildx's current builder for every platform;
- one name (``BUILDERS=arm-farm``): that builder for every platform;
- ``platform=builder`` entries (``linux/arm64=arm-node,linux/amd64=default``): those
  builders, and the current builder for platforms not named.

Within a builder, buildx picks the node for a one-platform build itself (the first node
that lists the platform); :func:`route` predicts that choice, so wheeltasks knows the
engine a job's build runs on: its repair and import-check containers run there too, and a
platform the node runs natively needs neither QEMU nor cross-compilation.

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

import functools
import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import docker_engine
from .docker_engine import Endpoint
from .errors import RemoteError, WheelTasksError
from .platforms import arch_of, platform_key
from .settings import Cross, Settings
from .targets import ARCHES, Arch, find_arch, runs_natively

CLI_TIMEOUT = 120  # seconds for one buildx or context look-up (buildx ls asks every node)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_DOCKER_DRIVERS = frozenset({"docker", "docker-container"})  # nodes that run on a Docker engine


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
            **_endpoint_json(self.node),
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


# ---- asking buildx and the engines (I/O) ---------------------------------------------


Probe = Callable[[Endpoint], str]  # an engine's machine; raises WheelTasksError when it does not answer
Contexts = Callable[[str], Endpoint | None]  # a docker context's engine, None when there is no such context


def discover(only: frozenset[str] | None = None, probe: Probe | None = None) -> Engines:
    """Every builder buildx lists, with each node's engine resolved and asked for its CPU.

    ``only`` limits the probing (not the listing) to those builders; a node that does not
    answer is kept with its error, so only routing a job to it fails.
    """
    listed = parse_ls(_cli(["docker", "buildx", "ls", "--format", "json"], "list the buildx builders"))
    current = current_builder_name()
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
    docker_engine.buildx_version()  # no buildx: say how to install it, first
    done = _run(command)
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


# ---- the `engines` report ------------------------------------------------------------


@dataclass(frozen=True)
class PlatformRow:
    """One platform of the report: its route, or why it has none."""

    arch: Arch
    route: Route | None
    problem: str = ""


def platform_rows(engines: Engines, mapping: BuilderMap, arches: Sequence[Arch] = ARCHES) -> tuple[PlatformRow, ...]:
    rows = []
    for arch in arches:
        try:
            rows.append(PlatformRow(arch, engines.route(mapping, arch.platform)))
        except WheelTasksError as exc:
            rows.append(PlatformRow(arch, None, str(exc)))
    return tuple(rows)


def how(row: PlatformRow, cross: Cross) -> str:
    """How a platform's jobs build: natively, or with which fallback."""
    if row.route is None:
        return "cannot build: " + row.problem
    if row.route.native:
        return "native"
    if cross is Cross.NEVER:
        return "no native node: emulated with QEMU (CROSS=never)"
    if cross is Cross.ALWAYS:
        return "no native node: cross-compiled (CROSS=always)"
    return "no native node: cross-compiled (CROSS=auto), emulated with QEMU for recipes with mod_cross=no"


def render(engines: Engines, mapping: BuilderMap, cross: Cross, arches: Sequence[Arch] = ARCHES) -> str:
    """The ``engines`` report as text: builders and nodes, then where each platform builds."""
    lines = ["builders (buildx):"]
    for builder in engines.builders:
        lines += _builder_lines(builder)
    lines += ["", f"platforms (BUILDERS={str(mapping) or '(empty: the current builder)'}, CROSS={cross.value}):"]
    rows = platform_rows(engines, mapping, arches)
    width = max((len(r.arch.platform) for r in rows), default=0)
    for row in rows:
        where = f"{row.route.builder.name}/{row.route.node.name}" if row.route else "-"
        lines.append(f"  {row.arch.platform:<{width}}  {where}  {how(row, cross)}")
    return "\n".join(lines)


def _builder_lines(builder: Builder) -> list[str]:
    head = f"  {builder.name} ({builder.driver or 'unknown'} driver{', current' if builder.current else ''})"
    if builder.error:
        return [f"{head}: unreachable: {builder.error}"]
    lines = [head]
    for node in builder.nodes:
        state = "reachable" if node.reachable else f"unreachable: {node.error}"
        lines.append(f"    node {node.name} at {node.where}, {node.status or 'unknown'}, {node.machine or 'machine unknown'}: {state}")
        native = node.native_platforms()
        emulated = [p for p in node.platforms if p not in native]
        lines.append(f"      native: {', '.join(native) or '-'}")
        if emulated:
            lines.append(f"      emulated (QEMU): {', '.join(emulated)}")
    return lines


def to_json(engines: Engines, mapping: BuilderMap, cross: Cross, arches: Sequence[Arch] = ARCHES) -> dict[str, Any]:
    """The ``engines`` report as one JSON object (the same facts as :func:`render`)."""
    return {
        "builders": [_builder_json(b) for b in engines.builders],
        "builders_setting": str(mapping),
        "cross": cross.value,
        "platforms": [
            {
                "arch": row.arch.name,
                "platform": row.arch.platform,
                "route": row.route.to_json() if row.route else None,
                "how": how(row, cross),
            }
            for row in platform_rows(engines, mapping, arches)
        ],
    }


def _builder_json(builder: Builder) -> dict[str, Any]:
    return {
        "name": builder.name,
        "driver": builder.driver,
        "current": builder.current,
        "error": builder.error or None,
        "nodes": [
            {
                "name": n.name,
                **_endpoint_json(n),
                "status": n.status,
                "machine": n.machine,
                "reachable": n.reachable,
                "error": n.error or None,
                "platforms": list(n.platforms),
                "native": list(n.native_platforms()),
            }
            for n in builder.nodes
        ],
    }


def _endpoint_json(node: Node) -> dict[str, str | None]:
    """The node's address as buildx lists it, and the Docker engine behind it (None without one)."""
    return {
        "endpoint": node.endpoint,
        "docker_host": node.engine.host if node.engine else None,
        "context": (node.engine.context or None) if node.engine else None,
    }


def report(settings: Settings, as_json: bool = False) -> str:
    """The ``engines`` task's output: every builder probed, the platforms of ARCHES routed."""
    mapping = parse_builders(settings.builders)
    found = discover()
    arches = settings.arch_list
    if as_json:
        return json.dumps(to_json(found, mapping, settings.cross, arches), indent=2)
    return render(found, mapping, settings.cross, arches)
