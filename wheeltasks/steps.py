"""The table of steps: each step of the flow once, with what runs it, its log, the task that
runs it alone and the parts of the work (settings) it reads. The table feeds the flow's
order (:data:`FULL_FLOW`), the live lines (each running job's log), and the tasks (their
names, steps and flags: ``tasks.py``).

Each ``run`` is a function of ``stepruns.py``, which adapts a step module (``build``,
``repair``, ``importcheck``, ``export``, ``images``) to the flow; it is imported on a step's
first run, so the tasks' flags and help need only this table. A new step is one row here,
its function there, and its module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .settings import Part

if TYPE_CHECKING:
    from .job import Job
    from .runreport import JobResult
    from .stepruns import Context
    from .workdir import WorkDir

Run = Callable[["Context", "Job", "JobResult"], None]


def _runs(name: str) -> Run:
    """``stepruns.<name>``, imported when the step first runs."""

    def run(context: Context, job: Job, result: JobResult) -> None:
        from . import stepruns

        getattr(stepruns, name)(context, job, result)

    run.__name__ = run.__qualname__ = name
    return run


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of the flow."""

    name: str  # in progress and live lines, the report's step_seconds, and `inv <task>` help
    run: Run  # run(context, job, result); result.state is the step's name (the scheduler sets it)
    log: Callable[[WorkDir], Path | None]  # the log a live line shows the last line of
    task: str  # the task that runs the step alone ("": none, it runs only within the flow)
    reads: tuple[Part, ...]  # the parts of the work whose settings it reads (its task's flags)
    routed: bool  # needs to know where the job builds (its builder, node and engine)


def _no_log(work: WorkDir) -> Path | None:
    return None


PULL_EXISTING = Step("pull-existing", _runs("pull_existing"), _no_log, "pull-existing", (Part.PULL, Part.REGISTRY), False)
BUILD = Step("build", _runs("build"), lambda work: work.last_build_log, "build", (Part.BUILD,), True)
REPAIR = Step("repair", _runs("repair"), lambda work: work.repair_log, "repair", (Part.REPAIR,), True)
IMPORT_CHECK = Step("import-check", _runs("import_check"), lambda work: work.check_log, "", (Part.REPAIR,), True)
EXPORT = Step("export", _runs("export"), _no_log, "export", (Part.EXPORT,), False)
PUSH = Step("push", _runs("push"), _no_log, "push", (Part.PUSH, Part.REGISTRY), False)

STEPS: tuple[Step, ...] = (PULL_EXISTING, BUILD, REPAIR, IMPORT_CHECK, EXPORT, PUSH)
FULL_FLOW: tuple[str, ...] = tuple(step.name for step in STEPS)
BY_NAME: Mapping[str, Step] = {step.name: step for step in STEPS}


def reads(names: Iterable[str]) -> tuple[Part, ...]:
    """The parts of the work the named steps read, in the table's order."""
    return tuple(dict.fromkeys(part for name in names for part in BY_NAME[name].reads))
