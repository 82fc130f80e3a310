"""Build variants and targets (arches are records: runner/arches.py)."""

from dataclasses import dataclass

from runner.arches import ARCHES, Arch, host_arch
from runner.errors import UserError

__all__ = ["ARCHES", "Arch", "host_arch"]

VARIANTS = ("default", "debug", "default-off", "off")
# The arches whose records say so; one whose tools are missing is skipped
# unless asked for by name (see tools.arch_unavailable).
DEFAULT_ARCHES = tuple(name for name, a in ARCHES.items() if a.default)
DEFAULT_VARIANTS = ("default",)
# Boot variants: the value given to sysctl.vm.mem_profiling= ("none": no
# option). "malformed" is a value kstrtobool() rejects. The grammar grew
# in 6.13 to {0|1|never}[,compressed]: older kernels read "1,compressed"
# and "1,bogus" as "1" (kstrtobool looks at the first character), newer
# ones compress, or reject the suffix. "empty" gives the option no value.
BOOT_VARIANTS = {
    "none": None, "never": "never", "0": "0", "1": "1", "malformed": "maybe",
    "1c": "1,compressed", "0c": "0,compressed", "neverc": "never,compressed",
    "bogus": "1,bogus", "empty": "",
}
DEFAULT_BOOT_VARIANTS = ("none",)


@dataclass(frozen=True)
class Target:
    arch: Arch
    variant: str
    boot: str = "none"  # a key of BOOT_VARIANTS
    # A benchmark kernel: the test kernel without this project's KUnit
    # suites, which only the profiling variants could build in.
    bench: bool = False

    @property
    def build_name(self) -> str:
        """Boot variants of a target share its kernel."""
        return f"{self.arch.name}-{self.variant}" + ("-bench" if self.bench else "")

    @property
    def label(self) -> str:
        """The variant as ids show it: "default-off" or "default-off-boot0"."""
        return self.variant if self.boot == "none" else f"{self.variant}-boot{self.boot}"

    @property
    def name(self) -> str:
        return f"{self.arch.name}-{self.label}"

    @property
    def cmdline(self) -> list[str]:
        value = BOOT_VARIANTS[self.boot]
        return [] if value is None else [f"sysctl.vm.mem_profiling={value}"]


def parse_list(value: str | None, known, default) -> list[str]:
    if not value:
        return list(default)
    names = [v.strip() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in known:
            kind = {id(ARCHES): "arch", id(BOOT_VARIANTS): "boot variant"}.get(
                id(known), "variant")
            raise UserError(f"unknown {kind} '{n}': choose from {', '.join(known)}")
    return names


def targets(arches: str | None, variants: str | None,
            boots: str | None = None) -> list[Target]:
    a = parse_list(arches, ARCHES, DEFAULT_ARCHES)
    v = parse_list(variants, VARIANTS, DEFAULT_VARIANTS)
    b = parse_list(boots, BOOT_VARIANTS, DEFAULT_BOOT_VARIANTS)
    # A boot option means nothing to a kernel without the feature.
    return [Target(ARCHES[x], y, z) for x in a for y in v for z in b
            if not (y == "off" and z != "none")]
