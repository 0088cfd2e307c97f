"""The flow's decisions for one job: pure functions of the settings and the job's state.

- pull-existing (with a registry, unless NO_PULL_WHEELS): the job's own image is pulled
  unless NO_SELF_PULL, or unless its wheels are already here (WHEELS_FORCE_PULL pulls
  anyway); the dependencies' images are pulled into ``imports/`` unless this run built
  them already.
- build: a job whose own image was pulled is **reused** (not built) unless NO_SELF_PULL;
  NO_BUILD **skips** the build; otherwise it is **built**, or **takes** the wheel the plan
  chose for it (``sources.py``: another job's that serves it, the index's), and builds when
  that turns out not to serve.
- repair: a built job is repaired; a reused one needs none; nothing built is an error.
- import-check: what this run built or took, repaired (reused images were checked when
  they were built).
- export: OpenSSL (and SSL-less) jobs only (``Job.exports``); push: with DO_PUSH (or the
  push task).

``stepruns.py`` applies them, step by step; how a job ended is one :class:`Outcome`.
"""

from __future__ import annotations

import enum

from .settings import Settings
from .workdir import State


class Outcome(str, enum.Enum):
    """How a job ended (the run report's ``result``); a ``str`` so the report's JSON and the
    closing table show the same words as ever."""

    PENDING = "pending"  # not ended (yet)
    BUILT = "built"
    REUSED = "reused"  # its own published image had the platform
    TOOK_BUILD = "took a build"  # another job's wheel, which serves it (pure, abi3)
    FROM_INDEX = "from the index"  # the index's wheel for its platform and Python
    SKIPPED = "skipped"  # NO_BUILD
    DONE = "done"  # its steps ran, none of them a build
    FAILED = "failed"
    DEPENDENCY_FAILED = "dependency failed"  # not run: a job it depends on failed

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        return self in (Outcome.FAILED, Outcome.DEPENDENCY_FAILED)


def wants_self_pull(settings: Settings, state: State) -> bool:
    """Whether pull-existing fetches the job's own image."""
    if settings.no_pull_wheels or settings.no_self_pull or not settings.wheels_registry:
        return False
    return settings.wheels_force_pull or state is not State.PULLED


def wants_dependency_pulls(settings: Settings) -> bool:
    return bool(settings.wheels_registry) and not settings.no_pull_wheels


def build_decision(settings: Settings, state: State) -> Outcome:
    """What the build step does: REUSED (its image was pulled), SKIPPED (NO_BUILD) or BUILT."""
    if state is State.PULLED and not settings.no_self_pull:
        return Outcome.REUSED
    if settings.no_build:
        return Outcome.SKIPPED
    return Outcome.BUILT


def wants_repair(state: State) -> bool:
    """A job whose result was pulled needs no repair (it was repaired when it was built)."""
    return state is not State.PULLED


def wants_import_check(state: State, outcome: Outcome) -> bool:
    """What this run built, or took from another job or the index, is imported on its
    platform (reused images were checked when they were built)."""
    return state is State.REPAIRED and outcome in (Outcome.BUILT, Outcome.TOOK_BUILD, Outcome.FROM_INDEX)
