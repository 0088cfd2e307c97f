"""The target grammar: parse, format, round-trip, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from wheeltasks.errors import WheelTasksError
from wheeltasks.targets import (
    ARCHES,
    SSL,
    Target,
    arches_tsv,
    find_arch,
    format_target,
    get_arch,
    image_tag,
    implied_ssl,
    is_exported,
    parse_target,
    split_targets,
)

OPEN, LIBRE = SSL.OPENSSL, SSL.LIBRESSL

# text -> (module, ssl, version, python, arch name)
CASES: list[tuple[str, tuple[str, SSL | None, str | None, str | None, str | None]]] = [
    # every example in SPEC.md
    ("cryptography", ("cryptography", None, None, None, None)),
    ("cryptography-openssl", ("cryptography", OPEN, None, None, None)),
    ("cryptography-libressl-amd64", ("cryptography", LIBRE, None, None, "amd64")),
    ("cryptography-openssl36.0.1-pyall-amd64", ("cryptography", OPEN, "36.0.1", "all", "amd64")),
    ("cffi1.15.1-armv7", ("cffi", None, "1.15.1", None, "armv7")),
    ("toml-pyall", ("toml", None, None, "all", None)),
    ("psutil5.9.8-py3.11-arm64", ("psutil", None, "5.9.8", "3.11", "arm64v8")),
    ("cryptography45.0.1-py3.12", ("cryptography", None, "45.0.1", "3.12", None)),
    ("cryptography-libressl45.0.1-py3.12", ("cryptography", LIBRE, "45.0.1", "3.12", None)),
    ("cffi1.15.1-py3.12-armv7", ("cffi", None, "1.15.1", "3.12", "armv7")),
    # each field alone and in combination
    ("cffi1.15.1", ("cffi", None, "1.15.1", None, None)),
    ("cffi-py3.13", ("cffi", None, None, "3.13", None)),
    ("cffi-riscv64", ("cffi", None, None, None, "riscv64")),
    ("cffi-pyall-s390x", ("cffi", None, None, "all", "s390x")),
    ("cffi1.17.1-py3.10-ppc64le", ("cffi", None, "1.17.1", "3.10", "ppc64le")),
    # architecture aliases, any case
    ("cffi-x86_64", ("cffi", None, None, None, "amd64")),
    ("cffi-aarch64", ("cffi", None, None, None, "arm64v8")),
    ("cffi-arm64v8", ("cffi", None, None, None, "arm64v8")),
    ("cffi-arm", ("cffi", None, None, None, "armv7")),
    ("cffi-armv7l", ("cffi", None, None, None, "armv7")),
    ("cffi-armhf", ("cffi", None, None, None, "armv6")),
    ("cffi-armv6l", ("cffi", None, None, None, "armv6")),
    ("cffi-386", ("cffi", None, None, None, "i386")),
    ("cffi-i686", ("cffi", None, None, None, "i386")),
    ("cffi-AMD64", ("cffi", None, None, None, "amd64")),
    # PEP 503 normalisation
    ("PyNaCl1.5.0", ("pynacl", None, "1.5.0", None, None)),
    ("PyYAML-py3.12", ("pyyaml", None, None, "3.12", None)),
    ("typing_extensions4.12.2", ("typing-extensions", None, "4.12.2", None, None)),
    ("ruamel.yaml.clib0.2.12", ("ruamel-yaml-clib", None, "0.2.12", None, None)),
    ("charset-normalizer3.4.0-amd64", ("charset-normalizer", None, "3.4.0", None, "amd64")),
    # names that end in digits: a digit run without a dot stays in the name
    ("jinja2", ("jinja2", None, None, None, None)),
    ("ed25519-py3.12", ("ed25519", None, None, "3.12", None)),
    ("py7zr0.22.0", ("py7zr", None, "0.22.0", None, None)),
    ("s3transfer0.10.4", ("s3transfer", None, "0.10.4", None, None)),
    ("google-crc32c1.5.0", ("google-crc32c", None, "1.5.0", None, None)),
    # ... and `_` or `==` separate a version explicitly
    ("jinja2_3.1.4", ("jinja2", None, "3.1.4", None, None)),
    ("jinja2==3.1.4-py3.12", ("jinja2", None, "3.1.4", "3.12", None)),
    ("ed25519_1.5-armv7", ("ed25519", None, "1.5", None, "armv7")),
    ("cffi==1.15.1", ("cffi", None, "1.15.1", None, None)),
    ("bcrypt_4", ("bcrypt", None, "4", None, None)),
    ("cffi-1.15.1-py3.12", ("cffi", None, "1.15.1", "3.12", None)),
    ("cryptography-libressl-45.0.1", ("cryptography", LIBRE, "45.0.1", None, None)),
    ("msgpack-python-py3.12", ("msgpack-python", None, None, "3.12", None)),
    # without a separator, digits after a letter start the version if dotted
    ("jinja23.1.4", ("jinja", None, "23.1.4", None, None)),
    # PEP 440 pre-releases and post-releases (epochs cannot be tags: refused)
    ("cffi2.0.0rc1", ("cffi", None, "2.0.0rc1", None, None)),
    ("cffi1.0.post1-py3.12", ("cffi", None, "1.0.post1", "3.12", None)),
    # a name ending in "py" or an arch word before a version: formatted with "_"
    ("foo_py3.12", ("foo-py", None, "3.12", None, None)),
    ("foo-py_3.12", ("foo-py", None, "3.12", None, None)),
    # SSL suffix case and placement
    ("cryptography-OpenSSL", ("cryptography", OPEN, None, None, None)),
    ("cryptography-LIBRESSL-py3.12", ("cryptography", LIBRE, None, "3.12", None)),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse(text: str, expected: tuple[str, SSL | None, str | None, str | None, str | None]) -> None:
    module, ssl, version, python, arch = expected
    target = parse_target(text)
    assert target == Target(
        module, ssl, Version(version) if version else None, python, get_arch(arch) if arch else None
    )


@pytest.mark.parametrize(("text", "_expected"), CASES, ids=[c[0] for c in CASES])
def test_round_trip(text: str, _expected: object) -> None:
    target = parse_target(text)
    assert parse_target(format_target(target)) == target


@pytest.mark.parametrize(
    "text",
    [
        "cryptography",
        "cryptography-openssl",
        "cryptography-libressl-amd64",
        "cryptography-openssl36.0.1-pyall-amd64",
        "cffi1.15.1-armv7",
        "toml-pyall",
        "jinja2_3.1.4-py3.12-i386",
        "ed25519",
        "bcrypt_4-amd64",
    ],
)
def test_format_is_identity_for_canonical_text(text: str) -> None:
    assert format_target(parse_target(text)) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty target"),
        ("   ", "empty target"),
        ("-amd64", "no module name"),
        ("-openssl1.0", "no module name"),
        ("cffi1.15.1-sparc64", "unexpected 'sparc64'"),
        ("cffi-py3.12-sparc64", "unexpected 'sparc64'"),
        ("cffi-amd64-py3.12", "unexpected 'py3.12'"),
        ("cffi1.15.1-armv7-armv7", "unexpected 'armv7'"),
        ("cffi1.15.1-extra", "unexpected 'extra'"),
        ("cffi--amd64", "not a valid module name"),
        ("cffi==1.x", "not a valid version"),
        ("cffi==", "not a valid version"),
        ("cf fi", "several targets"),
        ("a,b", "several targets"),
        ("caf\u00e9", "not a valid module name"),
        ("cffi_", "not a valid module name"),
        ("cffi1!2.0", "epoch"),
        ("foo_amd64", "reads as a Python or arch suffix"),
        ("cffi-pyall_cffi", "reads as a Python or arch suffix"),
        ("foo_libressl", "reads as an SSL suffix"),
        ("cffi==1!2.0-amd64", "epoch"),
        ("cffi1.0+abc", "local versions"),
        ("cffi==1.0+abc", "local versions"),
        # A Python with a patch number: not module "cffi-py" 3.11.2, and not Python 3.11 silently.
        ("cffi-py3.11.2", "-py3.11.2 names a patch release; a target's Python is major.minor (-py3.11)"),
        ("cffi-py3.11.2-amd64", "-py3.11.2 names a patch release"),
        ("cffi1.15.1-py3.11.2", "-py3.11.2 names a patch release"),
        ("cffi1.15.1-py3.11.2-amd64", "(-py3.11)"),
        ("cffi-openssl-py3.12.1.0", "-py3.12.1.0 names a patch release; a target's Python is major.minor (-py3.12)"),
        ("cffi1.15.1-amd64-PY3.11.2", "names a patch release"),
    ],
)
def test_bad_targets_raise_one_clear_error(text: str, fragment: str) -> None:
    with pytest.raises(WheelTasksError) as info:
        parse_target(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "module", "version"),
    [("py1.11.0", "py", "1.11.0"), ("cffi-py_3.11.2", "cffi-py", "3.11.2"), ("cffi-py==3.11.2", "cffi-py", "3.11.2")],
)
def test_a_module_named_like_a_python_still_takes_a_version(text: str, module: str, version: str) -> None:
    target = parse_target(text)
    assert (target.module, str(target.version)) == (module, version)
    assert parse_target(format_target(target)) == target
    assert format_target(target) != "cffi-py3.11.2"  # which would read as a Python


def test_unknown_arch_names_the_choices() -> None:
    with pytest.raises(WheelTasksError, match=r"unknown architecture 'sparc'.*amd64 \(x86_64\).*riscv64"):
        get_arch("sparc")


def test_arch_table_matches_spec() -> None:
    table = {a.name: (set(a.aliases), a.platform, a.machine) for a in ARCHES}
    assert table == {
        "amd64": ({"x86_64"}, "linux/amd64", "x86_64"),
        "arm64v8": ({"arm64", "aarch64"}, "linux/arm64/v8", "aarch64"),
        "armv7": ({"arm", "armv7l"}, "linux/arm/v7", "armv7l"),
        "armv6": ({"armhf", "armv6l"}, "linux/arm/v6", "armv6l"),
        "i386": ({"386", "i686"}, "linux/386", "i686"),
        "ppc64le": (set(), "linux/ppc64le", "ppc64le"),
        "s390x": (set(), "linux/s390x", "s390x"),
        "riscv64": (set(), "linux/riscv64", "riscv64"),
    }
    assert find_arch("linux/arm64/v8") is find_arch("arm64")
    assert get_arch("armv7").variant == "v7" and get_arch("amd64").variant is None


def test_image_tags_keep_the_ssl_suffix() -> None:
    assert image_tag("cryptography", SSL.LIBRESSL, Version("45.0.1"), "3.12") == "cryptography-libressl45.0.1-py3.12"
    assert image_tag("cffi", None, Version("1.15.1"), "3.12", get_arch("arm")) == "cffi1.15.1-py3.12-armv7"
    assert image_tag("jinja2", None, Version("3.1.4"), "3.12") == "jinja2_3.1.4-py3.12"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a b", ["a", "b"]), ("a,b", ["a", "b"]), (["a, b", "c"], ["a", "b", "c"]), ("  ", []), ("a,,b", ["a", "b"])],
)
def test_split_targets(value: str | list[str], expected: list[str]) -> None:
    assert split_targets(value) == expected


REGENERATE = ("python3 -c 'from wheeltasks.targets import arches_tsv; print(arches_tsv(), end=\"\")' "
              "> wheeltasks/data/arches.tsv")


def test_the_shell_sides_arch_table_is_current() -> None:
    """.ci/services.sh reads the arch table from wheeltasks/data/arches.tsv (it runs before the
    package is installed): the file must say what ARCHES says."""
    written = (Path(__file__).resolve().parent.parent / "wheeltasks" / "data" / "arches.tsv").read_text()
    assert written == arches_tsv(), f"wheeltasks/data/arches.tsv is stale: regenerate it with {REGENERATE}"
    header, *rows = [line.split("\t") for line in written.splitlines()]
    assert [row[header.index("ARCH")] for row in rows] == [a.name for a in ARCHES]
    native = {row[header.index("ARCH")]: set(row[header.index("NATIVE")].split()) for row in rows}
    assert native["i386"] == {"x86_64", "i686"} and native["amd64"] == {"x86_64"}


@pytest.mark.parametrize(
    ("ssl", "links", "implied", "exported"),
    [
        (None, False, None, True),
        (None, True, SSL.OPENSSL, True),
        (SSL.OPENSSL, True, SSL.OPENSSL, True),
        (SSL.LIBRESSL, True, SSL.LIBRESSL, False),
    ],
)
def test_an_unsuffixed_ssl_module_is_openssl_and_only_openssl_is_exported(
    ssl: SSL | None, links: bool, implied: SSL | None, exported: bool
) -> None:
    assert implied_ssl(ssl, links) is implied
    assert is_exported(implied) is exported


def test_equal_versions_keep_their_own_spelling() -> None:
    """1.0 and 1.0.0 are equal (and hash alike) but are written as given: a cache of the
    written form keyed on the Version would hand one the other's spelling."""
    assert image_tag("demo", None, Version("1.0.0"), "3.12") == "demo1.0.0-py3.12"
    assert image_tag("demo", None, Version("1.0"), "3.12") == "demo1.0-py3.12"
    assert format_target(Target("demo", None, Version("1.0"), "3.11", None)) == "demo1.0-py3.11"
