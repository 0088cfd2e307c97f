"""Host checks of wheels (pure): the ARMv6 tag fix and the ARM baseline rules."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from wheeltasks import verify
from wheeltasks.targets import get_arch

WHEEL_TIME = (2024, 5, 6, 7, 8, 10)


def repaired_wheel(folder: Path, platform: str) -> Path:
    """A wheel as auditwheel writes it: WHEEL tags and a RECORD with hashes."""
    name = f"wtzlib-1.0.0-cp311-cp311-{platform}.whl"
    files = {
        "wtzlib/__init__.py": b"VALUE = 1\n",
        "wtzlib/_c.so": b"\x7fELF not really",
        "wtzlib-1.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: wtzlib\nVersion: 1.0.0\n",
        "wtzlib-1.0.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: auditwheel\nRoot-Is-Purelib: false\n"
            + "".join(f"Tag: cp311-cp311-{p}\n" for p in platform.split("."))
        ).encode(),
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
        for n, d in files.items()
    ) + "wtzlib-1.0.0.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as archive:
        for member, data in {**files, "wtzlib-1.0.0.dist-info/RECORD": record.encode()}.items():
            archive.writestr(zipfile.ZipInfo(member, WHEEL_TIME), data, compress_type=zipfile.ZIP_DEFLATED)
    return folder / name


def test_an_armv6_wheel_gets_its_own_tag_after_the_armv7l_policy(tmp_path: Path) -> None:
    """auditwheel files ARMv6 under armv7l: the wheel must say armv6l, or pip on an ARMv6 refuses it."""
    wheel = repaired_wheel(tmp_path, "musllinux_1_2_armv7l")
    fixed = verify.retag(get_arch("armv6"), wheel)
    assert fixed.name == "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_armv6l.whl"
    assert not wheel.exists()
    with zipfile.ZipFile(fixed) as archive:
        text = archive.read("wtzlib-1.0.0.dist-info/WHEEL").decode()
        assert "Tag: cp311-cp311-musllinux_1_2_armv6l\n" in text and "armv7l" not in text
        record = dict(line.split(",", 1) for line in archive.read("wtzlib-1.0.0.dist-info/RECORD").decode().splitlines())
        data = archive.read("wtzlib-1.0.0.dist-info/WHEEL")
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert record["wtzlib-1.0.0.dist-info/WHEEL"] == f"sha256={digest},{len(data)}"
        # every other entry as it was, times included (repairs stay byte-reproducible)
        assert archive.read("wtzlib/_c.so") == b"\x7fELF not really"
        assert {i.date_time for i in archive.infolist()} == {WHEEL_TIME}
        assert [i.filename for i in archive.infolist()][:2] == ["wtzlib/__init__.py", "wtzlib/_c.so"]


def test_a_cross_built_armv6_wheel_loses_its_linux_tag_too(tmp_path: Path) -> None:
    """Built as linux_armv6l (the cross stage names the target's machine), auditwheel adds its
    armv7l policy's tag and keeps the linux one: the repaired wheel has musllinux_1_2_armv6l alone."""
    wheel = repaired_wheel(tmp_path, "linux_armv6l.musllinux_1_2_armv7l")
    fixed = verify.retag(get_arch("armv6"), wheel)
    assert fixed.name == "wtzlib-1.0.0-cp311-cp311-musllinux_1_2_armv6l.whl"
    with zipfile.ZipFile(fixed) as archive:
        tags = [line for line in archive.read("wtzlib-1.0.0.dist-info/WHEEL").decode().splitlines() if line.startswith("Tag:")]
    assert tags == ["Tag: cp311-cp311-musllinux_1_2_armv6l"]


@pytest.mark.parametrize(
    ("arch", "platform"),
    [("armv7", "musllinux_1_2_armv7l"), ("armv6", "linux_armv6l"), ("arm64v8", "musllinux_1_2_aarch64")],
)
def test_other_wheels_keep_their_tags(tmp_path: Path, arch: str, platform: str) -> None:
    wheel = repaired_wheel(tmp_path, platform)
    assert verify.retag(get_arch(arch), wheel) == wheel
    assert wheel.exists()


@pytest.mark.parametrize(
    ("arch", "attributes", "fragment"),
    [
        ("armv6", {"TAG_CPU_ARCH": 6, "TAG_FP_ARCH": 2}, None),  # ARMv6, VFPv2: the ARM1176
        ("armv6", {"TAG_CPU_ARCH": 7, "TAG_FP_ARCH": 2}, None),  # ARMv6KZ
        ("armv6", {"TAG_CPU_ARCH": 10, "TAG_FP_ARCH": 4}, "built for ARMv7"),
        ("armv6", {"TAG_CPU_ARCH": 8}, "built for ARMv6T2"),  # Thumb-2: not on an ARM1176
        ("armv6", {"TAG_CPU_ARCH": 6, "TAG_ADVANCED_SIMD_ARCH": 1}, "uses NEON"),
        ("armv6", {"TAG_CPU_ARCH": 6, "TAG_FP_ARCH": 4}, "needs the VFPv3-D16 FPU"),
        ("armv7", {"TAG_CPU_ARCH": 10, "TAG_FP_ARCH": 4}, None),  # Alpine's armv7: VFPv3-D16
        ("armv7", {"TAG_CPU_ARCH": 10, "TAG_FP_ARCH": 3}, "VFPv3 (32 registers)"),
        ("armv7", {"TAG_CPU_ARCH": 10, "TAG_FP_ARCH": 4, "TAG_ADVANCED_SIMD_ARCH": 1}, "uses NEON"),
        ("armv7", {"TAG_CPU_ARCH": 14}, "built for ARMv8-A"),
        ("arm64v8", {"TAG_CPU_ARCH": 14, "TAG_ADVANCED_SIMD_ARCH": 1}, None),  # not 32-bit ARM: no rule
    ],
)
def test_arm_code_needs_no_more_than_the_platforms_baseline(
    arch: str, attributes: dict[str, int], fragment: str | None
) -> None:
    problem = verify.arm_problem(get_arch(arch), "wtzlib/_c.so", attributes)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem and "wtzlib/_c.so" in problem


def test_only_an_armv6_job_excludes_its_libc_from_bundling() -> None:
    assert verify.libc_exclude(get_arch("armv6")) == {"libc.musl-armhf.so.1"}
    assert verify.libc_exclude(get_arch("armv7")) == frozenset()
    assert verify.libc_exclude(get_arch("amd64")) == frozenset()
