"""Arches and build variants a test kernel can be made for."""

from dataclasses import dataclass

from runner.errors import UserError


@dataclass(frozen=True)
class Arch:
    name: str  # our name, also virtme-ng's --arch
    kernel_arch: str  # ARCH= for make
    cross_compile: str  # CROSS_COMPILE= prefix, "" for the host
    image: str  # path of the boot image inside the build tree
    qemu: str
    cmdline: tuple[str, ...] = ()


ARCHES = {
    "x86_64": Arch(
        "x86_64", "x86_64", "", "arch/x86/boot/bzImage", "qemu-system-x86_64",
        # No ACPI in the minimal config: reboot by triple fault, which
        # QEMU's -no-reboot turns into an exit.
        ("reboot=t",),
    ),
    "arm64": Arch(
        "arm64", "arm64", "aarch64-linux-gnu-", "arch/arm64/boot/Image",
        "qemu-system-aarch64",
    ),
    "riscv64": Arch(
        "riscv64", "riscv", "riscv64-linux-gnu-", "arch/riscv/boot/Image",
        "qemu-system-riscv64",
    ),
}

VARIANTS = ("default", "debug", "default-off", "off")
DEFAULT_ARCHES = ("x86_64",)
DEFAULT_VARIANTS = ("default",)


@dataclass(frozen=True)
class Target:
    arch: Arch
    variant: str

    @property
    def name(self) -> str:
        return f"{self.arch.name}-{self.variant}"


def parse_list(value: str | None, known, default) -> list[str]:
    if not value:
        return list(default)
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in known:
            raise UserError(
                f"unknown {'arch' if known is ARCHES else 'variant'} '{n}': "
                f"choose from {', '.join(known)}"
            )
    return names


def targets(arches: str | None, variants: str | None) -> list[Target]:
    a = parse_list(arches, ARCHES, DEFAULT_ARCHES)
    v = parse_list(variants, VARIANTS, DEFAULT_VARIANTS)
    return [Target(ARCHES[x], y) for x in a for y in v]
