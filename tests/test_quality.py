"""The package stays ruff- and mypy --strict-clean (DESIGN.md, Style)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "wheeltasks", "tests", "bench"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "wheeltasks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_auditwheel_is_bounded_where_its_internals_are_read() -> None:
    """verify.py imports auditwheel's internals: the package's requirement bounds it, and the
    auditwheel that repairs in builds and containers is the same requirement."""
    from wheeltasks.verify import AUDITWHEEL_REQUIREMENT

    requires = (ROOT / "setup.cfg").read_text()
    assert f"    {AUDITWHEEL_REQUIREMENT}\n" in requires
    assert ",<" in AUDITWHEEL_REQUIREMENT
    users = [p.name for p in (ROOT / "wheeltasks").glob("*.py") if "from auditwheel" in p.read_text()]
    assert users == ["verify.py"]
