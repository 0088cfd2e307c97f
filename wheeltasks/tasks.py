"""The invoke tasks: parse arguments, build Settings, call the steps, print.

Every task takes the settings as flags (``--push``, ``--noop``, ``--pypi-index=URL``…);
a bare flag means true, ``--flag=no`` false. Flags beat the environment, which beats
the ``wheeltasks`` section of the invoke configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from . import check as check_mod
from . import console, pipeline
from .errors import WheelTasksError
from .index import IndexClient, clear_cache
from .plan import Plan, resolve
from .settings import ENV_NAMES, Settings

# Settings that are not offered as flags: secrets do not belong on command lines.
_NO_FLAG = {"registry_password"}
# Short names for the flags of SPEC.md's table.
_FLAG_NAMES = {
    "do_push": "push",
    "wheels_force_pull": "force_pull",
    "build_no_cache": "no_cache",
    "build_both": "both",
}
SETTING_FLAGS: dict[str, str] = {
    _FLAG_NAMES.get(f.name, f.name): f.name for f in dataclasses.fields(Settings) if f.name not in _NO_FLAG
}


def _flag_help(flag: str) -> str:
    name = SETTING_FLAGS[flag]
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == name)
    kind = "switch" if isinstance(default, bool) else "setting"
    return f"{kind} {ENV_NAMES[name]} (bare flag = true; --{flag.replace('_', '-')}=no for false)"


def load_settings(c: Context, flags: Mapping[str, Any]) -> Settings:
    config = c.config.get("wheeltasks", {}) or {}
    return Settings.load(dict(config), os.environ, {SETTING_FLAGS[k]: v for k, v in flags.items()})


def wheel_task(func: Callable[..., Any], name: str) -> Task[Any]:
    """Make ``func(settings, ...)`` an invoke task that also takes every setting as a flag.

    This is the one place where project errors become ``Exit`` (code 2 for user errors):
    no traceback for anything a user can fix.
    """
    own = list(inspect.signature(func).parameters.values())[1:]

    @functools.wraps(func)
    def body(c: Context, **kwargs: Any) -> Any:
        flags = {k: kwargs.pop(k) for k in list(kwargs) if k in SETTING_FLAGS}
        try:
            return func(load_settings(c, flags), **kwargs)
        except WheelTasksError as exc:
            raise Exit(f"wheeltasks: {exc}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("wheeltasks: interrupted", code=130) from None

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("c", positional), *own]
    params += [inspect.Parameter(f, positional, default=None) for f in SETTING_FLAGS if f not in {p.name for p in own}]
    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    help_ = {f: _flag_help(f) for f in SETTING_FLAGS}
    help_.update(getattr(func, "_help", {}))
    made: Task[Any] = task(name=name, optional=list(SETTING_FLAGS), auto_shortflags=False, help=help_)(body)
    return made


def helps(**texts: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        func._help = texts  # type: ignore[attr-defined]
        return func

    return deco


TARGETS_HELP = "one or more targets: 'a b', a,b (or, with the wheeltasks command, a b c)"


def plan_for(settings: Settings, targets: str | list[str], index: IndexClient | None = None) -> Plan:
    texts = [targets] if isinstance(targets, str) else targets
    plan = resolve(settings, texts, index or IndexClient(settings))
    for message in plan.notes:
        console.note(message)
    return plan


@helps(targets=TARGETS_HELP, json="print the plan as a JSON array")
def _resolve(settings: Settings, targets: str, json: bool = False) -> None:
    """Show the ordered jobs the targets resolve to (versions from the index)."""
    plan = plan_for(settings, targets)
    if json:
        console.emit_json([job.to_json() for job in plan.jobs])
    else:
        pipeline.print_plan(plan)


@helps(json="print one object per module and SSL variant as a JSON array")
def _check(settings: Settings, json: bool = False) -> None:
    """For every default module: is the index newer than what wheels/ and the registry hold?"""
    check_mod.show_rows(check_mod.check(settings), json)


@helps(json="print the check rows as a JSON array")
def _update(settings: Settings, json: bool = False) -> None:
    """check, then build (and with --push push) the out-of-date modules for every default Python."""
    index = IndexClient(settings)  # one client: CLEAN_CACHE clears once per run
    rows = check_mod.check(settings, index)
    check_mod.show_rows(rows, json)
    targets = [row.update_target for row in rows if row.outdated]
    if not targets:
        console.note("everything is up to date")
        return
    pipeline.run(settings, plan_for(settings, targets, index))


@helps(targets=TARGETS_HELP)
def _pull_existing(settings: Settings, targets: str) -> None:
    """Fetch existing wheel images: the target's own and its dependencies'."""
    pipeline.run(settings, plan_for(settings, targets), steps=("pull-existing",))


@helps(targets=TARGETS_HELP)
def _build(settings: Settings, targets: str) -> None:
    """Build the targets' wheels: pull-existing, build, repair, export (and push with --push)."""
    pipeline.run(settings, plan_for(settings, targets))


@helps(targets=TARGETS_HELP)
def _repair(settings: Settings, targets: str) -> None:
    """auditwheel-repair (shared kind) and verify what `build` left in the work folder."""
    pipeline.run(settings, plan_for(settings, targets), steps=("repair",))


@helps(targets=TARGETS_HELP)
def _export(settings: Settings, targets: str) -> None:
    """Copy the repaired wheels into wheels/<arch>/ (atomically; OpenSSL builds only)."""
    pipeline.run(settings, plan_for(settings, targets), steps=("export",))


@helps(targets=TARGETS_HELP)
def _push(settings: Settings, targets: str) -> None:
    """Push the repaired wheels as multi-platform wheel images."""
    pipeline.run(settings, plan_for(settings, targets), steps=("push",))


def _all(settings: Settings) -> None:
    """Build every default module (core first) x every default Python x every arch, both kinds."""
    pipeline.run(settings, plan_for(settings, "all"))


def _core(settings: Settings) -> None:
    """Build the core modules x every default Python x every arch, both kinds."""
    pipeline.run(settings, plan_for(settings, "core"))


def _clean_cache(settings: Settings) -> None:
    """Drop cached index look-ups (the same as CLEAN_CACHE=1)."""
    removed = clear_cache(settings)
    console.note(f"cleared the index cache: {', '.join(map(str, removed)) or 'it was empty'}")


resolve_task = wheel_task(_resolve, "resolve")
check_task = wheel_task(_check, "check")
update_task = wheel_task(_update, "update")
pull_existing_task = wheel_task(_pull_existing, "pull-existing")
build_task = wheel_task(_build, "build")
repair_task = wheel_task(_repair, "repair")
export_task = wheel_task(_export, "export")
push_task = wheel_task(_push, "push")
all_task = wheel_task(_all, "all")
core_task = wheel_task(_core, "core")
clean_cache_task = wheel_task(_clean_cache, "clean-cache")

ns = Collection(
    resolve_task,
    check_task,
    update_task,
    pull_existing_task,
    build_task,
    repair_task,
    export_task,
    push_task,
    all_task,
    core_task,
    clean_cache_task,
)
