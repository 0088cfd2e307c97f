"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations


class WheelTasksError(Exception):
    """A user-facing error: bad input, missing service, refused credentials.

    The message is shown as one line (no traceback) and the task exits with code 2,
    so it must say what was wrong and what to do about it.
    """

    exit_code = 2
