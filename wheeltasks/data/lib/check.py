"""wheeltasks: the import check's imports, in the job's builder on its platform.

    python3 check.py NAME...    import the names (the wheels on PYTHONPATH, /check)
    python3 check.py --serve    many checks, one container: a request per line on stdin,
                                {"site": FOLDER, "names": [NAME...]}, each imported in a child
                                of this process (a fork: a fresh set of modules, and no
                                interpreter started again, which costs most under QEMU) with
                                FOLDER first on sys.path; after each, the line
                                "<NUL>wheeltasks-done CODE" (CODE: the child's exit, 128+N for
                                signal N). "<NUL>wheeltasks-ready" once it reads requests.

Kept to the standard library of every Python the builders have (and runs unchanged there).
"""

import importlib
import json
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

DONE = "\0wheeltasks-done"
READY = "\0wheeltasks-ready"


def check(names: list[str]) -> int:
    """Import each name; 0. A name that needs a module which is not among the wheels (and not
    one of the names) is reported, not failed: that is another job's to check."""
    own = set(names)
    print(f"wheeltasks: importing on Python {sys.version.split()[0]} ({sys.implementation.cache_tag})")
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] not in own:
                print(f"wheeltasks: import {name}: not checked, it needs {exc.name}, which is not among the wheels")
                continue
            raise
        print(f"wheeltasks: import {name}: ok")
    return 0


def child(request: dict[str, Any], base: list[str]) -> NoReturn:
    """In the forked child: the request's imports, then its exit (never a return)."""
    code = 1
    try:
        site = request["site"]
        sys.path[:] = [site, *base]
        os.environ["PYTHONPATH"] = site  # for what the imports start
        code = check(request["names"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    # One stream, in order: the host reads a check's output up to its DONE line.
    os.dup2(1, 2)
    base = list(sys.path)
    print(READY, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            child(request, base)
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):  # as a shell says it, and its exit code, of a command it ran
            number = os.WTERMSIG(status)
            print(f"wheeltasks: the import was killed by signal {number} ({signal.strsignal(number)})")
            code = 128 + number
        print(f"{DONE} {code}", flush=True)


def main() -> int:
    del sys.path[0]  # this script's folder: nothing there is the job's to import
    if sys.argv[1:2] == ["--serve"]:
        serve()
        return 0
    return check(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
