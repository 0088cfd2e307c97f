"""pip, run on this machine as if it were the target: ``python pip_as_target.py TARGET PIP-ARGS…``.

Run as a script (never imported by wheeltasks): it presents a CPython on musl on the job's
machine to pip's own resolver, as crossenv's pip does, so that ``pip install --dry-run
--report`` resolves a requirements file for the target and not for this machine. TARGET is
JSON with ``markers`` (the marker environment: ``platform_machine``, ``python_version``…)
and ``tags`` (the wheel tags the target accepts, most preferred first: wheeltags.target_tags).
Three of pip's internals are replaced: the marker environment, the tags of its target
Python (and of its wheel cache), and the check that refuses ``--python-version`` with
source distributions (they are resolved by their metadata, which pip builds here; their
wheels are built for the target later, in the job). ``--python-version`` is still given,
so ``Requires-Python`` is checked for the target. A pip whose internals moved says so (exit 3).
"""

from __future__ import annotations

import json
import sys
from typing import Any

UNSUPPORTED = 3


def main(argv: list[str]) -> int:
    target = json.loads(argv[0])
    try:
        from pip._internal.cli import cmdoptions
        from pip._internal.cli.main import main as pip_main
        from pip._internal.models import target_python
        from pip._internal.resolution.resolvelib import factory
        from pip._vendor.packaging import markers, tags
    except ImportError as exc:
        return _unsupported(exc)
    environment = dict(target["markers"])
    supported = [tags.Tag(*text.split("-")) for text in target["tags"]]

    def supported_tags(*args: Any, **kwargs: Any) -> list[Any]:
        return list(supported)

    replaced: tuple[tuple[Any, str, Any], ...] = (
        (markers, "default_environment", lambda: dict(environment)),
        (target_python, "get_supported", supported_tags),
        (factory, "get_supported", supported_tags),
        (cmdoptions, "check_dist_restriction", lambda *args, **kwargs: None),
    )
    missing = [f"{module.__name__}.{name}" for module, name, _ in replaced if not hasattr(module, name)]
    if missing:
        return _unsupported(f"no {', '.join(missing)}")
    for module, name, value in replaced:
        setattr(module, name, value)
    return int(pip_main(argv[1:]) or 0)


def _unsupported(why: object) -> int:
    print(f"wheeltasks: this pip cannot be run as the target ({why}); wheeltasks is tested with pip 26", file=sys.stderr)
    return UNSUPPORTED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
