"""File helpers: whole-or-nothing writes, and the build date of a set of wheels."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_writer(dest: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file handle whose contents become ``dest`` only when the block ends without error.

    The data goes to a unique temporary file beside ``dest``, is flushed to disk, and is
    renamed over ``dest``; on any error (Ctrl-C included) the temporary file is removed,
    so ``dest`` is either the old file or the complete new one, never a part.
    """
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(dest: Path, data: bytes) -> Path:
    with atomic_writer(dest) as handle:
        handle.write(data)
    return dest


def copy_atomic(source: Path, dest: Path, cancelled: threading.Event | None = None) -> Path:
    """Write ``dest`` as a complete copy of ``source`` or not at all.

    ``cancelled`` stops a copy in a worker thread (which Ctrl-C does not reach) between blocks.
    """
    with atomic_writer(dest) as out, source.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            if cancelled is not None and cancelled.is_set():
                raise KeyboardInterrupt
            out.write(block)
    return dest


def wheels_in(folder: Path) -> list[Path]:
    """The wheels in a folder, sorted; none when it does not exist."""
    return sorted(folder.glob("*.whl")) if folder.is_dir() else []


def newest_zip_time(wheels: Iterable[Path]) -> datetime | None:
    """The newest entry time inside the wheels (as UTC), None when there is none.

    It changes only when the wheels do: a build date that keeps rebuilt images and
    repaired wheels byte-identical. Unreadable files are skipped.
    """
    newest: tuple[int, ...] | None = None
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as archive:
                times = [info.date_time for info in archive.infolist()]
        except (zipfile.BadZipFile, OSError):
            continue
        if times:
            newest = max(newest or times[0], *times)
    if newest is None:
        return None
    year, month, day, hour, minute, second = newest
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


@contextmanager
def private_file(content: str, name: str = "secret") -> Iterator[Path]:
    """``content`` in a file only this user can read, for the length of the block.

    The file lives in a fresh private temporary folder (so never in a build context or
    a work folder), is created exclusively (an existing file or symlink is never
    followed), and is removed with its folder when the block ends, however it ends.
    """
    folder = Path(tempfile.mkdtemp(prefix="wheeltasks-"))
    try:
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def clear(folder: Path) -> None:
    """Remove a folder and everything in it, if it exists."""
    shutil.rmtree(folder, ignore_errors=True)
