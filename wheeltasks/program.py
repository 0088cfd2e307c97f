"""The ``wheeltasks`` command: an invoke Program over the task namespace.

Unlike ``inv``, it accepts several targets as separate words (``wheeltasks build a b
c``) and flags before targets (``wheeltasks build --push cffi``): invoke itself calls a
word after an optional-value flag ambiguous while a positional is missing, so this
program moves the targets next to their task and gives every setting flag its value.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from invoke.program import Program

from .settings import Settings
from .tasks import SETTING_FLAGS, ns

_TASK_NAMES = frozenset(ns.task_names) | {alias for names in ns.task_names.values() for alias in names}
_SWITCHES = {f.name for f in dataclasses.fields(Settings) if isinstance(f.default, bool)}


def _setting(word: str) -> str | None:
    """The setting a ``--flag`` (without ``=``) names, if it is one."""
    if not word.startswith("--") or "=" in word:
        return None
    return SETTING_FLAGS.get(word[2:].replace("-", "_"))


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Put a task's bare words, joined, right after it; give setting flags their values.

    ``build --push a --pypi-index URL b`` becomes ``build a,b --push=yes --pypi-index=URL``:
    invoke accepts an optional-value flag only once the positional targets are filled.
    """
    out: list[str] = []
    targets_at: int | None = None
    task_at: int | None = None
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        setting = _setting(word)
        if setting is not None:
            if setting in _SWITCHES:
                out.append(f"{word}=yes")
            elif i < len(words):
                out.append(f"{word}={words[i]}")
                i += 1
            else:
                out.append(word)
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


program = Program(namespace=ns, name="wheeltasks", binary="wheeltasks", version="0.1.0")


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv if argv is None else argv)
    program.run([args[0], *normalise_argv(args[1:])])
