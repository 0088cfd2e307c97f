"""Per-module recipes: ``scripts/<module>.sh``, sourced only inside build containers.

On the host a recipe is only read, never executed: :func:`depends` finds its
``mod_depends`` by parsing the text, so planning needs neither a shell nor trust.

A recipe may name its dependencies either way::

    mod_depends="cryptography-${SSL} pynacl bcrypt"

    mod_depends() {
        echo "cryptography-${SSL} pynacl bcrypt"
    }

``${SSL}`` / ``$SSL`` stand for the job's SSL library (``openssl`` or ``libressl``).
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import WheelTasksError
from .settings import Settings
from .targets import DEFAULT_SSL, SSL

PACKAGE_SCRIPTS = Path(str(resources.files("wheeltasks") / "data" / "scripts"))

_VAR_RE = re.compile(r"^\s*(?:export\s+)?mod_depends=(?P<value>.*)$", re.MULTILINE)
_FUNC_RE = re.compile(
    r"^\s*(?:function\s+)?mod_depends\s*(?:\(\s*\))?\s*\{(?P<body>.*?)^\s*\}", re.MULTILINE | re.DOTALL
)
_SSL_RE = re.compile(r"\$\{SSL\}|\$SSL\b")


def recipe_dirs(settings: Settings) -> tuple[Path, ...]:
    """Where recipes are looked up, first match wins: the project's, then the package's."""
    return (settings.scripts_dir, PACKAGE_SCRIPTS)


def find_recipe(settings: Settings, module: str) -> Path | None:
    """The recipe for a module (file name compared by PEP 503 normalisation)."""
    wanted = canonicalize_name(module)
    for folder in recipe_dirs(settings):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.sh")):
            if canonicalize_name(path.stem) == wanted:
                return path
    return None


def parse_depends(text: str, ssl: SSL | None, source: str = "recipe") -> tuple[str, ...]:
    """The targets named by ``mod_depends`` in a recipe's text, with ``$SSL`` filled in."""
    ssl_name = (ssl or DEFAULT_SSL).value
    words: list[str] = []
    if m := _FUNC_RE.search(text):
        body = m["body"]
        for line in body.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = shlex.split(_SSL_RE.sub(ssl_name, line), comments=True)
            if not parts or parts[0] not in ("echo", "printf"):
                raise WheelTasksError(
                    f"{source}: mod_depends() may only echo module names (found {line!r}); "
                    "it is read on the host, never executed there"
                )
            words.extend(w for p in parts[1:] if not p.startswith("-") for w in p.split())
    elif m := _VAR_RE.search(text):
        value = shlex.split(_SSL_RE.sub(ssl_name, m["value"]), comments=True)
        words.extend(" ".join(value).split())
    return tuple(words)


def depends(settings: Settings, module: str, ssl: SSL | None) -> tuple[str, ...]:
    recipe = find_recipe(settings, module)
    if recipe is None:
        return ()
    return parse_depends(recipe.read_text(encoding="utf-8"), ssl, str(recipe))
