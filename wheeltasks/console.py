"""Output: progress lines and notes on stderr, results (tables, JSON) on stdout."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

# Output from several job threads: one line at a time, and around the live lines.
_lock = threading.RLock()
_live: _Live | None = None


def _line(text: str) -> None:
    with _lock:
        if _live is not None:
            _live.clear()
        print(text, file=sys.stderr, flush=True)


def note(message: str) -> None:
    _line(f"wheeltasks: {message}")


class _NoteHandler(logging.Handler):
    """The project's log warnings as notes: one ``wheeltasks: warning: ...`` line each."""

    def emit(self, record: logging.LogRecord) -> None:
        note(f"{record.levelname.lower()}: {record.getMessage()}")


def show_warnings() -> None:
    """Print the ``wheeltasks.*`` loggers' warnings as notes (once per process)."""
    logger = logging.getLogger("wheeltasks")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        handler = _NoteHandler(logging.WARNING)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def progress(job_target: str, step: str, message: str = "") -> None:
    _line(f"[{step}] {job_target}{' ' + message if message else ''}")


class _Live:
    """Lines kept at the bottom of a terminal, redrawn twice a second (ANSI: cursor up, clear)."""

    def __init__(self, source: Callable[[], list[str]]) -> None:
        self.source = source
        self.drawn = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def clear(self) -> None:
        if self.drawn:
            sys.stderr.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        lines = [line[:width] for line in self.source()]
        with _lock:
            self.clear()
            for line in lines:
                sys.stderr.write(line + "\n")
            self.drawn = len(lines)
            sys.stderr.flush()

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self.draw()


@contextmanager
def live(source: Callable[[], list[str]] | None) -> Iterator[None]:
    """Keep ``source()``'s lines (one per running job) live at the bottom of the terminal."""
    global _live
    if source is None:
        yield
        return
    runner = _Live(source)
    with _lock:
        _live = runner
    runner.thread.start()
    try:
        yield
    finally:
        runner.stop.set()
        runner.thread.join()
        with _lock:
            runner.clear()
            _live = None


def last_line(path: Path, width: int = 200) -> str:
    """The last non-empty line of a log that is being written (read from its end)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:width] if lines else ""


def emit_json(data: Any) -> None:
    """JSON on stdout: a list one item to a line (json's C encoder: ``indent`` takes its
    pure-Python one, a fifth of a second for the 1,490 jobs of `all`), anything else indented."""
    if isinstance(data, list):
        print("[\n" + ",\n".join(f"  {json.dumps(item)}" for item in data) + "\n]" if data else "[]")
    else:
        print(json.dumps(data, indent=2))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], stream: TextIO | None = None) -> None:
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=stream or sys.stdout)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream or sys.stdout)


LOG_TAIL_LINES = 30


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, width: int = 300) -> str:
    """The last lines of a log, each cut to ``width`` (BuildKit echoes whole RUN scripts)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(line if len(line) <= width else line[:width] + " [...]" for line in tail)
