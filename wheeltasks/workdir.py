"""A job's work folder: every path in it, and every change of the job's state.

The state is what the folder holds::

    EMPTY ──pull──▶ PULLED      (its own wheel image had the platform)
    EMPTY ──build─▶ BUILT ──repair─▶ REPAIRED ──▶ exported / pushed
    PULLED ──build─▶ BUILT      (a build replaces pulled wheels; NO_SELF_PULL)
    BUILT|REPAIRED ──pull─▶ PULLED   (published wheels replace an older build)

Each step writes into a fresh ``<name>.partial`` staging folder that becomes the
step's folder only when the step succeeded (:meth:`WorkDir.accept`), so a failed or
interrupted step never leaves a half-written result behind, and the folders that the
new state makes stale are removed in the same place.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass
from pathlib import Path

from . import running
from .files import clear, copy_atomic, wheels_in

STAGING_SUFFIX = ".partial"


class State(enum.Enum):
    EMPTY = "empty"
    PULLED = "pulled"
    BUILT = "built"
    REPAIRED = "repaired"


# Which folders a newly accepted result makes stale.
_REPLACES: dict[str, tuple[str, ...]] = {
    "pulled": ("built", "repaired"),
    "built": ("pulled", "repaired"),
    "repaired": (),
}


@dataclass(frozen=True)
class WorkDir:
    root: Path

    # ---- paths ---------------------------------------------------------------------

    @property
    def pulled(self) -> Path:
        """The job's own wheels pulled from an existing image (then no build is needed)."""
        return self.root / "pulled"

    @property
    def built(self) -> Path:
        return self.root / "built"

    @property
    def repaired_here(self) -> Path:
        """Wheels a cross build repaired on the build platform (the repair step takes them)."""
        return self.built / "repaired"

    @property
    def check(self) -> Path:
        """The job's wheels unpacked for its import check (only while it runs)."""
        return self.root / "check"

    @property
    def repaired(self) -> Path:
        return self.root / "repaired"

    @property
    def imports(self) -> Path:
        """Wheels of dependencies (pulled, or built earlier in the run), offered to pip first."""
        return self.root / "imports"

    @property
    def context(self) -> Path:
        """The build context (the job's recipe and the imports)."""
        return self.root / "context"

    @property
    def build_log(self) -> Path:
        return self.root / "build.log"

    @property
    def cross_log(self) -> Path:
        """The log of a cross build (kept beside build.log when an emulated build followed)."""
        return self.root / "build-cross.log"

    @property
    def last_build_log(self) -> Path | None:
        """The log of the latest build: a cross build's, or the one after it (an emulated
        retry, or a later run's build); None before any build."""
        logs = []
        for log in (self.build_log, self.cross_log):
            with contextlib.suppress(FileNotFoundError):
                logs.append((log.stat().st_mtime_ns, log))
        return max(logs)[1] if logs else None

    @property
    def repair_log(self) -> Path:
        return self.root / "repair.log"

    @property
    def check_log(self) -> Path:
        return self.root / "check.log"

    def staging(self, name: str) -> Path:
        """A fresh, empty ``<name>.partial`` folder for a step's output.

        Refused (KeyboardInterrupt) once the run is being stopped: a worker thread that
        Ctrl-C does not reach would otherwise start a step after the clean-up.
        """
        if running.cancelled.is_set():
            raise KeyboardInterrupt
        folder = self.root / f"{name}{STAGING_SUFFIX}"
        clear(folder)
        folder.mkdir(parents=True)
        return folder

    # ---- state ---------------------------------------------------------------------

    def state(self) -> State:
        if wheels_in(self.repaired):
            return State.REPAIRED
        if wheels_in(self.built):
            return State.BUILT
        if wheels_in(self.pulled):
            return State.PULLED
        return State.EMPTY

    def result_wheels(self) -> list[Path]:
        """What the job produced: repaired wheels, else those pulled from its own image."""
        return wheels_in(self.repaired) or wheels_in(self.pulled)

    def accept(self, name: str, staging: Path) -> list[Path]:
        """Make a step's staging folder its result (``pulled``, ``built`` or ``repaired``)."""
        for stale in (name, *_REPLACES[name]):
            clear(self.root / stale)
        final = self.root / name
        staging.rename(final)
        final.chmod(0o755)  # buildx creates its output folder private
        return wheels_in(final)

    def discard(self, staging: Path) -> None:
        clear(staging)

    def discard_staging(self) -> None:
        """Remove every staging folder (``*.partial``, with the pulls' ``.pull-*`` inside): a
        stopped run's steps may not all have got to discard their own."""
        if self.root.is_dir():
            for folder in self.root.glob(f"*{STAGING_SUFFIX}"):
                clear(folder)

    def offer_imports(self, wheels: list[Path]) -> None:
        """Add wheels to ``imports/`` (each written whole; those present are kept)."""
        if not wheels:
            return
        self.imports.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            target = self.imports / wheel.name
            if not target.exists():
                copy_atomic(wheel, target)
