"""Per-module recipes: ``scripts/<module>.sh``, sourced only inside build containers.

On the host a recipe is only read, never executed: :func:`load_recipe` finds what it
declares by parsing the text, so planning needs neither a shell nor trust.

One lookup rule, used by the planner (and so by the build, which reads the Job): the
recipe named like the module *with* its SSL suffix (``cryptography-libressl.sh``)
first, then the one named like the module (``cryptography.sh``); in each folder of
:func:`recipe_dirs` in turn (the project's ``scripts/`` over the packaged ones), file
names compared by PEP 503 normalisation.

What a recipe declares (``$SSL``/``${SSL}`` and ``$SSL_LIBRARY`` stand for the job's SSL
library, ``openssl`` or ``libressl``)::

    mod_depends="cryptography-${SSL} pynacl bcrypt"   # or a function that only echoes
    mod_apk="openssl-dev libffi-dev"                  # Alpine packages it builds against
    mod_cross=no                                      # it can only build on its own platform
    mod_test='python3 -m {module}.tests'              # run after the import check (TEST_COMMAND)

A recipe that names ``WHEEL_BUILT_IN_SCRIPT`` makes the wheel itself: its jobs always build
(they never take the index's wheel instead).
"""

from __future__ import annotations

import re
import shlex
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from packaging.utils import canonicalize_name

from .errors import WheelTasksError
from .settings import Settings
from .targets import DEFAULT_SSL, SSL, module_label
from .values import parse_bool

PACKAGE_SCRIPTS = Path(str(resources.files("wheeltasks") / "data" / "scripts"))

_FUNC_RE_TEMPLATE = r"^\s*(?:function\s+)?{name}\s*(?:\(\s*\))?\s*\{{(?P<body>.*?)^\s*\}}"
_SSL_RE = re.compile(r"\$\{SSL(?:_LIBRARY)?\}|\$SSL(?:_LIBRARY)?\b")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """What one job's recipe says, read once by the planner."""

    path: Path | None = None
    depends: tuple[str, ...] = ()  # target texts, $SSL filled in
    apk: tuple[str, ...] = ()  # Alpine packages to build against
    cross: bool = True  # False: never cross-compile this module
    uses_ssl: bool = False  # it declares packages or dependencies by $SSL: it links an SSL library
    builds_wheel: bool = False  # it names WHEEL_BUILT_IN_SCRIPT: it makes the wheel itself
    # It names $KIND: it may build each kind differently (else both kinds' builds are alike).
    reads_kind: bool = False
    test: str = ""  # mod_test: a command run after the import check ({module}, {version} filled in)

    @property
    def name(self) -> str | None:
        return self.path.name if self.path else None


def recipe_dirs(settings: Settings) -> tuple[Path, ...]:
    """Where recipes are looked up, first match wins: the project's, then the package's."""
    return (settings.scripts_dir, PACKAGE_SCRIPTS)


Listing = Callable[[Path], Mapping[str, Path]]


def recipes_in(folder: Path) -> Mapping[str, Path]:
    """A folder's recipes by their PEP 503 normalised name; of two alike, the first by name."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.sh"), key=lambda p: p.name):
            found.setdefault(canonicalize_name(path.stem), path)
    return found


def find_recipe(settings: Settings, module: str, ssl: SSL | None = None, listing: Listing = recipes_in) -> Path | None:
    """The recipe for a module: by its label (with the SSL suffix) first, then by name.

    ``listing`` lists a folder's recipes; a planner that looks up many modules passes one
    that lists each folder once (listing it anew for each look-up made a chain of 1,500
    recipes take minutes to plan).
    """
    names = [canonicalize_name(module)]
    if ssl is not None:
        names.insert(0, canonicalize_name(module_label(module, ssl)))
    for wanted in names:
        for folder in recipe_dirs(settings):
            path = listing(folder).get(wanted)
            if path is not None:
                return path
    return None


def _variable(text: str, name: str) -> str | None:
    """The last plain assignment ``name=value`` (``export`` allowed), shell-unquoted."""
    found = None
    for m in re.finditer(rf"^\s*(?:export\s+)?{name}=(?P<value>.*)$", text, re.MULTILINE):
        found = m["value"]
    return found


def _words(value: str, ssl_name: str, source: str, name: str) -> list[str]:
    try:
        return " ".join(shlex.split(_SSL_RE.sub(ssl_name, value), comments=True)).split()
    except ValueError as exc:
        raise WheelTasksError(f"{source}: cannot read {name} ({exc})") from None


def _function_words(text: str, name: str, ssl_name: str, source: str) -> list[str] | None:
    """The words a function that only echoes (``echo``/``printf``, ``return``) prints."""
    m = re.search(_FUNC_RE_TEMPLATE.format(name=name), text, re.MULTILINE | re.DOTALL)
    if m is None:
        return None
    words: list[str] = []
    for line in m["body"].splitlines():
        line = line.strip().rstrip(";").strip()
        if not line or line.startswith("#"):
            continue
        try:
            parts = shlex.split(_SSL_RE.sub(ssl_name, line), comments=True)
        except ValueError as exc:
            raise WheelTasksError(f"{source}: cannot read {name}() ({exc})") from None
        if not parts or (parts[0] == "return" and len(parts) <= 2):
            continue
        if parts[0] not in ("echo", "printf"):
            raise WheelTasksError(
                f"{source}: {name}() may only echo module names (found {line!r}); "
                "it is read on the host, never executed there"
            )
        args = parts[1:]
        if parts[0] == "printf" and args and "%" in args[0]:
            args = args[1:]  # the format string
        words.extend(w for p in args if not p.startswith("-") for w in p.replace("\\n", " ").split())
    return words


def _declared(text: str, name: str, ssl_name: str, source: str) -> tuple[str, ...]:
    words = _function_words(text, name, ssl_name, source)
    if words is None:
        value = _variable(text, name)
        words = [] if value is None else _words(value, ssl_name, source, name)
    return tuple(words)


def parse_declared(text: str, name: str, ssl: SSL | None, source: str = "recipe") -> tuple[str, ...]:
    """The words a recipe declares for ``name``: a function that echoes them, or a variable."""
    return _declared(text, name, (ssl or DEFAULT_SSL).value, source)


def parse_depends(text: str, ssl: SSL | None, source: str = "recipe") -> tuple[str, ...]:
    """The targets named by ``mod_depends`` in a recipe's text, with ``$SSL`` filled in."""
    return parse_declared(text, "mod_depends", ssl, source)


# What $SSL becomes when reading a recipe only to learn whether it declares anything by it.
_SSL_MARK = "\0ssl"


def _declares_ssl(text: str, source: str) -> bool:
    """Whether ``mod_depends`` or ``mod_apk`` names ``$SSL``: then the module links an SSL
    library, itself (``${SSL}-dev``) or through a dependency (``cryptography-${SSL}``)."""
    return any(_SSL_MARK in word for name in ("mod_depends", "mod_apk") for word in _declared(text, name, _SSL_MARK, source))


def parse_recipe(text: str, path: Path | None, ssl: SSL | None) -> Recipe:
    source = str(path) if path else "recipe"
    cross_value = _variable(text, "mod_cross")
    cross = True
    if cross_value is not None:
        try:
            cross = parse_bool(" ".join(_words(cross_value, "", source, "mod_cross")), "mod_cross")
        except WheelTasksError as exc:
            raise WheelTasksError(f"{source}: {exc}") from None
    test_value = _variable(text, "mod_test")
    try:
        test = " ".join(shlex.split(test_value, comments=True)) if test_value is not None else ""
    except ValueError as exc:
        raise WheelTasksError(f"{source}: cannot read mod_test ({exc})") from None
    return Recipe(
        path=path,
        depends=parse_depends(text, ssl, source),
        apk=parse_declared(text, "mod_apk", ssl, source),
        cross=cross,
        uses_ssl=_declares_ssl(text, source),
        builds_wheel=bool(re.search(r"^[^#]*\bWHEEL_BUILT_IN_SCRIPT\b", text, re.MULTILINE)),
        reads_kind=bool(re.search(r"^[^#]*\bKIND\b", text, re.MULTILINE)),
        test=test,
    )


def load_recipe(settings: Settings, module: str, ssl: SSL | None, listing: Listing = recipes_in) -> Recipe:
    """The job's recipe by the one lookup rule; an empty Recipe when there is none.

    Only a regular file is opened: reading a FIFO would wait for a writer for good, and a
    device may never end.
    """
    path = find_recipe(settings, module, ssl, listing)
    if path is None:
        return Recipe()
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO or a device?)"
            raise WheelTasksError(f"recipe {path} is {kind}: make it a shell script, or remove it")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WheelTasksError(f"cannot read recipe {path}: {exc}") from None
    return parse_recipe(text, path, ssl)
