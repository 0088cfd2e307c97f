"""The invoke tasks: parse arguments, build Settings, call the steps, print.

Each task offers as flags only the settings its parts of the work read (:data:`TASK_PARTS`), typed
by the setting: a switch is a bare flag that turns the setting on (``--push``); a value
flag needs a value (``--pypi-index URL``). Flags beat the environment, which beats the
``wheeltasks`` section of the invoke configuration.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task, task

from . import console, running, steps
from .errors import INTERRUPTED, Stopped, WheelTasksError
from .invoke_edge import TargetsTask, closed_pipe
from .settings import Option, Part, Settings, options_read_by
from .steps import BUILD, EXPORT, PULL_EXISTING, PUSH, REPAIR, Step

# The modules that do the work are imported by the tasks that use them: the tasks' flags and
# help (`wheeltasks --help`, `inv --list`) need only the settings and the table of steps.
if TYPE_CHECKING:
    from . import check as check_mod
    from . import engines
    from .index import IndexClient
    from .plan import Plan
    from .runreport import RunReport

# The parts of the work each task runs. Its flags are the settings those parts read: each
# row of settings.OPTIONS says which parts read it, and each step of the flow which parts it
# is (steps.STEPS), so a new setting or step needs no list here.
_PLANNED = (Part.PROJECT, Part.INDEX, Part.PLAN)


def _runs(names: Sequence[str]) -> tuple[Part, ...]:
    return (*_PLANNED, Part.RUN, *steps.reads(names))


TASK_PARTS: dict[str, tuple[Part, ...]] = {
    "resolve": _PLANNED,
    "check": (Part.PROJECT, Part.INDEX, Part.CHECK, Part.REGISTRY),
    "update": _runs(steps.FULL_FLOW),
    PULL_EXISTING.task: _runs([PULL_EXISTING.name]),
    BUILD.task: _runs(steps.FULL_FLOW),
    REPAIR.task: _runs([REPAIR.name]),
    EXPORT.task: _runs([EXPORT.name]),
    PUSH.task: _runs([PUSH.name]),
    "all": _runs(steps.FULL_FLOW),
    "core": _runs(steps.FULL_FLOW),
    "engines": (Part.PROJECT, Part.ENGINES),
    "clean-cache": (Part.PROJECT, Part.CACHE),
    "index": (Part.PROJECT, Part.SIMPLE_INDEX),
    "snippet": _PLANNED,
}
# The settings each task reads (the fields of its flags, and of the secrets it takes only
# from the environment).
GROUPS: dict[str, tuple[str, ...]] = {
    task: tuple(o.field for o in options_read_by(parts)) for task, parts in TASK_PARTS.items()
}


def flag_help(option: Option) -> str:
    return f"{option.help} [{option.env}; default: {option.describe_default()}]"


def load_settings(c: Context, flags: Mapping[str, Any]) -> Settings:
    config = c.config.get("wheeltasks", None)
    return Settings.load({} if config is None else config, flags=flags)  # and the environment


def _flag_options(name: str) -> tuple[Option, ...]:
    return tuple(o for o in options_read_by(TASK_PARTS[name]) if o.flag)


def wheel_task(func: Callable[..., Any], name: str) -> Task[Any]:
    """Make ``func(settings, ...)`` an invoke task that takes its settings as flags.

    This is the one place where project errors become ``Exit``: one line, no traceback,
    the error's exit code (see ``errors.py``); Ctrl-C exits 130, SIGTERM 143 and SIGHUP
    129, each after the same clean-up (``running.stop_signals``).
    """
    own = list(inspect.signature(func).parameters.values())[1:]
    options = _flag_options(name)
    by_flag = {o.flag: o for o in options}

    @functools.wraps(func)
    def body(c: Context, **kwargs: Any) -> Any:
        # A switch flag can only turn its setting on: invoke cannot tell "absent" from "off".
        flags = {by_flag[k].field: kwargs.pop(k) or None for k in list(kwargs) if k in by_flag}
        console.show_warnings()
        try:
            with running.stop_signals():
                return func(load_settings(c, flags), **kwargs)
        except WheelTasksError as exc:
            raise Exit(f"wheeltasks: {exc}", code=exc.exit_code) from None
        except Stopped as exc:
            raise Exit(f"wheeltasks: {exc.message}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("wheeltasks: interrupted", code=INTERRUPTED) from None
        except BrokenPipeError:
            # The reader went away (`wheeltasks resolve all --json | head`): stop quietly.
            raise closed_pipe() from None

    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("c", keyword), *own]
    taken = {p.name for p in own}
    params += [
        inspect.Parameter(o.flag, keyword, default=False if o.is_switch else None)
        for o in options
        if o.flag not in taken
    ]
    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    help_ = {o.flag: flag_help(o) for o in options}
    help_.update(getattr(func, "_help", {}))
    made: Task[Any] = task(name=name, auto_shortflags=False, help=help_, klass=TargetsTask)(body)
    return made


def helps(**texts: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        func._help = texts  # type: ignore[attr-defined]
        return func

    return deco


def switch_flags() -> frozenset[str]:
    """Every task flag that is a switch (takes no value), with dashes."""
    return frozenset(f"--{o.flag.replace('_', '-')}" for name in GROUPS for o in _flag_options(name) if o.is_switch)


def value_flags() -> frozenset[str]:
    """Every task flag that needs a value, with dashes (the settings' and the requirements file's)."""
    settings = {f"--{o.flag.replace('_', '-')}" for name in GROUPS for o in _flag_options(name) if not o.is_switch}
    return frozenset({*settings, "--requirements", "-r"})


TARGETS_HELP = "one or more targets: 'a b', a,b (or, with the wheeltasks command, a b c); none with -r FILE"
REQUIREMENTS_HELP = (
    "a pip requirements file: every distribution it needs on each arch (resolved by pip for that arch and "
    "Python) becomes a job, beside the targets"
)


def routes(settings: Settings, strict: bool) -> Callable[[str], engines.Route | None]:
    """Each platform's builder and node. Where nothing will be built (resolve, NOOP) a
    machine without buildx or an engine still plans, on this machine's CPU, with a note
    (every platform's route is then None).

    buildx is asked on a thread from now (its docker CLI calls are a third of a second),
    while the plan reads the recipes and the index; the first job routed waits for it, and
    gets its error in a strict run.
    """
    import concurrent.futures
    import threading

    from . import buildx

    asked: concurrent.futures.Future[Callable[[str], engines.Route]] = concurrent.futures.Future()

    def ask() -> None:
        try:
            asked.set_result(buildx.router(settings))
        except BaseException as exc:  # given to the thread that routes
            asked.set_exception(exc)

    threading.Thread(target=ask, name="wheeltasks-buildx", daemon=True).start()  # Ctrl-C ends the run at once

    @functools.cache
    def found() -> Callable[[str], engines.Route] | None:
        try:
            return asked.result()
        except WheelTasksError as exc:
            if strict or settings.builders:
                raise
            console.note(f"planning without build engines ({exc}); native means this machine's CPU")
            return None

    def route(platform: str) -> engines.Route | None:
        builder_for = found()
        return builder_for(platform) if builder_for is not None else None

    return route


def plan_for(
    settings: Settings,
    targets: str | Iterable[str],
    index: IndexClient | None = None,
    both: bool = False,
    build: bool = True,
    route: bool = True,
    requirements: str = "",
) -> Plan:
    """The plan of the targets (and of a requirements file's closure, -r FILE); ``build``:
    the run builds (no engine is an error then); ``route``: the steps need to know where a
    job builds (pull-existing, export and push do not: they run without an engine or buildx,
    and without asking for them). Only a run that builds names the builder images by their
    digests (asked of their registry); a plan only shown names them by their tags."""
    from . import builders
    from .index import IndexClient
    from .plan import resolve

    texts = [targets] if isinstance(targets, str) else list(targets)
    router = routes(settings, strict=build and not settings.noop) if route else None
    plan = resolve(settings, texts, index or IndexClient(settings), both=both, router=router,
                   newest=lambda: builders.newest_builder_python(settings),
                   pin=(lambda wanted: builders.pin_all(settings, wanted)) if build and route else None,
                   requirements=[Path(requirements)] if requirements else [])
    for message in plan.notes:
        console.note(message)
    return plan


@helps(targets=TARGETS_HELP, requirements=REQUIREMENTS_HELP, json="print the plan as a JSON array")
def _resolve(settings: Settings, targets: str, requirements: str = "", json: bool = False) -> None:
    """Show the ordered jobs the targets (or -r FILE) resolve to (versions from the index)."""
    from .runreport import plan_json, print_plan

    plan = plan_for(settings, targets, build=False, requirements=requirements)
    if json:
        console.emit_json(plan_json(settings, plan))
    else:
        print_plan(settings, plan)


def show_check_rows(rows: list[check_mod.CheckRow], json: bool) -> None:
    if json:
        console.emit_json([row.to_json() for row in rows])
    else:
        _print_check_rows(rows)


def _print_check_rows(rows: list[check_mod.CheckRow]) -> None:
    console.table(
        ("module", "index", "wheels/", "registry", "status"),
        [
            (r.label, r.index_version, r.local_version, r.registry_version, r.status)
            for r in rows
        ],
    )
    outdated = [r.label for r in rows if r.outdated]
    console.note(f"{len(outdated)} of {len(rows)} out of date{': ' + ', '.join(outdated) if outdated else ''}")


@helps(json="print one object per module and SSL variant as a JSON array")
def _check(settings: Settings, json: bool = False) -> None:
    """For every default module: is the index newer than what wheels/ and the registry hold?"""
    from . import check as check_mod

    show_check_rows(check_mod.check(settings), json)


def plan_and_run(settings: Settings, targets: str | Iterable[str], names: Sequence[str] | None = None,
                 json: bool = False, index: IndexClient | None = None, **how: Any) -> tuple[Plan, RunReport]:
    """plan_for the targets (``how``: its other arguments), then run the steps ``names`` (all
    by default) with the same index client: one per run, as CLEAN_CACHE clears the cache when
    a client is made, and the plan's pages stay cached for the run."""
    from . import pipeline
    from .index import IndexClient

    index = index or IndexClient(settings)
    plan = plan_for(settings, targets, index, **how)
    # Live lines only on a terminal, and not in CI logs (which keep every line).
    live = sys.stderr.isatty() and not settings.ci
    return plan, pipeline.run(settings, plan, names, json_report=json, live=live, index=index)


def run_step(settings: Settings, targets: str, step: Step, json: bool) -> None:
    """One step alone, on what earlier runs left in the work folders."""
    plan_and_run(settings, targets, (step.name,), json, route=step.routed)


REPORT_HELP = "print the run's report (every job, its result, time and log) as JSON"


@helps(json="print the check rows and the run's report as one JSON object")
def _update(settings: Settings, json: bool = False) -> None:
    """check, then build (and with --push push) the out-of-date modules for every default Python."""
    from . import check as check_mod
    from .index import IndexClient

    index = IndexClient(settings)  # one client: CLEAN_CACHE clears once per run
    rows = check_mod.check(settings, index)
    if not json:
        show_check_rows(rows, json=False)
    targets = [row.update_target for row in rows if row.outdated]
    report: dict[str, Any] | None = None
    try:
        if targets:
            # update builds both kinds, as all does
            report = plan_and_run(settings, targets, index=index, both=True)[1].to_json()
        else:
            console.note("everything is up to date")
    finally:
        if json:
            console.emit_json({"check": [row.to_json() for row in rows], "run": report})


@helps(targets=TARGETS_HELP, json=REPORT_HELP)
def _pull_existing(settings: Settings, targets: str, json: bool = False) -> None:
    """Fetch existing wheel images: the target's own and its dependencies'."""
    run_step(settings, targets, PULL_EXISTING, json)


@helps(targets=TARGETS_HELP, requirements=REQUIREMENTS_HELP, json=REPORT_HELP)
def _build(settings: Settings, targets: str, requirements: str = "", json: bool = False) -> None:
    """Build the targets' wheels (or -r FILE's): pull-existing, build, repair, export (and push with --push)."""
    plan, _ = plan_and_run(settings, targets, None, json, requirements=requirements)
    if requirements and not settings.noop:
        _requirements_done(settings, plan, Path(requirements))


def _requirements_done(settings: Settings, plan: Plan, file: Path) -> None:
    """After a run of -r FILE that ended well: the index of wheels/ (as `inv index`) and,
    where the wheel set was pushed, the Dockerfile lines that use it (as `inv snippet -r`)."""
    from . import snippet, wheelset

    _index(settings)
    if settings.do_push and plan.sets:
        console.note(f"the Dockerfile lines for {file.name} (`inv snippet -r {file}` prints them again):")
        print(snippet.wheel_set_lines(settings, wheelset.set_images(settings, plan.sets), file), end="",
              file=sys.stderr)


@helps(targets=TARGETS_HELP, json=REPORT_HELP)
def _repair(settings: Settings, targets: str, json: bool = False) -> None:
    """auditwheel-repair (shared kind) and verify what `build` left in the work folder."""
    run_step(settings, targets, REPAIR, json)


@helps(targets=TARGETS_HELP, json=REPORT_HELP)
def _export(settings: Settings, targets: str, json: bool = False) -> None:
    """Copy the repaired wheels into wheels/<arch>/ (atomically; OpenSSL builds only)."""
    run_step(settings, targets, EXPORT, json)


@helps(targets=TARGETS_HELP, json=REPORT_HELP)
def _push(settings: Settings, targets: str, json: bool = False) -> None:
    """Push the repaired wheels as multi-platform wheel images."""
    run_step(settings, targets, PUSH, json)


@helps(json=REPORT_HELP)
def _all(settings: Settings, json: bool = False) -> None:
    """Build every default module (core first) x every default Python x every arch, both kinds."""
    plan_and_run(settings, "all", None, json)


@helps(json=REPORT_HELP)
def _core(settings: Settings, json: bool = False) -> None:
    """Build the core modules x every default Python x every arch, both kinds."""
    plan_and_run(settings, "core", None, json)


@helps(json="print the builders, nodes and platforms as one JSON object")
def _engines(settings: Settings, json: bool = False) -> None:
    """The buildx builders and nodes, their platforms (native or emulated), whether each answers,
    and where each platform builds (with QEMU and cross-compilation as the fallbacks)."""
    from . import enginereport

    print(enginereport.report(settings, as_json=json))


def _clean_cache(settings: Settings) -> None:
    """Drop every cached look-up: index pages and the builder images' Pythons (CLEAN_CACHE=1
    ignores them for one run)."""
    from . import builders
    from .indexcache import clear_cache

    removed = [*clear_cache(settings), *builders.clear_cache(settings)]
    console.note(f"cleared the cache: {', '.join(map(str, removed)) or 'it was empty'}")


def _index(settings: Settings) -> None:
    """Write a static simple index (PEP 503 HTML, PEP 691 JSON, PEP 658 metadata) of every
    wheel in wheels/<arch>/ to INDEX_DIR, whole or not at all, for any static web server."""
    from . import simpleindex

    written = simpleindex.write_index(settings)
    console.note(
        f"wrote the index of {written.files} file(s) of {written.projects} project(s) to {written.folder}: "
        f"serve it as …/simple/ for pip install --index-url, or use {simpleindex.FIND_LINKS} in it with --find-links"
    )


@helps(targets=TARGETS_HELP, requirements="a pip requirements file: the lines that use its wheel set image")
def _snippet(settings: Settings, targets: str, requirements: str = "") -> None:
    """Print the Dockerfile lines that install the targets' published wheel images (or -r FILE's wheel set)."""
    from . import snippet, wheelset
    from .plan import parse_targets, ssl_modules

    if not settings.wheels_registry:
        raise WheelTasksError(
            "no registry configured: set WHEELS_REGISTRY (e.g. ghcr.io/me) to the one the images are pushed to"
        )
    if requirements:
        if targets:
            raise WheelTasksError("a snippet is of targets or of -r FILE, not both")
        plan = plan_for(settings, targets, build=False, route=False, requirements=requirements)
        print(snippet.wheel_set_lines(settings, wheelset.set_images(settings, plan.sets), Path(requirements)), end="")
        return
    plan = plan_for(settings, targets, build=False, route=False)
    wanted = {t.module for t in parse_targets(settings, [targets], ssl_modules(settings))[0]}
    print(snippet.dockerfile_lines(plan.jobs, wanted), end="")


ns = Collection(
    wheel_task(_resolve, "resolve"),
    wheel_task(_check, "check"),
    wheel_task(_update, "update"),
    wheel_task(_pull_existing, PULL_EXISTING.task),
    wheel_task(_build, BUILD.task),
    wheel_task(_repair, REPAIR.task),
    wheel_task(_export, EXPORT.task),
    wheel_task(_push, PUSH.task),
    wheel_task(_all, "all"),
    wheel_task(_core, "core"),
    wheel_task(_engines, "engines"),
    wheel_task(_clean_cache, "clean-cache"),
    wheel_task(_index, "index"),
    wheel_task(_snippet, "snippet"),
)
