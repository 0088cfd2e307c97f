"""wheeltasks: build musl wheels for every CPU architecture in Docker and publish wheel images.

Chain the tasks into another repository's ``tasks.py``::

    from invoke import Collection
    import wheeltasks

    ns = Collection()
    ns.add_collection(wheeltasks.ns, name="wheels")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import WheelTasksError
from .invoke_edge import adopt_loading_program
from .settings import Kind, Settings
from .targets import ARCHES, SSL, Arch, Target, format_target, parse_target
from .tasks import ns

if TYPE_CHECKING:
    from .job import Job
    from .plan import Plan, resolve

# Imported when first asked for: `inv --list` and `wheeltasks --help` need only the tasks.
_LAZY = {"Job": "job", "Plan": "plan", "resolve": "plan"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Under `inv`, the Program importing this package (through the project's tasks.py) is
# about to read the project's invoke.yaml: make that, and its help, one line or quiet.
adopt_loading_program()

__all__ = [
    "ARCHES", "SSL", "Arch", "Job", "Kind", "Plan", "Settings", "Target", "WheelTasksError",
    "format_target", "ns", "parse_target", "resolve",
]
