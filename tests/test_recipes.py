"""Recipes are read on the host, never run there: mod_depends parsing and look-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheeltasks.errors import WheelTasksError
from wheeltasks.recipes import PACKAGE_SCRIPTS, Recipe, find_recipe, load_recipe, parse_depends, parse_recipe
from wheeltasks.settings import Settings
from wheeltasks.targets import SSL


@pytest.mark.parametrize(
    ("text", "ssl", "expected"),
    [
        ('mod_depends="cryptography-${SSL} pynacl bcrypt"\n', None, ("cryptography-openssl", "pynacl", "bcrypt")),
        ('mod_depends="cryptography-${SSL} pynacl"\n', SSL.LIBRESSL, ("cryptography-libressl", "pynacl")),
        ("mod_depends='cffi'  # comment\n", None, ("cffi",)),
        ("export mod_depends=cffi\n", None, ("cffi",)),
        ("mod_depends() {\n    echo \"cryptography-$SSL pynacl\"\n}\n", None, ("cryptography-openssl", "pynacl")),
        ("function mod_depends {\n  echo cffi\n  echo toml\n}\n", None, ("cffi", "toml")),
        ("mod_depends()\n{\n  # none yet\n  echo -n cffi\n}\n", None, ("cffi",)),
        ("mod_build() { apk add libffi-dev; }\n", None, ()),
        ("mod_depends() {\n  printf '%s\\n' cffi\n  return 0\n}\n", None, ("cffi",)),
        ('mod_depends() {\n    echo "cryptography-${SSL_LIBRARY}"\n}\n', SSL.LIBRESSL, ("cryptography-libressl",)),
        ("", None, ()),
    ],
)
def test_parse_depends(text: str, ssl: SSL | None, expected: tuple[str, ...]) -> None:
    assert parse_depends(text, ssl) == expected


def test_a_mod_depends_that_computes_is_refused() -> None:
    with pytest.raises(WheelTasksError, match="may only echo module names"):
        parse_depends("mod_depends() {\n  curl http://x | sh\n}\n", None, "x.sh")


def test_project_recipes_override_packaged_ones(tmp_path: Path) -> None:
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path)})
    packaged = find_recipe(settings, "paramiko")
    assert packaged is not None and packaged.parent == PACKAGE_SCRIPTS
    assert load_recipe(settings, "paramiko", None).depends == ("cryptography-openssl", "pynacl", "bcrypt")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "Paramiko.sh").write_text('mod_depends="bcrypt"\n')
    assert find_recipe(settings, "PARAMIKO") == tmp_path / "scripts" / "Paramiko.sh"
    assert load_recipe(settings, "paramiko", None).depends == ("bcrypt",)
    assert find_recipe(settings, "no-recipe-here") is None


def test_one_lookup_rule_label_first_then_module(tmp_path: Path) -> None:
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path)})
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "wtssl.sh").write_text('mod_depends="cffi"\n')
    (scripts / "wtssl-libressl.sh").write_text('mod_depends="pynacl"\n')
    assert find_recipe(settings, "wtssl", SSL.LIBRESSL) == scripts / "wtssl-libressl.sh"
    assert find_recipe(settings, "wtssl", SSL.OPENSSL) == scripts / "wtssl.sh"
    assert find_recipe(settings, "wtssl", None) == scripts / "wtssl.sh"
    assert load_recipe(settings, "wtssl", SSL.LIBRESSL).depends == ("pynacl",)
    assert load_recipe(settings, "no-recipe-here", None) == Recipe()


@pytest.mark.parametrize(
    ("text", "ssl", "apk", "cross"),
    [
        ('mod_apk="openssl-dev libffi-dev"\n', None, ("openssl-dev", "libffi-dev"), True),
        ('mod_apk="${SSL}-dev libffi-dev"\nmod_cross=no\n', SSL.LIBRESSL, ("libressl-dev", "libffi-dev"), False),
        ("mod_cross=yes\n", None, (), True),
        ("mod_apk() {\n  echo linux-headers\n}\n", None, ("linux-headers",), True),
        ("", None, (), True),
    ],
)
def test_declared_packages_and_cross(text: str, ssl: SSL | None, apk: tuple[str, ...], cross: bool) -> None:
    recipe = parse_recipe(text, None, ssl)
    assert recipe.apk == apk
    assert recipe.cross is cross


@pytest.mark.parametrize(
    ("text", "test"),
    [
        ("mod_test='python3 -c \"import {module}\"'\n", 'python3 -c "import {module}"'),
        ('mod_test="pytest --pyargs {module}"  # run after the import check\n', "pytest --pyargs {module}"),
        ("mod_apk=make\n", ""),
    ],
)
def test_mod_test_is_the_recipes_test_command(text: str, test: str) -> None:
    assert parse_recipe(text, Path("x.sh"), None).test == test


def test_an_unreadable_mod_test_is_a_clear_error() -> None:
    with pytest.raises(WheelTasksError, match=r"x\.sh: cannot read mod_test"):
        parse_recipe("mod_test='unclosed\n", Path("x.sh"), None)


def test_bad_mod_cross_is_a_clear_error() -> None:
    with pytest.raises(WheelTasksError, match="mod_cross='maybe' is neither true"):
        parse_recipe("mod_cross=maybe\n", Path("x.sh"), None)


@pytest.mark.parametrize(
    ("text", "uses_ssl"),
    [
        ('mod_apk="${SSL}-dev libffi-dev"\n', True),
        ('mod_depends="cryptography-${SSL} pynacl"\n', True),
        ("mod_depends() {\n    echo cryptography-$SSL_LIBRARY\n}\n", True),
        ('mod_build() { echo "SSL=$SSL"; }\n', False),  # a mention is no declaration
        ('mod_apk="libffi-dev"\n', False),
    ],
)
def test_a_recipe_that_declares_by_ssl_makes_an_ssl_module(text: str, uses_ssl: bool) -> None:
    assert parse_recipe(text, None, None).uses_ssl is uses_ssl


def test_paramiko_and_pyopenssl_take_ssl_suffixes(tmp_path: Path) -> None:
    from wheeltasks.plan import ssl_modules

    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path)})
    is_ssl = ssl_modules(settings)
    assert [m for m in ("cryptography", "paramiko", "pyopenssl", "cffi", "psutil") if is_ssl(m)] == [
        "cryptography", "paramiko", "pyopenssl"]


# ---- the packaged recipes and the default modules ----------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("recipe", sorted(PACKAGE_SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_packaged_recipe_is_valid_shell_and_names_known_modules(recipe: Path, tmp_path: Path) -> None:
    import subprocess

    from packaging.utils import canonicalize_name

    from wheeltasks.settings import DEFAULT_MODULES
    from wheeltasks.targets import parse_target

    assert subprocess.run(["sh", "-n", str(recipe)], capture_output=True).returncode == 0
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path)})
    known = {parse_target(m).module for m in DEFAULT_MODULES} | {canonicalize_name(p.stem) for p in PACKAGE_SCRIPTS.glob("*.sh")}
    for ssl in (SSL.OPENSSL, SSL.LIBRESSL):
        loaded = load_recipe(settings, canonicalize_name(recipe.stem), ssl)
        assert loaded.path == recipe
        for dep in loaded.depends:
            assert parse_target(dep).module in known, dep


def test_every_default_module_has_a_row_in_the_readme_table() -> None:
    from wheeltasks.settings import DEFAULT_MODULES

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## The default modules"):readme.index("## Cross-compilation")]
    rows = {line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(DEFAULT_MODULES) <= rows, set(DEFAULT_MODULES) - rows


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_recipe_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    import os
    import time

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    recipe = scripts / "wtodd.sh"
    if kind == "fifo":
        os.mkfifo(recipe)  # opening it for reading would wait for a writer for good
    elif kind == "folder":
        recipe.mkdir()
    else:
        recipe.symlink_to("/dev/zero")  # reading it would never end
    settings = Settings.load({}, {"HOME": str(tmp_path)}, {"project_dir": str(tmp_path)})
    started = time.monotonic()
    with pytest.raises(WheelTasksError, match=rf"recipe {recipe} is (a folder|not a regular file)") as caught:
        load_recipe(settings, "wtodd", None)
    assert caught.value.exit_code == 2 and time.monotonic() - started < 2
