"""Bad input through the real command lines (`wheeltasks` and `inv`): one line, the right
exit code, no traceback, nothing written. And a property of the target grammar."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wheeltasks.errors import WheelTasksError
from wheeltasks.targets import format_target, parse_target

SECRET = "pw-Zq81-secret"


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    fragment: str
    env: dict[str, str] = field(default_factory=dict)
    yaml: str | bytes | None = None
    # Something odd in the project folder: "fifo:<name>" or "dir:<name>".
    special: str | None = None
    config_name: str = "invoke.yaml"
    code: int = 2
    # invoke's own parse errors with `inv`: exit 1, invoke's words (see errors.py)
    inv_code: int | None = None
    inv_fragment: str | None = None
    # The index answered a look-up before the error: its page may be cached. Every other
    # case writes nothing at all, not even an empty cache file.
    looked_up: bool = False
    # Files the project holds (a requirements file), by name.
    files: dict[str, str] = field(default_factory=dict)


CASES = [
    # targets
    Case("arch", ("resolve", "wtplain1.0-sparc64"), "unexpected 'sparc64'"),
    Case("name", ("resolve", "wtplain--amd64"), "not a valid module name"),
    Case("version-text", ("resolve", "wtplain==1.x"), "not a valid version"),
    Case("epoch", ("resolve", "wtplain1!2.0"), "epoch"),
    Case("local-version", ("resolve", "wtplain1.0+abc"), "local versions"),
    Case("special-not-alone", ("resolve", "all,wtplain"), "must be given alone"),
    Case("task-as-target", ("resolve", "check"), "task of its own"),
    Case("python-3.99", ("resolve", "wtplain-py3.99"), "no CPython 3.99"),
    Case("python-patch", ("resolve", "wtplain-py3.11.2"), "-py3.11.2 names a patch release"),
    Case("python-patch-after-version", ("resolve", "wtplain1.5.0-py3.12.1-amd64"), "(-py3.12)"),
    Case("ssl-suffix", ("resolve", "wtplain-openssl"), "does not link an SSL library"),
    Case("not-on-index", ("resolve", "no-such-project-xyz"), "not found on"),
    Case("version-not-on-index", ("resolve", "wtplain9.9-amd64"), "9.9 is not on", looked_up=True),
    Case("non-ascii", ("resolve", "caf\u00e9"), "not a valid module name"),
    Case("empty", ("resolve", ""), "no target given"),
    Case("comma-only", ("resolve", ",,"), "no target given"),
    # settings from the environment
    Case("pythons-word", ("resolve", "wtplain"), "'abc' is not a Python version", env={"PYTHON_VERSIONS": "abc"}),
    Case("pythons-major", ("resolve", "wtplain"), "'3' is not a Python version", env={"PYTHON_VERSIONS": "3"}),
    Case("pythons-unknown", ("resolve", "wtplain"), "no CPython 3.99", env={"PYTHON_VERSIONS": "3.99"}),
    Case("index-not-url", ("resolve", "wtplain"), "not an http(s) URL", env={"PYPI_INDEX": "not-a-url"}),
    Case("index-port-only", ("resolve", "wtplain"), "not an http(s) URL", env={"PYPI_INDEX": ":99999"}),
    Case("index-bad-port", ("resolve", "wtplain"), "invalid port", env={"PYPI_INDEX": "http://127.0.0.1:99999/simple/"}),
    Case("builder-unknown-field", ("resolve", "wtplain"), "not a valid template", env={"BUILDER_IMAGE": "{nope}"}),
    Case("builder-positional", ("resolve", "wtplain"), "not a valid template", env={"BUILDER_IMAGE": "{0}"}),
    Case("builder-brace", ("resolve", "wtplain"), "not a valid template", env={"BUILDER_IMAGE": "{"}),
    Case("builder-space", ("resolve", "wtplain"), "must be an image name", env={"BUILDER_IMAGE": "a b:{python}"}),
    Case("builder-no-python", ("resolve", "wtplain"), "holds {python}", env={"BUILDER_IMAGE": "alpine:3.20"}),
    Case("registry-space", ("resolve", "wtplain"), "WHEELS_REGISTRY='a b' is not", env={"WHEELS_REGISTRY": "a b"}),
    Case("registry-url", ("resolve", "wtplain"), "is a URL", env={"WHEELS_REGISTRY": "http://x"}),
    Case("registry-credentials", ("resolve", "wtplain"), "must not hold credentials",
         env={"WHEELS_REGISTRY": f"me:{SECRET}@127.0.0.1:5000/ns"}),
    Case("registry-port", ("resolve", "wtplain"), "not a valid host[:port]", env={"WHEELS_REGISTRY": "127.0.0.1:99999/ns"}),
    Case("registry-no-namespace", ("resolve", "wtplain"), "is not host[:port]/namespace",
         env={"WHEELS_REGISTRY": "127.0.0.1:5000/"}),
    Case("switch-word", ("resolve", "wtplain"), "DO_PUSH='maybe' is neither true", env={"DO_PUSH": "maybe"}),
    Case("arch-unknown", ("resolve", "wtplain"), "unknown architecture 'sparc'", env={"ARCHES": "sparc"}),
    Case("arches-empty", ("resolve", "wtplain"), "ARCHES is empty", env={"ARCHES": " , "}),
    Case("exclude-shape", ("resolve", "wtplain"), "EXCLUDE entry 'foo' is not arch:ssl", env={"EXCLUDE": "foo"}),
    Case("cross-word", ("resolve", "wtplain"), "CROSS='sometimes' is not one of", env={"CROSS": "sometimes"}),
    Case("timeout-word", ("resolve", "wtplain"), "REMOTE_TIMEOUT='soon' is not a number", env={"REMOTE_TIMEOUT": "soon"}),
    Case("timeout-negative", ("resolve", "wtplain"), "must be a finite number greater than 0", env={"REMOTE_TIMEOUT": "-1"}),
    Case("timeout-inf", ("resolve", "wtplain"), "REMOTE_TIMEOUT='inf' must be a finite number", env={"REMOTE_TIMEOUT": "inf"}),
    Case("timeout-nan", ("resolve", "wtplain"), "REMOTE_TIMEOUT='nan' must be a finite number", env={"REMOTE_TIMEOUT": "nan"}),
    Case("timeout-huge", ("resolve", "wtplain"), "REMOTE_TIMEOUT='1e308' is more than 86400", env={"REMOTE_TIMEOUT": "1e308"}),
    Case("timeout-yaml-inf", ("resolve", "wtplain"), "REMOTE_TIMEOUT=inf must be a finite number",
         yaml="wheeltasks:\n  remote_timeout: .inf\n"),
    Case("jobs-inf", ("resolve", "wtplain"), "JOBS='inf' is not a whole number", env={"JOBS": "inf"}),
    Case("index-ipv6", ("resolve", "wtplain"), "it cannot be parsed (Invalid IPv6 URL)", env={"PYPI_INDEX": "http://[::1/simple/"}),
    Case("index-password-slash", ("resolve", "wtplain"), "PYPI_INDEX='http://***@127.0.0.1:8080/simple/' cannot be split",
         env={"PYPI_INDEX": f"http://me:{SECRET}/x@127.0.0.1:8080/simple/"}),
    Case("index-password-at", ("resolve", "wtplain"), "could not reach the package index http://***@127.0.0.1:9/simple/",
         env={"PYPI_INDEX": f"http://me:{SECRET}@x@127.0.0.1:9/simple/"}, code=4),
    Case("index-token-query", ("resolve", "wtplain"), "PYPI_INDEX='http://127.0.0.1:9/simple/?token=***' has a query",
         env={"PYPI_INDEX": f"http://127.0.0.1:9/simple/?token={SECRET}"}),
    Case("index-crlf", ("resolve", "wtplain"), "PYPI_INDEX holds a control character ('\\r'",
         env={"PYPI_INDEX": f"http://me:{SECRET}@127.0.0.1:9/simple/\r\nX-Injected: 1"}),
    Case("username-crlf", ("resolve", "wtplain"), "REGISTRY_USERNAME holds a control character",
         env={"REGISTRY_USERNAME": "me\r\nX-Injected: 1"}),
    Case("password-lf", ("resolve", "wtplain"), "REGISTRY_PASSWORD holds a control character",
         env={"REGISTRY_PASSWORD": f"{SECRET}\n"}),
    Case("alpine-shell", ("resolve", "wtplain"), "ALPINE_VERSION='3.22 ;rm' is not a word", env={"ALPINE_VERSION": "3.22 ;rm"}),
    Case("ca-folder", ("resolve", "wtplain"), "CA bundle /etc is a folder, not a file", env={"CA_BUNDLE": "/etc"}),
    Case("size-fraction", ("resolve", "wtplain"), "is not a whole number", env={"MAX_LAYER_MB": "1.5"}),
    Case("ca-missing", ("resolve", "wtplain"), "CA bundle /nonexistent.pem does not exist",
         env={"CA_BUNDLE": "/nonexistent.pem"}),
    Case("repo-name", ("resolve", "wtplain"), "repository name 'Bad Repo'", env={"SHARED_REPO": "Bad Repo"}),
    Case("wheels-dir-file", ("resolve", "wtplain"), "is a file, not a folder", env={"WHEELS_DIR": "afile"}),
    Case("work-dir-file", ("resolve", "wtplain"), "is a file, not a folder", env={"WHEELTASKS_WORK_DIR": "afile"}),
    # the project's invoke.yaml
    Case("yaml-list", ("resolve", "wtplain"), "must be a mapping of settings, not a list", yaml="wheeltasks: [a, b]\n"),
    Case("yaml-typo", ("resolve", "wtplain"), "did you mean 'do_push'", yaml="wheeltasks:\n  do_psuh: true\n"),
    Case("yaml-mapping-value", ("resolve", "wtplain"), "PYTHON_VERSIONS must be a list, not a mapping",
         yaml="wheeltasks:\n  python_versions: {a: 1}\n"),
    Case("yaml-list-value", ("resolve", "wtplain"), "PYPI_INDEX must be a single value",
         yaml="wheeltasks:\n  pypi_index: [a, b]\n"),
    # ...which invoke reads itself: with `inv` too, one line and exit 2
    Case("yaml-top-list", ("resolve", "wtplain"), "invoke.yaml must be a mapping of sections, not a list",
         yaml="- a\n- b\n"),
    Case("yaml-top-text", ("resolve", "wtplain"), "invoke.yaml must be a mapping of sections, not a str",
         yaml="just text\n"),
    Case("yaml-truncated", ("resolve", "wtplain"), "line 1", yaml="wheeltasks: [a\n"),
    Case("yaml-truncated-mapping", ("resolve", "wtplain"), "line 2", yaml="wheeltasks:\n  do_push: \"tru"),
    Case("yaml-not-utf8", ("resolve", "wtplain"), "invoke.yaml is not UTF-8 text", yaml=b"wheeltasks:\n  arches: [\xff]\n"),
    Case("yaml-int-key", ("resolve", "wtplain"), "the key 1 under wheeltasks is not text", yaml="wheeltasks:\n  1: x\n"),
    Case("yaml-int-key-elsewhere", ("resolve", "wtplain"), "the key 2 under other.deep is not text",
         yaml="other:\n  deep:\n    2: y\n"),
    Case("yaml-alias-loop", ("resolve", "wtplain"), "invoke.yaml: other.b contains itself (a YAML alias)",
         yaml="other: &x {b: *x}\n"),
    Case("yaml-deep", ("resolve", "wtplain"), "cannot read the invoke configuration",
         yaml="a:\n" + "".join("  " * (n + 1) + "k:\n" for n in range(1500))),
    # PyYAML quotes the line in its message: here the line holds the index password
    Case("yaml-error-quotes-no-line", ("resolve", "wtplain"), "while parsing a flow sequence at line 2, column 15",
         yaml=f"wheeltasks:\n  pypi_index: [http://me:{SECRET}@127.0.0.1/simple/\n"),
    Case("yaml-fifo", ("resolve", "wtplain"), "invoke.yaml is not a regular file", special="fifo:invoke.yaml"),
    Case("yaml-folder", ("resolve", "wtplain"), "invoke.yaml is a folder", special="dir:invoke.yaml"),
    Case("recipe-fifo", ("resolve", "wtodd1.0-amd64"), "scripts/wtodd.sh is not a regular file", special="fifo:scripts/wtodd.sh"),
    Case("runtime-config-list", ("-f", "runtime.yaml", "resolve", "wtplain"), "runtime.yaml must be a mapping of sections",
         yaml="- a\n", config_name="runtime.yaml"),
    Case("runtime-config-int-key", ("-f", "runtime.yml", "resolve", "wtplain"), "the key 3 under wheeltasks is not text",
         yaml="wheeltasks:\n  3: x\n", config_name="runtime.yml"),
    Case("runtime-config-fifo", ("-f", "runtime.yaml", "resolve", "wtplain"), "runtime.yaml is not a regular file",
         special="fifo:runtime.yaml"),
    Case("json-list", ("resolve", "wtplain"), "invoke.json must be a mapping of sections, not a list",
         yaml="[1, 2]", config_name="invoke.json"),
    Case("json-truncated", ("resolve", "wtplain"), "invoke.json: Expecting", yaml='{"wheeltasks": ', config_name="invoke.json"),
    # flags
    Case("value-flag-bare", ("build", "wtplain", "--wheels-registry"), "--wheels-registry needs a value",
         inv_code=1, inv_fragment="needed value"),
    Case("value-flag-bare-cache", ("resolve", "wtplain", "--cache-dir"), "--cache-dir needs a value",
         inv_code=1, inv_fragment="needed value"),
    Case("unknown-flag", ("resolve", "wtplain", "--bogus"), "No idea what '--bogus' is", inv_code=1),
    Case("unknown-short", ("resolve", "wtplain", "-x"), "No idea what '-x' is", inv_code=1),
    Case("flag-value-bad", ("resolve", "wtplain", "--remote-timeout=abc"), "REMOTE_TIMEOUT='abc' is not a number"),
    Case("task-flag-elsewhere", ("clean-cache", "--push"), "No idea what '--push' is", inv_code=1),
    Case("push-without-registry", ("build", "wtplain-amd64", "--push"), "no registry configured", looked_up=True),
    # a step run alone where nothing was built: what to run first, nothing written
    Case("export-on-nothing", ("export", "wtplain1.5.0-py3.12-amd64"),
         "nothing built for wtplain1.5.0-py3.12-amd64 in ", looked_up=True),
    Case("export-on-nothing-says", ("export", "wtplain-py3.12-amd64"), "run `inv build wtplain1.5.0-py3.12-amd64` first",
         looked_up=True),
    Case("push-on-nothing", ("push", "wtplain1.5.0-py3.12-amd64"), "run `inv build wtplain1.5.0-py3.12-amd64` first",
         env={"WHEELS_REGISTRY": "127.0.0.1:9/me"}, looked_up=True),
    # inv index and inv snippet
    Case("index-no-wheels", ("index",), "no wheels in "),
    Case("index-base-url", ("index",), "INDEX_BASE_URL='https://***@host/w' holds credentials",
         env={"INDEX_BASE_URL": f"https://me:{SECRET}@host/w"}),
    Case("index-dir-file", ("index", "--index-dir", "afile"), "INDEX_DIR="),
    Case("snippet-no-registry", ("snippet", "wtplain"), "no registry configured: set WHEELS_REGISTRY"),
    # -r FILE: pip's resolver, for the target (no engine: a plan needs none)
    Case("requirements-missing", ("resolve", "-r", "nope.txt"), "requirements file nope.txt does not exist"),
    Case("requirements-folder", ("resolve", "--requirements", "sub"), "requirements file sub is not a file",
         special="dir:sub"),
    Case("requirements-bad-line", ("resolve", "-r", "req.txt"), "(from line 2 of ",
         files={"req.txt": "wtzlib\nwtzlib ==\n"}, looked_up=True),
    Case("requirements-no-version-for-python", ("build", "-r", "req.txt"),
         "Package 'wtabi' requires a different Python: 3.10.0 not in", env={"PYTHON_VERSIONS": "3.10"},
         files={"req.txt": "wtabi\n"}, looked_up=True),
    Case("requirements-conflict", ("resolve", "-r", "req.txt"), "conflicting dependencies",
         files={"req.txt": "wtzlib==1.0.0\nwtzlib>1.0.0\n"}, looked_up=True),
    Case("requirements-index-gone", ("resolve", "-r", "req.txt"), "the index could not be reached", code=4,
         env={"PYPI_INDEX": "http://127.0.0.1:9/simple/"}, files={"req.txt": "wtzlib\n"}, looked_up=True),
    Case("requirements-index-gone-credentials", ("resolve", "-r", "req.txt"), "the index could not be reached", code=4,
         env={"PYPI_INDEX": f"http://me:{SECRET}@127.0.0.1:9/simple/"}, files={"req.txt": "wtzlib\n"},
         looked_up=True),
    Case("requirements-and-targets-snippet", ("snippet", "wtplain", "-r", "req.txt"), "not both",
         env={"WHEELS_REGISTRY": "127.0.0.1:9/me"}, files={"req.txt": "wtzlib\n"}),
]


def cli_commands(project: Path) -> dict[str, list[str]]:
    # A project of its own (tasks.py beside invoke.yaml), as a user has one: `inv` finds
    # both there, and `wheeltasks` reads the same invoke.yaml.
    return {
        "wheeltasks": [sys.executable, "-m", "wheeltasks"],
        "inv": [sys.executable, "-m", "invoke"],
    }


@pytest.fixture(scope="module")
def base_env(index_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYPI_", "WHEELS_", "DO_", "NO_", "PIP_INDEX"))}
    env.update(PYPI_INDEX=index_server, PYTHON_VERSIONS="3.11 3.12",
               WHEELTASKS_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))
    return env


@pytest.mark.parametrize("cli", ["wheeltasks", "inv"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, cli: str, tmp_path: Path, base_env: dict[str, str]) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "tasks.py").write_text("from wheeltasks import ns\n")
    (project / "afile").write_text("not a folder")
    if case.yaml is not None:
        data = case.yaml.encode() if isinstance(case.yaml, str) else case.yaml
        (project / case.config_name).write_bytes(data)
    if case.special is not None:
        kind, _, name = case.special.partition(":")
        (project / name).parent.mkdir(exist_ok=True)
        if kind == "fifo":
            os.mkfifo(project / name)
        else:
            (project / name).mkdir()
    for name, text in case.files.items():
        (project / name).write_text(text)
    before = sorted(p.name for p in project.iterdir())
    cache = tmp_path / "cache"
    env = {**base_env, "WHEELTASKS_CACHE_DIR": str(cache), **case.env}
    done = subprocess.run(
        [*cli_commands(project)[cli], *case.args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )
    expected_code = case.inv_code if cli == "inv" and case.inv_code is not None else case.code
    fragment = case.inv_fragment if cli == "inv" and case.inv_fragment else case.fragment
    lines = done.stderr.strip().splitlines()
    assert done.returncode == expected_code, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]
    if done.returncode == 2:
        assert lines[0].startswith("wheeltasks: ")
    assert done.stdout == ""
    assert SECRET not in done.stderr
    # Nothing written: no work folder, no wheels folder, nothing else new.
    after = sorted(p.name for p in project.iterdir() if p.name != "__pycache__")
    assert after == before
    if not case.looked_up:
        assert not cache.exists(), sorted(cache.rglob("*"))


def test_wheeltasks_reads_the_projects_invoke_yaml(tmp_path: Path, base_env: dict[str, str]) -> None:
    (tmp_path / "tasks.py").write_text("from wheeltasks import ns\n")
    (tmp_path / "invoke.yaml").write_text("wheeltasks:\n  wheels_registry: 127.0.0.1:9/fromyaml\n  arches: [i386]\n")
    for command in ([sys.executable, "-m", "wheeltasks"], [sys.executable, "-m", "invoke"]):
        done = subprocess.run([*command, "resolve", "wtplain", "--json"], cwd=tmp_path, env=base_env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert '"image": "127.0.0.1:9/fromyaml/python-musl-wheels:wtplain1.5.0-py3.12"' in done.stdout
        assert '"arch": "i386"' in done.stdout


@pytest.mark.parametrize(
    "args",
    [("wheeltasks", "--help"), ("wheeltasks", "--list"), ("wheeltasks", "--help", "build"), ("wheeltasks", "--version"),
     ("inv", "--help", "build"), ("inv", "--list"), ("inv", "--list", "--list-format=json")],
    ids=" ".join,
)
def test_help_and_lists_to_a_closed_pipe_exit_141_quietly(
    args: tuple[str, ...], tmp_path: Path, base_env: dict[str, str]
) -> None:
    """invoke prints these itself: the reader is gone before the first write (a closed pipe),
    so every write fails, deterministically; `| head -c 5` is the same race, usually lost."""
    (tmp_path / "tasks.py").write_text("from wheeltasks import ns\n")
    command = {"wheeltasks": [sys.executable, "-m", "wheeltasks"], "inv": [sys.executable, "-m", "invoke"]}[args[0]]
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([*command, *args[1:]], cwd=tmp_path, env=base_env, stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_broken_pipe_is_quiet(tmp_path: Path, base_env: dict[str, str]) -> None:
    # Far more JSON than a pipe holds, so the writer meets the closed pipe.
    env = {**base_env, "PYTHON_VERSIONS": "3.10 3.11 3.12 3.13 3.14 3.15"}
    done = subprocess.run(
        f"{sys.executable} -m wheeltasks resolve wtplain-pyall wtzlib-pyall wtdep-pyall --both --json | head -c 10",
        shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.stdout == '[\n  {"target"'[:10]
    assert done.stderr == "", done.stderr


# ---- the grammar: any text parses and round-trips, or is the project's error -------------

TARGET_ALPHABET = st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs"))
TARGET_PARTS = st.sampled_from(
    ["cffi", "jinja2", "-", "_", "==", ".", "1", "2.0", "rc1", "-openssl", "-libressl", "-py3.12", "-pyall",
     "-amd64", "-arm64", "-armv7", "!", "+", "post1", "x", "-sparc"]
)


def check_text(text: str) -> None:
    try:
        target = parse_target(text)
    except WheelTasksError as exc:
        assert "\n" not in str(exc)
        return
    assert parse_target(format_target(target)) == target


@settings(max_examples=400, deadline=None)
@given(st.text(TARGET_ALPHABET, max_size=40))
def test_any_text_parses_or_is_the_projects_error(text: str) -> None:
    check_text(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(TARGET_PARTS, max_size=8).map("".join))
def test_target_like_text_parses_or_is_the_projects_error(text: str) -> None:
    check_text(text)
