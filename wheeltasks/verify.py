"""Wheels checked on the host: tags, ELF machines and policy (auditwheel), ARM build attributes.

The only module that imports auditwheel's internals (its Python API is not promised to
stay; setup.cfg bounds its version). Pure reads of wheel files, no container:

- the tags fit the job's kind and platform (``linux_*`` only for no-shared builds);
- auditwheel finds only the job's machine in the ELF files and, for shared builds, no
  library outside the wheel but the platform's own;
- 32-bit ARM ELF files need no more than the platform's baseline CPU (``.ARM.attributes``,
  read with pyelftools): an ARMv6 wheel nothing of ARMv7 or NEON, an ARMv7 one no NEON and
  no 32-register FPU, as Alpine's armv7 (VFPv3-D16) has neither;
- :func:`retag` gives a repaired wheel its platform's own tag where auditwheel files the
  machine under another one's policy (armv6l under armv7l's: the musl ABI is the same).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import logging
import threading
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import ARMAttributesSection
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from .errors import BuildError, WheelTasksError
from .job import Job
from .settings import Kind
from .targets import Arch

# The auditwheel that repairs wheels on the build platform and in a job's container: the
# same bounds as this package's own (setup.cfg), whose internals this module reads.
AUDITWHEEL_REQUIREMENT = "auditwheel>=6.8,<7"
_AUDITWHEEL_LOCK = threading.Lock()
ELF_MAGIC = b"\x7fELF"


# ---- tags (pure) ---------------------------------------------------------------------


def platforms(wheel: str) -> frozenset[str]:
    """The platform tags of a wheel file name."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel)
    except InvalidWheelFilename as exc:
        raise WheelTasksError(f"{wheel} is not a valid wheel file name ({exc}); remove it and rebuild") from exc
    return frozenset(tag.platform for tag in tags)


def is_pure(wheel: str) -> bool:
    return platforms(wheel) == {"any"}


def needs_repair(wheel: str) -> bool:
    """An unrepaired platform wheel: one tagged plain ``linux_<machine>``."""
    return any(p.startswith("linux_") for p in platforms(wheel))


def of_module(job: Job, wheel: Path) -> bool:
    """Whether a wheel is of the job's own module (not one of its dependencies)."""
    try:
        return canonicalize_name(parse_wheel_filename(wheel.name)[0]) == job.module
    except InvalidWheelFilename:
        return True


def tag_problem(job: Job, wheel: str) -> str | None:
    """What is wrong with a wheel's tags for this job, or None."""
    tags = platforms(wheel)
    if tags == {"any"}:
        return None
    machine = job.arch.machine
    wrong = sorted(p for p in tags if p == "any" or not p.endswith(f"_{machine}"))
    if wrong:
        return f"{wheel} is tagged {', '.join(wrong)}, not for {machine} ({job.arch.name})"
    if job.kind is Kind.SHARED and any(p.startswith("linux_") for p in tags):
        return f"{wheel} is not repaired (linux_* tag) but the job is a shared build: run `inv repair {job.target}`"
    if not all(p.startswith(("linux_", "musllinux_", "manylinux")) for p in tags):
        return f"{wheel} has platform tags {', '.join(sorted(tags))}, which are not Linux ones"
    return None


# ---- auditwheel on the host ----------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _auditwheel_warnings() -> Iterator[list[str]]:
    """auditwheel's warnings, kept out of the console and handed to the caller."""
    logger = logging.getLogger("auditwheel")
    handler = _Collect()
    old_propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = old_propagate


def libc_exclude(arch: Arch) -> frozenset[str]:
    """The platform's libc, where auditwheel files the machine under another one's policy:
    that policy knows the other machine's libc name (armv7l's libc.musl-armv7.so.1), and the
    platform's own (libc.musl-armhf.so.1) is not a library to bundle."""
    return frozenset({f"libc.musl-{arch.alpine}.so.1"}) if arch.auditwheel else frozenset()


def abi_problem(job: Job, wheel: Path) -> str | None:
    """What auditwheel finds wrong with a platform wheel's ELF files for this job, or None."""
    # Imported here: a tenth of a second of every command's start-up, for the runs that verify.
    from auditwheel.architecture import Architecture  # type: ignore[import-untyped]
    from auditwheel.error import AuditwheelError, NonPlatformWheelError  # type: ignore[import-untyped]
    from auditwheel.libc import Libc  # type: ignore[import-untyped]
    from auditwheel.wheel_abi import analyze_wheel_abi  # type: ignore[import-untyped]

    machine = job.arch.auditwheel_machine
    try:
        architecture: Architecture | None = Architecture(machine)
    except ValueError:
        architecture = None
    tags = platforms(wheel.name)
    libc = Libc.MUSL if any(p.startswith("musllinux") for p in tags) else None
    if libc is None and any(p.startswith("manylinux") for p in tags):
        libc = Libc.GLIBC
    # auditwheel unpacks into a temporary folder it chdir()s into, and its warnings go to one
    # logger: one analysis at a time in this process, whatever the number of job threads.
    with _AUDITWHEEL_LOCK, _auditwheel_warnings() as warnings:
        try:
            info = analyze_wheel_abi(
                libc, architecture, wheel, libc_exclude(job.arch), disable_isa_ext_check=True, allow_graft=False
            )
        except NonPlatformWheelError as exc:
            if exc.message.startswith("Invalid binary wheel"):
                return f"{wheel.name} holds no {machine} binaries: " + " ".join(exc.message.split())
            return None  # a platform tag without ELF files: nothing to check
        except (AuditwheelError, OSError, ValueError) as exc:
            return f"auditwheel cannot analyse {wheel.name}: {exc}"
    ignored = [m for m in warnings if m.startswith("ignoring:") and "architecture" in m]
    if ignored:
        return f"{wheel.name} holds binaries for another architecture ({'; '.join(ignored)})"
    if job.kind is Kind.SHARED and info.overall_policy == info.policies.linux:
        libs = sorted(info.external_refs[info.policies.highest.name].libs)
        return f"{wheel.name} still needs libraries outside the wheel ({', '.join(libs) or 'unknown'}); repair it again"
    return None


# ---- ARM build attributes ------------------------------------------------------------


def arm_attributes(data: bytes) -> dict[str, int] | None:
    """The file-scope ARM build attributes of an ELF file (``TAG_CPU_ARCH``: 6, ...); None
    for a file that is not 32-bit ARM ELF or records none."""
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_machine"] != "EM_ARM":
            return None
        section = elf.get_section_by_name(".ARM.attributes")
        if not isinstance(section, ARMAttributesSection):
            return None
        found: dict[str, int] = {}
        for sub in section.iter_subsections():
            for subsub in sub.iter_subsubsections():
                for attribute in subsub.iter_attributes():
                    if isinstance(attribute.value, int):
                        found.setdefault(str(attribute.tag), attribute.value)
        return found
    except (ELFError, ValueError, KeyError, IndexError, OSError):
        return None


def arm_problem(arch: Arch, name: str, attributes: dict[str, int]) -> str | None:
    """What an ELF file needs beyond the platform's baseline ARM CPU, or None."""
    baseline = arch.arm
    if baseline is None:
        return None
    cpu = attributes.get("TAG_CPU_ARCH", 0)
    if cpu not in baseline.cpu_archs:
        return f"{name} is built for {_CPU_ARCH_NAMES.get(cpu, f'CPU architecture {cpu}')}, not {baseline.describe}"
    if attributes.get("TAG_ADVANCED_SIMD_ARCH", 0) and not baseline.neon:
        return f"{name} uses NEON, which {baseline.describe} lacks"
    fp = attributes.get("TAG_FP_ARCH", 0)
    if fp not in baseline.fp_archs:
        return f"{name} needs the {_FP_ARCH_NAMES.get(fp, f'FP architecture {fp}')} FPU, not {baseline.describe}'s"
    return None


# The ARM ABI's names of Tag_CPU_arch and Tag_FP_arch values, for messages.
_CPU_ARCH_NAMES = {6: "ARMv6", 7: "ARMv6KZ", 8: "ARMv6T2", 9: "ARMv6K", 10: "ARMv7", 14: "ARMv8-A"}
_FP_ARCH_NAMES = {1: "VFPv1", 2: "VFPv2", 3: "VFPv3 (32 registers)", 4: "VFPv3-D16", 5: "VFPv4 (32 registers)",
                  6: "VFPv4-D16", 7: "ARMv8 (32 registers)", 8: "ARMv8-D16"}


def elf_members(wheel: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each ELF file in a wheel."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size < 64:
                continue
            with archive.open(info) as member:
                if member.read(4) != ELF_MAGIC:
                    continue
            yield info.filename, archive.read(info)


def cpu_problem(job: Job, wheel: Path) -> str | None:
    """The first ELF file of the wheel that needs more than the platform's baseline ARM CPU."""
    if job.arch.arm is None:
        return None
    for name, data in elf_members(wheel):
        attributes = arm_attributes(data)
        problem = arm_problem(job.arch, f"{wheel.name}: {name}", attributes) if attributes is not None else None
        if problem is not None:
            return problem
    return None


def verify(job: Job, wheels: Iterable[Path]) -> None:
    """Raise when any wheel's tags or binaries do not fit the job's kind and architecture."""
    problems = []
    for wheel in wheels:
        problem = tag_problem(job, wheel.name)
        if problem is None and not is_pure(wheel.name):
            problem = abi_problem(job, wheel) or cpu_problem(job, wheel)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise BuildError(f"{job.target} ({job.kind.value}): " + "; ".join(problems))


# ---- the platform's own tag ------------------------------------------------------------


def retag(arch: Arch, wheel: Path) -> Path:
    """A repaired wheel of ``arch`` with its platform's own tag, where auditwheel filed the
    machine under another's policy (``musllinux_1_2_armv7l`` -> ``musllinux_1_2_armv6l``):
    the file renamed, its WHEEL tags and RECORD line rewritten, every other entry kept as
    it is (bytes, order, times). Other wheels are returned as they are."""
    if not arch.auditwheel:
        return wheel
    wrong, right = f"_{arch.auditwheel}", f"_{arch.machine}"
    if not any(p.endswith(wrong) and not p.startswith("linux_") for p in platforms(wheel.name)):
        return wheel
    # A wheel built as linux_armv6l (a cross build names the target's machine) keeps that tag
    # beside the policy's: auditwheel cannot tell which machine it names, so it replaces
    # nothing. The repaired wheel has the platform's musllinux tag alone, as for armv7l.
    unrepaired = f"linux_{arch.machine}"
    *head, python, abi, plats = wheel.name[: -len(".whl")].split("-")
    plats = ".".join(p if p.startswith("linux_") else p.replace(wrong, right) for p in plats.split(".") if p != unrepaired)
    target = wheel.with_name("-".join([*head, python, abi, plats]) + ".whl")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target.with_suffix(".part"), "w") as out:
        infos = source.infolist()
        wheel_file = next(i.filename for i in infos if i.filename.endswith(".dist-info/WHEEL"))
        record_file = next(i.filename for i in infos if i.filename.endswith(".dist-info/RECORD"))
        text = source.read(wheel_file).decode("utf-8")
        new_wheel = "".join(
            line.replace(wrong, right) if line.startswith("Tag:") else line
            for line in text.splitlines(keepends=True)
            if not (line.startswith("Tag:") and line.rstrip().endswith(f"-{unrepaired}"))
        ).encode("utf-8")
        digest = base64.urlsafe_b64encode(hashlib.sha256(new_wheel).digest()).rstrip(b"=").decode("ascii")
        record = "".join(
            f"{wheel_file},sha256={digest},{len(new_wheel)}\n" if line.split(",", 1)[0] == wheel_file else line
            for line in source.read(record_file).decode("utf-8").splitlines(keepends=True)
        ).encode("utf-8")
        for info in infos:
            data = new_wheel if info.filename == wheel_file else record if info.filename == record_file else None
            out.writestr(info, source.read(info) if data is None else data, compress_type=info.compress_type)
    target.with_suffix(".part").replace(target)
    if target != wheel:
        wheel.unlink()
    return target

