"""Arches a test kernel can be made for: one record per file in
kernel/arches/<name>.toml, so adding an arch is adding one file.

A record holds everything that varies by arch: the kernel's ARCH= and
cross prefix, its boot image, the QEMU that runs it, the Debian packages
for the compiler, QEMU and the guest's root, the base config fragment, how
the guest powers off, and the expected cost for the shard planner.

This module needs only the standard library: .ci/install runs it with the
system's python3 (`python3 -m runner.arches packages`) before the runner's
own environment exists."""

from __future__ import annotations


import os
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from runner.errors import UserError

RECORDS = Path(__file__).resolve().parent.parent / "kernel" / "arches"


def host_machine() -> str:
    """`uname -m` of this host (a function, so tests can pose as another)."""
    return os.uname().machine


@dataclass(frozen=True)
class Arch:
    name: str  # our name, also virtme-ng's --arch
    uname: tuple[str, ...]  # `uname -m` of a host of this arch
    kernel_arch: str  # ARCH= for make
    cross_prefix: str  # CROSS_COMPILE= on a host of another arch
    image: str  # path of the boot image inside the build tree
    qemu: str
    qemu_package: str
    compiler_package: str  # the cross compiler's Debian package
    # The static C library selftests link, and its package; () on a KUnit-only
    # arch, where no program is built.
    libc: tuple[str, ...]
    extra_packages: tuple[str, ...]  # what else .ci/install gets for this arch
    # Debian arch whose binary packages make a foreign guest's root; "" if
    # Debian 12 has none: the root is then cross-built from source.
    deb_arch: str
    build_cost: float  # seconds of a clean build from an empty cache
    boot_cost: float  # seconds of one boot
    config: str  # base config fragment, merged on top of allnoconfig
    default: bool  # in the default set (no --arch); runner matrix lists every arch
    # How it boots: "vng" (virtme-ng and its userspace: the whole suite, with
    # vng --arch @vng_arch), "virtme-run" (the same through virtme-ng's lower
    # layer, whose --arch @vng_arch takes arches vng's does not list, for the
    # reason @why), or "qemu" (QEMU alone with @qemu_args and a serial
    # @console: KUnit only, no userspace, for the reason @why).
    boot_via: str
    vng_arch: str = ""
    qemu_args: tuple[str, ...] = ()
    console: str = ""
    why: str = ""
    # The most CPUs its QEMU machine takes (0: no limit below the runner's 2).
    max_cpus: int = 0
    # The memory its QEMU machine has, where it is fixed ("": the runner's).
    memory: str = ""
    # How a KUnit-only guest ends after KUnit (kunit_shutdown=): "reboot",
    # which -no-reboot makes QEMU's exit, or "poweroff" where the machine
    # cannot restart (sparc64's firmware: "Reboot failed!", a panic).
    kunit_shutdown: str = "reboot"
    # Why its guest has no transparent huge pages though the kernel has THP
    # ("" where it has them): the THP tests' skip is true only then.
    no_huge_pages: str = ""
    # Options the fragments ask for that this arch cannot have (THP where
    # the arch has no HAVE_ARCH_TRANSPARENT_HUGEPAGE): not required to stick.
    config_without: tuple[str, ...] = ()
    # Kernel arguments that make the guest power off when QEMU runs with
    # -no-reboot (x86 reboots by triple fault); none where PSCI/SBI does it.
    cmdline: tuple[str, ...] = ()
    record: Path | None = None

    @property
    def native(self) -> bool:
        """Runs on this host's CPU: no cross compiler, KVM possible, and
        the guest can use the host's root."""
        return host_machine() in self.uname

    def cpus(self, wanted: int) -> int:
        """How many CPUs a guest asked for @wanted gets on this arch."""
        return min(wanted, self.max_cpus) if self.max_cpus > 0 else wanted

    @property
    def srcarch(self) -> str:
        """The kernel's directory under arch/ (SRCARCH)."""
        return "x86" if self.kernel_arch in ("x86_64", "i386") else self.kernel_arch

    @property
    def kunit_only(self) -> bool:
        """Boots without userspace: only the KUnit suites run."""
        return self.boot_via == "qemu"

    @property
    def cross_compile(self) -> str:
        """CROSS_COMPILE= for make: empty on a host of this arch."""
        return "" if self.native else self.cross_prefix

    @property
    def compiler(self) -> str:
        return f"{self.cross_compile}gcc"


# What each kind of field a record fills must hold (Arch's annotations).
_KINDS = {"str": lambda v: isinstance(v, str),
          "tuple[str, ...]": lambda v: all(isinstance(x, str) for x in v),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, float),
          "bool": lambda v: isinstance(v, bool)}


def _mistyped(arch: Arch) -> str:
    """The first field whose value is not of its declared kind, said in a
    few words, or "" when every one is."""
    for f in fields(arch):
        check = _KINDS.get(str(f.type))
        value = getattr(arch, f.name)
        if check and not check(value):
            return f"{f.name} = {value!r} is not a {f.type}"
    return ""


def _load(path: Path) -> Arch:
    try:
        r = tomllib.loads(path.read_text())
        pkgs, guest, cost, boot = r["packages"], r["guest"], r["cost"], r["boot"]
        arch = Arch(
            name=r["name"], uname=tuple(r["uname"]), kernel_arch=r["kernel_arch"],
            cross_prefix=r["cross_compile"], image=r["image"], qemu=r["qemu"],
            qemu_package=pkgs["qemu"], compiler_package=pkgs["compiler"],
            libc=tuple(pkgs["libc"]), extra_packages=tuple(pkgs.get("extra", ())),
            deb_arch=guest["deb_arch"], build_cost=float(cost["build"]),
            boot_cost=float(cost["boot"]), config=r["config"]["fragment"].lstrip("\n"),
            default=r["default"], boot_via=boot["via"],
            vng_arch=boot.get("vng_arch", ""), qemu_args=tuple(boot.get("qemu_args", ())),
            console=boot.get("console", ""), why=boot.get("why", ""),
            max_cpus=boot.get("max_cpus", 0), memory=boot.get("memory", ""),
            kunit_shutdown=boot.get("kunit_shutdown", "reboot"),
            config_without=tuple(r["config"].get("without", ())),
            no_huge_pages=guest.get("no_huge_pages", ""),
            cmdline=tuple(r.get("cmdline", ())), record=path)
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError,
            AttributeError) as e:
        raise UserError(f"arch record {path} is malformed ({type(e).__name__}: {e}): "
                        "compare it with kernel/arches/x86_64.toml") from None
    wrong = _mistyped(arch)
    if wrong:
        raise UserError(f"arch record {path} is malformed ({wrong}): "
                        "compare it with kernel/arches/x86_64.toml")
    if arch.name != path.stem or len(arch.libc) not in (0, 2) or \
            (not arch.libc and arch.boot_via != "qemu"):
        raise UserError(f"arch record {path}: its name must be its file's ({path.stem}) "
                        "and libc a [path, package] pair ([] only where [boot] via = "
                        "\"qemu\": no program is built)")
    if arch.kunit_shutdown not in ("reboot", "poweroff") or \
            (arch.kunit_shutdown != "reboot" and arch.boot_via != "qemu"):
        raise UserError(f"arch record {path}: [boot] kunit_shutdown must be \"reboot\" or "
                        f"\"poweroff\", not {arch.kunit_shutdown!r}, and \"poweroff\" only "
                        "where via = \"qemu\" (a KUnit-only guest)")
    if not ((arch.boot_via == "vng" and arch.vng_arch)
            or (arch.boot_via == "virtme-run" and arch.vng_arch and arch.why)
            or (arch.boot_via == "qemu" and arch.console and arch.why)):
        raise UserError(f"arch record {path}: [boot] needs via = \"vng\" with vng_arch, "
                        "via = \"virtme-run\" with vng_arch and why (see i386.toml), or "
                        "via = \"qemu\" with console and why (see m68k.toml)")
    return arch


def load(directory: Path = RECORDS) -> dict[str, Arch]:
    """Every record, by name, x86_64 first then by name (the default order)."""
    found = [_load(p) for p in sorted(directory.glob("*.toml"))]
    found.sort(key=lambda a: (a.name != "x86_64", a.name))
    return {a.name: a for a in found}


ARCHES = load()


def host_arch(arches: dict[str, Arch] = ARCHES) -> str:
    """Our name for this host's arch (aarch64 -> arm64); a one-line error
    on a host none of the records runs on."""
    machine = host_machine()
    for a in arches.values():
        if machine in a.uname:
            return a.name
    raise UserError(f"this host's arch ({machine}) has no record in kernel/arches/: "
                    f"give --arch, from: {', '.join(arches)}")


def kunit_only_reason(name: str, arches: dict[str, Arch] = ARCHES) -> str:
    """Why no program runs on arch @name (a skip reason: runner/skips.py),
    or "" where the whole suite runs (or @name is no arch of ours)."""
    arch = arches.get(name)
    if arch is None or not arch.kunit_only:
        return ""
    return f"{name} boots KUnit only: {arch.why} (kernel/arches/{name}.toml)"


def packages(arches: dict[str, Arch] = ARCHES) -> tuple[list[str], list[str]]:
    """The Debian packages every arch needs on this host, and the foreign
    Debian arches whose packages make the guests' roots."""
    pkgs: list[str] = []
    foreign: list[str] = []
    for a in arches.values():
        pkgs += [a.qemu_package, *a.extra_packages]
        if not a.native:
            pkgs += [a.compiler_package, *a.libc[1:]]
            if a.deb_arch and not a.kunit_only:  # a KUnit-only guest has no root
                foreign.append(a.deb_arch)
    return sorted(set(pkgs)), sorted(set(foreign))


if __name__ == "__main__":
    # python3 -m runner.arches packages|foreign
    pkgs, foreign = packages()
    what = sys.argv[1] if len(sys.argv) > 1 else "packages"
    print(" ".join(foreign if what == "foreign" else pkgs))
