"""The project's exception types and the exit codes they become.

Every error a user can meet is a :class:`WheelTasksError` (or a subclass): the task
prints its message as one line, with no traceback, and exits with its code:

====  ==========================================================================
code  meaning
====  ==========================================================================
0     success
1     a bug in wheeltasks (a traceback), or with ``inv``: invoke's own parse errors
2     user error: bad target, setting, configuration, credentials or local files
3     build failure: a build, repair or verification of at least one job failed
4     remote failure: the index or the registry failed or could not be reached
129   stopped by SIGHUP (the terminal went away), cleaned up as after Ctrl-C
130   interrupted (Ctrl-C); nothing half-written is left behind
141   the reader of the output went away (``| head``)
143   stopped by SIGTERM (``kill``, a CI job's timeout), cleaned up as after Ctrl-C
====  ==========================================================================
"""

from __future__ import annotations

import signal

USER_ERROR = 2
BUILD_FAILED = 3
REMOTE_FAILED = 4
INTERRUPTED = 130
BROKEN_PIPE = 141


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every
    clean-up path that handles Ctrl-C runs for them too; the exit code is 128 + the signal's
    number (143, 129), as a shell reports a process that the signal ended."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


class WheelTasksError(Exception):
    """A user-facing error: bad input, missing service, refused credentials.

    The message is shown as one line (no traceback) and the task exits with
    :attr:`exit_code`, so it must say what was wrong and what to do about it.
    """

    exit_code = USER_ERROR


class BuildError(WheelTasksError):
    """A job's build, repair or verification failed (its log says why)."""

    exit_code = BUILD_FAILED


class RemoteError(WheelTasksError):
    """A remote service (index, registry, token service) failed, timed out or was unreachable."""

    exit_code = REMOTE_FAILED


def first_line(value: object) -> str:
    """The first line of an error's text (or its type when it has none), for one-line messages."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
