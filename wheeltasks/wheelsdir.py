"""The exported wheels' folder: ``wheels/<arch>/<wheel>``, one folder per architecture by
its name in the table (``export`` writes it, ``check`` reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def arch_folder(wheels_dir: Path, arch_name: str) -> Path:
    """Where the wheels of one architecture (by its name in the table) are exported."""
    return wheels_dir / arch_name


def exported_wheels(wheels_dir: Path) -> Iterator[Path]:
    """Every wheel in every architecture's folder."""
    return wheels_dir.glob(str(arch_folder(Path(), "*") / "*.whl"))
