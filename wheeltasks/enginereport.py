"""The ``engines`` task's report: every builder and node, and where each platform of ARCHES
builds (natively, or with which fallback), as text or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .buildx import discover
from .engines import Builder, BuilderMap, Engines, Route, endpoint_json, parse_builders
from .errors import WheelTasksError
from .settings import Cross, Settings
from .targets import ARCHES, Arch


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
                **endpoint_json(n),
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


def report(settings: Settings, as_json: bool = False) -> str:
    """The ``engines`` task's output: every builder probed, the platforms of ARCHES routed."""
    mapping = parse_builders(settings.builders)
    found = discover()
    arches = settings.arch_list
    if as_json:
        return json.dumps(to_json(found, mapping, settings.cross, arches), indent=2)
    return render(found, mapping, settings.cross, arches)
