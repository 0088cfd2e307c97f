"""Settings: configuration < environment < flags, truthy parsing, derived values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wheeltasks.errors import WheelTasksError
from wheeltasks.settings import Kind, Repository, Settings
from wheeltasks.targets import SSL, get_arch
from wheeltasks.values import parse_bool

BASE_ENV = {"HOME": "/home/u"}


def load(config: dict[str, Any] | None = None, env: dict[str, str] | None = None, **flags: Any) -> Settings:
    return Settings.load(config or {}, {**BASE_ENV, **(env or {})}, flags)


@pytest.mark.parametrize("word", ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " on ", "y", "t"])
def test_truthy(word: str) -> None:
    assert parse_bool(word) is True
    assert load(env={"DO_PUSH": word}).do_push is True


@pytest.mark.parametrize("word", ["0", "false", "False", "no", "NO", "off", "", "  "])
def test_falsy(word: str) -> None:
    assert parse_bool(word) is False
    assert load(env={"DO_PUSH": word}).do_push is False


def test_unset_is_false() -> None:
    assert load().do_push is False


@pytest.mark.parametrize("word", ["maybe", "2", "enabled"])
def test_bad_switch_value_is_a_clear_error(word: str) -> None:
    with pytest.raises(WheelTasksError, match=f"DO_PUSH='{word}' is neither true"):
        load(env={"DO_PUSH": word})


SWITCHES = {
    "DO_PUSH": "do_push",
    "NO_BUILD": "no_build",
    "NOOP": "noop",
    "NO_SELF_PULL": "no_self_pull",
    "NO_PULL_WHEELS": "no_pull_wheels",
    "WHEELS_FORCE_PULL": "wheels_force_pull",
    "BUILD_NO_CACHE": "build_no_cache",
    "NO_BINARY": "no_binary",
    "SHARED": "shared",
    "NO_SHARED": "no_shared",
    "BUILD_BOTH": "build_both",
    "CLEAN_CACHE": "clean_cache",
}


@pytest.mark.parametrize(("var", "field"), SWITCHES.items())
def test_every_spec_switch_reads_its_variable(var: str, field: str) -> None:
    assert getattr(load(), field) is False
    assert getattr(load(env={var: "yes"}), field) is True


# (config, env, flags, expected) for one setting: precedence config < env < flag.
PRECEDENCE = [
    ({}, {}, None, False),
    ({"do_push": True}, {}, None, True),
    ({"do_push": True}, {"DO_PUSH": "0"}, None, False),
    ({"do_push": False}, {"DO_PUSH": "1"}, None, True),
    ({}, {"DO_PUSH": "1"}, "no", False),
    ({"do_push": True}, {"DO_PUSH": "1"}, False, False),
    ({}, {"DO_PUSH": "0"}, True, True),
    ({"do_push": "yes"}, {}, None, True),
    ({"do-push": "on"}, {}, None, True),
]


@pytest.mark.parametrize(("config", "env", "flag", "expected"), PRECEDENCE)
def test_precedence_switch(config: dict[str, Any], env: dict[str, str], flag: Any, expected: bool) -> None:
    assert load(config, env, do_push=flag).do_push is expected


@pytest.mark.parametrize(
    ("config", "env", "flag", "expected"),
    [
        ({"pypi_index": "http://c/simple"}, {}, None, "http://c/simple"),
        ({"pypi_index": "http://c/simple"}, {"PYPI_INDEX": "http://e/simple"}, None, "http://e/simple"),
        ({"pypi_index": "http://c/simple"}, {"PYPI_INDEX": "http://e/simple"}, "http://f/simple", "http://f/simple"),
        ({}, {"PIP_INDEX_URL": "http://pip/simple"}, None, "http://pip/simple"),
        ({}, {"PIP_INDEX_URL": "http://pip/simple", "PYPI_INDEX": "http://e/simple"}, None, "http://e/simple"),
    ],
)
def test_precedence_text(config: dict[str, Any], env: dict[str, str], flag: str | None, expected: str) -> None:
    assert load(config, env, pypi_index=flag).pypi_index == expected


def test_default_index_is_pips_own() -> None:
    # The package reads pip's default from pip's public --help; the test cross-checks it
    # against pip's internal constant.
    from pip._internal.models.index import PyPI

    from wheeltasks.index import index_url

    assert load().pypi_index == ""
    assert index_url(load()) == PyPI.simple_url


def test_pips_default_index_is_kept_for_its_pip_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting pip is a quarter of a second of every plan: its answer is kept, per Python and
    pip version, and asked again when either changes."""
    import subprocess

    from pip._internal.models.index import PyPI

    from wheeltasks import index

    index.pip_default_index.cache_clear()
    folder = tmp_path / "cache"  # made here: private, as the index cache's folder is
    assert index.pip_default_index(folder) == PyPI.simple_url
    kept = folder / "pip-default-index.json"
    assert kept.is_file() and folder.stat().st_mode & 0o777 == 0o700
    index.pip_default_index.cache_clear()

    def no_pip(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pip was started although its answer is kept")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert index.pip_default_index(folder) == PyPI.simple_url
    index.pip_default_index.cache_clear()
    monkeypatch.setattr(index, "_pip_version", lambda: "0.0-another")
    with pytest.raises(AssertionError, match="pip was started"):
        index.pip_default_index(folder)
    index.pip_default_index.cache_clear()


def test_lists_from_env_and_config() -> None:
    s = load({"python_versions": ["3.12", "3.13"]}, {"DEFAULT_MODULES": "cffi, toml  psutil"})
    assert s.python_versions == ("3.12", "3.13")
    assert s.modules == ("cffi", "toml", "psutil")
    assert load(env={"PYTHON_VERSIONS": "3.11,3.12"}).python_versions == ("3.11", "3.12")


@pytest.mark.parametrize(
    ("env", "kinds"),
    [
        ({}, (Kind.SHARED,)),
        ({"SHARED": "1"}, (Kind.SHARED,)),
        ({"NO_SHARED": "1"}, (Kind.NO_SHARED,)),
        ({"BUILD_BOTH": "1"}, (Kind.SHARED, Kind.NO_SHARED)),
        ({"SHARED": "1", "NO_SHARED": "1"}, (Kind.SHARED, Kind.NO_SHARED)),
    ],
)
def test_kinds(env: dict[str, str], kinds: tuple[Kind, ...]) -> None:
    assert load(env=env).kinds == kinds


def test_repositories_and_builder() -> None:
    s = load(env={"WHEELS_REGISTRY": "127.0.0.1:5000/me/", "NO_SHARED_REPO": "alpine-w", "ALPINE_VERSION": "3.20"})
    assert s.repository(Kind.SHARED) == Repository("127.0.0.1:5000", "me/python-musl-wheels")
    assert str(s.repository(Kind.NO_SHARED)) == "127.0.0.1:5000/me/alpine-w"
    assert s.builder("3.12") == "python:3.12-alpine3.20"
    assert str(load().repository(Kind.SHARED)) == "python-musl-wheels"


def test_exclusions() -> None:
    s = load()
    assert s.excluded(get_arch("s390x"), SSL.LIBRESSL)
    assert not s.excluded(get_arch("s390x"), SSL.OPENSSL)
    assert not s.excluded(get_arch("amd64"), SSL.LIBRESSL)
    assert load(env={"EXCLUDE": "amd64:libressl"}).excluded(get_arch("amd64"), SSL.LIBRESSL)


def test_arches_are_validated_and_canonical() -> None:
    assert load(env={"ARCHES": "x86_64 aarch64"}).arches == ("amd64", "arm64v8")
    with pytest.raises(WheelTasksError, match="unknown architecture 'sparc'"):
        load(env={"ARCHES": "amd64,sparc"})


def test_folders_resolve_against_the_project(tmp_path: Path) -> None:
    s = load(env={"WHEELTASKS_PROJECT_DIR": str(tmp_path), "WHEELS_DIR": "out", "WHEELTASKS_CACHE_DIR": "/c"})
    assert s.wheels_dir == tmp_path / "out"
    assert s.work_dir == tmp_path / ".wheeltasks"
    assert s.scripts_dir == tmp_path / "scripts"
    assert s.cache_dir == Path("/c")
    assert load(env={"XDG_CACHE_HOME": "/x"}).cache_dir == Path("/x/wheeltasks")


def test_ca_bundle_defaults_to_the_usual_variables(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    a.write_text("a")
    b.write_text("b")
    assert load(env={"SSL_CERT_FILE": str(a)}).ca_bundle == str(a)
    assert load(env={"SSL_CERT_FILE": str(a), "CA_BUNDLE": str(b)}).ca_bundle == str(b)
    with pytest.raises(WheelTasksError, match=r"CA bundle /nonexistent\.pem does not exist"):
        load(env={"SSL_CERT_FILE": "/nonexistent.pem"})


def test_unknown_config_key_is_an_error() -> None:
    with pytest.raises(WheelTasksError, match="unknown wheeltasks configuration key 'do_psuh'"):
        load({"do_psuh": True})


def test_settings_are_frozen_and_hide_the_password() -> None:
    s = load(env={"REGISTRY_PASSWORD": "s3cret-pw"})
    with pytest.raises(AttributeError):
        s.do_push = True  # type: ignore[misc]
    assert "s3cret-pw" not in repr(s)


def test_readme_settings_table_has_every_option() -> None:
    from wheeltasks.settings import OPTIONS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("## Settings"):readme.index("## Recipes")]
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines() if line.startswith("| `")}
    assert set(rows) == {o.env for o in OPTIONS}
    for option in OPTIONS:
        if option.flag:
            assert f"`--{option.flag.replace('_', '-')}`" in rows[option.env]


def test_every_flag_has_its_variable_and_default_in_the_help() -> None:
    from wheeltasks.settings import options_for
    from wheeltasks.tasks import GROUPS, flag_help

    for task, fields in GROUPS.items():
        for option in options_for(fields):
            text = flag_help(option)
            assert option.env in text and "default: " in text, (task, option.field)


SECRET = "Zq81-index-pw"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # Numbers: finite, greater than 0, and a deadline no longer than a day.
        ({"REMOTE_TIMEOUT": "inf"}, "REMOTE_TIMEOUT='inf' must be a finite number greater than 0"),
        ({"REMOTE_TIMEOUT": "-inf"}, "must be a finite number greater than 0"),
        ({"REMOTE_TIMEOUT": "nan"}, "REMOTE_TIMEOUT='nan' must be a finite number greater than 0"),
        ({"REMOTE_TIMEOUT": "1e308"}, "REMOTE_TIMEOUT='1e308' is more than 86400"),
        ({"REMOTE_TIMEOUT": "1" + "0" * 400}, "must be a finite number greater than 0"),
        ({"REMOTE_TIMEOUT": "0"}, "must be a finite number greater than 0"),
        ({"JOBS": "inf"}, "JOBS='inf' is not a whole number"),
        ({"JOBS": "0"}, "JOBS='0' must be a finite number greater than 0"),
        ({"MAX_LAYER_MB": "nan"}, "is not a whole number"),
        ({"MAX_INDEX_PAGE_MB": "-3"}, "must be a finite number greater than 0"),
        # URLs: the index as urllib and requests read it, never its secrets.
        ({"PYPI_INDEX": "http://[::1/simple/"}, "is not a usable URL: it cannot be parsed (Invalid IPv6 URL)"),
        ({"PYPI_INDEX": f"http://me:{SECRET}/x@127.0.0.1:8080/simple/"},
         "PYPI_INDEX='http://***@127.0.0.1:8080/simple/' cannot be split into credentials and host"),
        ({"PYPI_INDEX": f"http://me:{SECRET}?x@127.0.0.1/simple/"}, "cannot be split into credentials and host"),
        ({"PYPI_INDEX": f"http://127.0.0.1/simple/?token={SECRET}"},
         "PYPI_INDEX='http://127.0.0.1/simple/?token=***' has a query or fragment"),
        ({"PYPI_INDEX": f"http://me:{SECRET}@127.0.0.1:99999/simple/"}, "PYPI_INDEX='http://***@127.0.0.1:99999/simple/'"),
        ({"PIP_INDEX_URL": f"http://me:{SECRET}/x@h/simple/"}, "cannot be split into credentials and host"),
        # Control characters in what goes into URLs, headers, names: refused, never echoed raw.
        ({"PYPI_INDEX": "http://127.0.0.1/simple/\r\nX-Injected: 1"}, "PYPI_INDEX holds a control character ('\\r' at position 24)"),
        ({"REGISTRY_USERNAME": "me\r\nX: 1"}, "REGISTRY_USERNAME holds a control character"),
        ({"REGISTRY_PASSWORD": f"{SECRET}\n"}, "REGISTRY_PASSWORD holds a control character ('\\n' at position 13)"),
        ({"WHEELS_REGISTRY": "127.0.0.1:5000/me\x00"}, "WHEELS_REGISTRY holds a control character"),
        ({"BUILDER_IMAGE": "python:{python}\x1b[2J"}, "BUILDER_IMAGE holds a control character"),
        ({"DEFAULT_MODULES": "cffi\x7ftoml"}, "DEFAULT_MODULES holds a control character ('\\x7f' at position 4)"),
        # Each setting blamed for itself.
        ({"ALPINE_VERSION": "3.22 ;rm"}, "ALPINE_VERSION='3.22 ;rm' is not a word an image tag may hold"),
        ({"ALPINE_VERSION": "3.22/x"}, "ALPINE_VERSION='3.22/x' is not a word"),
        ({"CA_BUNDLE": "/etc"}, "CA bundle /etc is a folder, not a file"),
        ({"CA_BUNDLE": "/dev/null"}, "CA bundle /dev/null is not a regular file"),
    ],
)
def test_bad_settings_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(WheelTasksError) as caught:
        load(env=env)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and "\r" not in text and SECRET not in text


@pytest.mark.parametrize(("value", "expected"), [("", ""), ("3.22", "3.22"), ("edge", "edge"), ("3.21_rc-1", "3.21_rc-1")])
def test_alpine_versions_that_fit_a_tag(value: str, expected: str) -> None:
    assert load(env={"ALPINE_VERSION": value}).builder("3.12") == f"python:3.12-alpine{expected}"


def test_yaml_numbers_are_checked_too() -> None:
    for value in (float("inf"), float("nan"), 1e308, 10**400):
        with pytest.raises(WheelTasksError, match="REMOTE_TIMEOUT"):
            load({"remote_timeout": value})
    assert load({"remote_timeout": 2}).remote_timeout == 2.0


def test_an_index_password_with_an_at_sign_is_read_as_urllib_reads_it() -> None:
    s = load(env={"PYPI_INDEX": f"http://me:{SECRET}@x@127.0.0.1/simple/"})
    assert s.pypi_index == f"http://me:{SECRET}@x@127.0.0.1/simple/"


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("1", True), ("woodpecker", True), ("", False), ("false", False),
                                           ("0", False), ("no", False)])
def test_ci_is_read_from_the_environment_with_the_one_true_false_rule(value: str, ci: bool) -> None:
    """CI systems set CI to 1, true or their own name; the false words are parse_bool's."""
    assert load(env={"CI": value}).ci is ci
    with pytest.raises(WheelTasksError, match="read from the environment only"):
        load({"ci": True})


def test_every_task_offers_the_flags_of_the_parts_it_runs() -> None:
    from wheeltasks.settings import Part, options_read_by
    from wheeltasks.tasks import GROUPS, TASK_PARTS

    for task, parts in TASK_PARTS.items():
        assert GROUPS[task] == tuple(o.field for o in options_read_by(parts))
    assert "registry_username" in GROUPS["push"] and "registry_username" not in GROUPS["repair"]
    assert {o.field for o in options_read_by([Part.CACHE])} == {"cache_dir"}
