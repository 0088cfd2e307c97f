"""Where invoke itself reads and prints, outside the tasks: the project's configuration file,
the help and the task list. Made one line (exit 2) and quiet (exit 141) for both commands.

The project's ``invoke.yaml`` (or ``.yml``, ``.json``, ``.py``, the first that exists beside
the ``tasks.py``) is read by invoke's ``Config.load_project``. invoke opens it unchecked (a
FIFO there blocks it for good), and a file that does not parse, is not UTF-8, is not a
mapping, or has a key that is not text (invoke's environment look-up then fails while
starting the task) ends in a traceback. :func:`load_project` checks the file first and
turns each of those into one ``wheeltasks:`` line, exit 2 (:func:`guard`; a runtime file,
``inv -f FILE``, is checked the same way).

``wheeltasks`` (``program.py``) calls it itself. ``inv`` loads the project's configuration
right after it imported the ``tasks.py`` that imports this package, and before any task
runs: so the package, as it is imported, adopts the invoke Program that is importing it
(:func:`adopt_loading_program`): that Program's configuration loads the project file
through :func:`load_project`, and its help and task list stop quietly on a closed pipe.
What ``inv`` reads or prints before it imports ``tasks.py`` (``/etc/invoke.yaml`` and
``~/.invoke.yaml`` in ``Program.create_config``, ``inv --help`` without a task and
``inv --version`` in ``parse_core``/``parse_collection``) is beyond reach.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from invoke.config import Config
from invoke.exceptions import Exit, UnknownFileType
from invoke.parser.argument import Argument
from invoke.program import Program
from invoke.tasks import Task
from invoke.util import yaml  # type: ignore[attr-defined]  # invoke vendors PyYAML

from .errors import BROKEN_PIPE, USER_ERROR

F = TypeVar("F", bound=Callable[..., Any])

# The project configuration files, in the order invoke's Config tries them.
SUFFIXES = ("yaml", "yml", "json", "py")
# The Program methods that print help or lists (invoke calls them, then raises Exit).
PRINTERS = ("print_help", "print_task_help", "list_tasks", "print_version")


def config_error(folder: Path | str, what: str) -> Exit:
    text = " ".join(what.split())[:300]
    return Exit(f"wheeltasks: cannot read the invoke configuration in {folder}: {text}", code=USER_ERROR)


def project_file(folder: Path, prefix: str = "invoke") -> Path | None:
    """The configuration file invoke will load from ``folder``: the first that exists."""
    for suffix in SUFFIXES:
        path = folder / f"{prefix}.{suffix}"
        if os.path.lexists(path):
            return path
    return None


def check_project_file(path: Path) -> None:
    """Refuse a file invoke would block on, fail on, or load into a shape it then fails on."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:  # a dangling symlink, a folder without permission
        raise config_error(path.parent, f"{path.name}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO or a device?)"
        raise config_error(path.parent, f"{path.name} is {kind}; it must be a file")
    if path.suffix.lstrip(".") not in ("yaml", "yml", "json"):
        return  # Python (only invoke can run it), or a type invoke refuses itself: its errors are caught
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)  # type: ignore[no-untyped-call]
    except UnicodeDecodeError as exc:
        raise config_error(path.parent, f"{path.name} is not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise config_error(path.parent, f"{path.name}: {_yaml_problem(exc)}") from None
    except (ValueError, RecursionError) as exc:  # JSON's messages name only places
        raise config_error(path.parent, f"{path.name}: {exc}") from None
    except OSError as exc:
        raise config_error(path.parent, f"{path.name}: {exc.strerror}") from None
    if data is None:
        return  # an empty file: no settings
    if not isinstance(data, dict):
        raise config_error(path.parent, f"{path.name} must be a mapping of sections, not a {type(data).__name__}")
    _check_keys(path, data, ())


def _yaml_problem(exc: Exception) -> str:
    """What PyYAML says is wrong and where, without the snippet of the file it quotes: the
    line may hold a secret (an index URL with credentials)."""
    parts = []
    for what, mark in (("context", "context_mark"), ("problem", "problem_mark")):
        text, place = getattr(exc, what, None), getattr(exc, mark, None)
        if text:
            where = f" at line {place.line + 1}, column {place.column + 1}" if place is not None else ""
            parts.append(f"{text}{where}")
    return "; ".join(parts) or type(exc).__name__


def _check_keys(path: Path, data: dict[Any, Any], where: tuple[str, ...]) -> None:
    """Every key text, and no mapping inside itself (a YAML alias can do that; invoke's merge
    then recurses for ever). On a stack of its own: a deeply nested file must not meet the
    recursion limit here either."""
    pending: list[tuple[dict[Any, Any], tuple[str, ...], frozenset[int]]] = [(data, where, frozenset())]
    while pending:
        mapping, at, above = pending.pop()
        inside = above | {id(mapping)}
        for key, value in mapping.items():
            if not isinstance(key, str):
                under = f" under {'.'.join(at)}" if at else ""
                raise config_error(path.parent, f"{path.name}: the key {key!r}{under} is not text; quote it")
            if isinstance(value, dict):
                if id(value) in inside:
                    raise config_error(path.parent, f"{path.name}: {'.'.join((*at, key))} contains itself (a YAML alias)")
                pending.append((value, (*at, key), inside))


def _loaded(load: Callable[[bool], None], merge: bool, path: Path | None, folder: Path | str) -> None:
    """``load(merge)`` (one of invoke's loaders) once ``path`` was checked; any failure of
    invoke's is one line too."""
    if path is not None:
        check_project_file(path)
    try:
        load(merge)
    except (yaml.YAMLError, OSError, AttributeError, TypeError, ValueError, SyntaxError, UnknownFileType,
            RecursionError) as exc:  # fmt: skip
        raise config_error(folder, str(exc) or type(exc).__name__) from None


def guard(config: Config) -> None:
    """Make ``config`` check the project's configuration file, and a runtime one (``inv -f
    FILE``, ``INVOKE_RUNTIME_CONFIG``), before invoke reads it. The methods are replaced on
    this instance only, with object.__setattr__: a Config turns other attribute sets into
    configuration values."""
    set_project, load_project = config.set_project_location, config.load_project
    set_runtime, load_runtime = config.set_runtime_path, config.load_runtime
    where: dict[str, str | None] = {"project": None, "runtime": None}
    prefix = str(config.file_prefix or config.prefix)

    def set_project_location(path: Any) -> None:
        where["project"] = None if path is None else str(path)
        set_project(path)

    def load_project_checked(merge: bool = True) -> None:
        folder = where["project"]
        if folder is None:
            load_project(merge)
        else:
            _loaded(load_project, merge, project_file(Path(folder), prefix), folder)

    def set_runtime_path(path: Any) -> None:
        where["runtime"] = None if path is None else str(path)
        set_runtime(path)

    def load_runtime_checked(merge: bool = True) -> None:
        runtime = where["runtime"]
        if runtime is None:
            load_runtime(merge)
        else:  # invoke skips a runtime file that does not exist: so does the check
            path = Path(runtime).expanduser()
            _loaded(load_runtime, merge, path if os.path.lexists(path) else None, path.parent)

    for name, method in (("set_project_location", set_project_location), ("load_project", load_project_checked),
                         ("set_runtime_path", set_runtime_path), ("load_runtime", load_runtime_checked)):
        object.__setattr__(config, name, method)


def closed_pipe() -> Exit:
    """The reader of the output went away (``| head``): the rest goes to /dev/null, so the
    flush at exit cannot fail again ("Exception ignored ..."), and the exit code is 141,
    what a shell reports for a process that SIGPIPE ended."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return Exit(code=BROKEN_PIPE)


def quiet_pipe(printer: F) -> F:
    """``printer`` (one of invoke's help or list printers), its output flushed inside, so a
    closed pipe is met here and not at exit."""

    @functools.wraps(printer)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = printer(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            raise closed_pipe() from None
        return result

    return wrapper  # type: ignore[return-value]


def help_after_task(program: Program) -> None:
    """``inv build --help`` as ``inv --help build``: the task's help. invoke gives the word
    after a task with a positional still missing (its targets) to that positional, so
    ``--help`` there would be taken for a target."""
    words = list(program.core.unparsed)
    if len(words) > 1 and not words[0].startswith("-"):
        flags = words[1:words.index("--")] if "--" in words else words[1:]
        if "--help" in flags or "-h" in flags:
            program.args.help.value = words[0]
            program.core.unparsed = []


def loading_program(frame: FrameType | None) -> Program | None:
    """The invoke Program whose ``load_collection`` is on the stack (importing ``tasks.py``)."""
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if frame.f_code.co_name == "load_collection" and isinstance(candidate, Program):
            return candidate
        frame = frame.f_back
    return None


def adopt_loading_program() -> None:
    """Under ``inv``: the Program importing this package checks the project's (and a runtime)
    configuration file before reading it (:func:`guard`), and its help and lists stop
    quietly on a closed pipe. Nothing happens when no Program is loading a collection
    (``wheeltasks``, a test, a library import), or when that Program already is
    ``wheeltasks``'s own."""
    program = loading_program(sys._getframe(1))
    if program is None or getattr(program, "safe_config", False):
        return
    guard(program.config)
    help_after_task(program)
    for name in PRINTERS:
        setattr(program, name, quiet_pipe(getattr(program, name)))


class _Targets(Argument):
    """A task's positional targets, which a requirements file may stand in for: given
    ``-r/--requirements FILE``, no target is needed (invoke requires every positional)."""

    requirements: Argument | None = None

    @property
    def value(self) -> Any:
        if self._value is None and self.requirements is not None and self.requirements.value:
            return ""
        return self._value if self._value is not None else self.default

    @value.setter
    def value(self, arg: str) -> None:
        self.set_value(arg, cast=True)


class TargetsTask(Task[Any]):
    """A task whose ``requirements`` flag is also ``-r``, and whose ``targets`` may be left
    out when it is given."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        args = super().get_arguments(ignore_unknown_help)
        by_name = {a.name: a for a in args}
        targets, requirements = by_name.get("targets"), by_name.get("requirements")
        if targets is None or requirements is None:
            return args
        optional = _Targets(names=targets.names, kind=targets.kind, default=targets.default, help=targets.help,
                            positional=True, attr_name=targets.attr_name)
        optional.requirements = requirements
        requirements.names = (*requirements.names, "r")
        return [optional if a is targets else a for a in args]
