"""The ``wheeltasks`` command: an invoke Program over the task namespace.

Unlike ``inv``, it accepts several targets as separate words (``wheeltasks build a b
c``) and flags before targets (``wheeltasks build --push cffi``): invoke itself calls a
word after a flag ambiguous while a positional is missing, so this program moves the
targets next to their task. It reads the project's ``invoke.yaml`` as ``inv`` does
(beside the ``tasks.py`` found from the current folder upward, else in the current
folder), and reports command-line and configuration errors as one line, exit code 2;
help and lists end quietly (exit 141) when their reader went away.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from invoke.exceptions import CollectionNotFound, Exit, ParseError
from invoke.loader import FilesystemLoader
from invoke.program import Program

from . import invoke_edge
from .errors import BROKEN_PIPE, USER_ERROR
from .tasks import ns, switch_flags, value_flags

_TASK_NAMES = frozenset(ns.task_names) | {alias for names in ns.task_names.values() for alias in names}
_SWITCHES = switch_flags()
_VALUES = value_flags()


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Put a task's bare words, joined, right after it; join value flags to their values.

    ``build --push a --pypi-index URL b`` becomes ``build a,b --push --pypi-index=URL``:
    invoke accepts flags only once the positional targets are filled. A value flag
    with nothing after it stays bare, so invoke reports it.
    """
    out: list[str] = []
    targets_at: int | None = None
    task_at: int | None = None
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word in _VALUES and i < len(words) and not words[i].startswith("-"):
            out.append(f"{word}={words[i]}")
            i += 1
        elif word.startswith("-"):
            out.append(word)
        elif word in _TASK_NAMES:
            task_at, targets_at = len(out), None
            out.append(word)
        elif targets_at is not None:
            out[targets_at] += "," + word
        elif task_at is not None:
            targets_at = task_at + 1
            out.insert(targets_at, word)
        else:
            out.append(word)
    return out


def project_folder(start: Path) -> Path:
    """Where ``inv`` would look for ``invoke.yaml``: the folder of the ``tasks.py`` it would load."""
    try:
        _spec = FilesystemLoader(start=str(start)).find("tasks")
    except CollectionNotFound:
        return start
    origin = _spec.origin if _spec is not None else None
    return Path(origin).parent if origin else start


def parse_error(exc: ParseError) -> Exit:
    """invoke's parse error as the project's one line (``--flag needs a value``), exit 2."""
    text = str(exc)
    m = re.match(r"Flag <Argument: (\w+)> needed value", text)
    if m:
        text = f"--{m[1].replace('_', '-')} needs a value (--{m[1].replace('_', '-')}=VALUE)"
    return Exit(f"wheeltasks: {text}", code=USER_ERROR)


class WheelTasksProgram(Program):
    """An invoke Program whose parse and configuration errors are one line and exit 2."""

    safe_config = True  # it loads the project's configuration itself (invoke_edge)
    # invoke prints help and lists itself: a closed pipe there is exit 141, quietly.
    print_help = invoke_edge.quiet_pipe(Program.print_help)
    print_task_help = invoke_edge.quiet_pipe(Program.print_task_help)
    list_tasks = invoke_edge.quiet_pipe(Program.list_tasks)
    print_version = invoke_edge.quiet_pipe(Program.print_version)

    def create_config(self) -> None:
        super().create_config()
        invoke_edge.guard(self.config)

    def parse_core(self, argv: list[str] | None) -> None:
        try:
            super().parse_core(argv)
        except ParseError as exc:
            raise parse_error(exc) from None
        # invoke stops Python writing .pyc files (for the task files it imports, unless
        # --write-pyc): this program imports no project file, only its own modules, which
        # an editable install would otherwise compile again in every run (a tenth of a
        # second). The interpreter's own setting (-B, PYTHONDONTWRITEBYTECODE) still holds.
        sys.dont_write_bytecode = bool(sys.flags.dont_write_bytecode)

    def parse_collection(self) -> None:
        super().parse_collection()
        folder = project_folder(Path(os.getcwd()))
        self.config.set_project_location(str(folder))
        self.config.load_project()  # checked first (invoke_edge.guard)

    def parse_tasks(self) -> None:
        invoke_edge.help_after_task(self)
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise parse_error(exc) from None


program = WheelTasksProgram(namespace=ns, name="wheeltasks", binary="wheeltasks", version="0.1.0")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv if argv is None else argv)
    try:
        program.run([args[0], *normalise_argv(args[1:])])
    except BrokenPipeError:  # printed by invoke outside the printers and tasks
        invoke_edge.closed_pipe()
        sys.exit(BROKEN_PIPE)
    finally:
        # Program.run ends in sys.exit: flush here, so a closed pipe is met here, not at exit.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            invoke_edge.closed_pipe()
            sys.exit(BROKEN_PIPE)
