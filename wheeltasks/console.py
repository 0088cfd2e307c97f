"""Output: progress lines and notes on stderr, results (tables, JSON) on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO


def note(message: str) -> None:
    print(f"wheeltasks: {message}", file=sys.stderr, flush=True)


def progress(job_target: str, step: str, message: str = "") -> None:
    print(f"[{step}] {job_target}{' ' + message if message else ''}", file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
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
