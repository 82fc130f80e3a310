"""A skip must be true: every skip reason a kernel test gives is checked
against what the runner knows of the run (the .config it built, the
tree's contracts, the boot option, the arch).  The reasons are a small
fixed vocabulary (VOCABULARY); a reason outside it, or one that
contradicts the facts, turns the skip into a failure that says so."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from runner import fit
from runner.arches import ARCHES, kunit_only_reason
from runner.results import RunResult, Status

OPTION = "sysctl.vm.mem_profiling="


@dataclass(frozen=True)
class Facts:
    config: dict[str, str]  # the built .config: CONFIG_X -> y/m/n or a value
    contracts: dict[str, str]  # runner/contracts.py, by name
    boot_option: str | None  # the value of sysctl.vm.mem_profiling=, if given
    arch: str
    # The build's fit prediction (runner/fit.py) says the kernel's tags do not
    # fit in page flags under this boot's ,compressed, so the kernel turns
    # profiling off for good at boot (a console check holds the kernel to it).
    compression_refused: bool = False

    def on(self, name: str) -> bool:
        return self.config.get(f"CONFIG_{name}") == "y"

    @property
    def supported(self) -> bool:
        """Profiling can count in this boot (a malformed option keeps the
        configured default)."""
        opt = self.boot_option
        if not self.on("MEM_ALLOC_PROFILING") or (opt or "").startswith("never") or \
                self.compression_refused:
            return False
        well_formed = opt is not None and re.fullmatch(
            r"[01yYnNtTfF]\w*(,compressed)?" if self.contracts.get("BOOT_GRAMMAR") ==
            "compressed" else r"[01yYnNtTfF]\w*|[oO][nNfF]\w*(,.*)?", opt or "")
        return bool(well_formed) or self.on("MEM_ALLOC_PROFILING_ENABLED_BY_DEFAULT")

    @property
    def counting(self) -> bool:
        """Profiling counts from boot on."""
        opt = self.boot_option
        if not self.supported:
            return False
        if opt and re.match(r"[0nNfF]|[oO][fF]", opt):
            return False
        return True


Rule = Callable[[re.Match, Facts], str]  # "" if true, else what contradicts it


def _never(why: str) -> Rule:
    return lambda _m, _f: why


def _config_off(m: re.Match, f: Facts) -> str:
    return f"the kernel was built with CONFIG_{m.group(1)}=y" if f.on(m.group(1)) else ""


def _config_on(m: re.Match, f: Facts) -> str:
    return "" if f.on(m.group(1)) else f"the kernel was built without CONFIG_{m.group(1)}"


def _not_supported(_m: re.Match, f: Facts) -> str:
    return "profiling is supported in this boot" if f.supported else ""


def _off_from_boot(m: re.Match, f: Facts) -> str:
    if (f.boot_option or "").split(",")[0] != m.group(1).split(",")[0]:
        return f"the boot option is {f.boot_option!r}"
    if not re.match(r"[0nNfFdD]|[oO][fF]", m.group(1)):
        return f"{m.group(1)!r} switches profiling on"
    return "profiling counts from boot in this configuration" if f.counting else ""


def _gave_up_on_compression(_m: re.Match, f: Facts) -> str:
    """True only where the build's fit prediction says the kernel refuses
    this boot's ,compressed (the console check holds the kernel to it)."""
    return "" if f.compression_refused else \
        "runner fit predicts no refusal of ,compressed for this build and boot"


def _never_at_boot(_m: re.Match, f: Facts) -> str:
    return "" if (f.boot_option or "").startswith("never") else \
        f"the boot option is {f.boot_option!r}"


def _not_compressed(_m: re.Match, f: Facts) -> str:
    """True unless the kernel took the option's ,compressed (never,compressed
    and a malformed value keep tags in page_ext)."""
    took = fit.compressed_boot(f.boot_option, f.contracts.get("BOOT_GRAMMAR", ""))
    return f"booted with {f.boot_option!r}, which compresses tags" if took else ""


def _contract(name: str, value: str) -> Rule:
    def rule(_m: re.Match, f: Facts) -> str:
        got = f.contracts.get(name)
        return "" if got == value else f"the tree's {name} contract is {got!r}"
    return rule


def _inner(m: re.Match, f: Facts) -> str:
    """A reason that wraps another: the inner one must be true."""
    return why_false(m.group("inner"), f, depth=1)


def _only_x86_64(_m: re.Match, f: Facts) -> str:
    return "the arch is x86_64, where it is built" if f.arch == "x86_64" else ""


def _kunit_only(m: re.Match, f: Facts) -> str:
    """True on the arch it names, when its record boots it without userspace."""
    if m.group("arch") != f.arch:
        return f"the arch is {f.arch}, not {m.group('arch')}"
    return "" if kunit_only_reason(f.arch) == m.group(0) else \
        f"{f.arch}'s record (kernel/arches/) boots it with userspace"


def _no_huge_pages(_m: re.Match, f: Facts) -> str:
    """True only on an arch whose record says its guest has none."""
    if f.config.get("CONFIG_TRANSPARENT_HUGEPAGE") != "y":
        return "the kernel has no CONFIG_TRANSPARENT_HUGEPAGE"
    arch = ARCHES.get(f.arch)
    return "" if arch and arch.no_huge_pages else \
        f"{f.arch}'s guests have huge pages (its record in kernel/arches/ says nothing else)"


def _environment(_m: re.Match, _f: Facts) -> str:
    return ""  # memory layout under TCG: nothing the runner knows contradicts it


VOCABULARY: tuple[tuple[re.Pattern, Rule], ...] = tuple((re.compile(rx), rule) for rx, rule in (
    (r"CONFIG_(MEM_ALLOC_PROFILING) is not set", _config_off),
    (r"needs CONFIG_(\w+)=y", _config_off),
    (r"vm\.mem_profiling cannot be switched with CONFIG_(MEM_ALLOC_PROFILING_DEBUG)=y",
     _config_on),
    (r"profiling disabled at boot \(sysctl\.vm\.mem_profiling=never[^)]*\)", _never_at_boot),
    (r"profiling off from boot \(sysctl\.vm\.mem_profiling=([^)]*)\)", _off_from_boot),
    (r"profiling not supported in this boot: the kernel gave up on compression",
     _gave_up_on_compression),
    (r"profiling not supported in this boot.*", _not_supported),
    (r"vm\.mem_profiling is read-only: profiling is not supported in this boot",
     _not_supported),
    (r"no /proc/allocinfo: (?P<inner>.*)", _inner),
    (r"no allocation tags registered: (?P<inner>.*)", _inner),
    (r"vm\.mem_profiling cannot be switched \([^)]*\): (?P<inner>.*)", _inner),
    (r"tags are in page_ext: booted without sysctl\.vm\.mem_profiling=\.\.\.,compressed",
     _not_compressed),
    (r"not in this kernel: no include/uapi/linux/alloc_tag\.h", _contract("IOCTL", "no")),
    (r"not in this kernel: show_mem's header is \"Memory allocations:\"",
     _contract("SHOWMEM_HEADER", "plain")),
    (r"not in this kernel: module tags are freed at unload.*", _contract("MODULE_TAGS", "freed")),
    (r"not in this kernel: page tags are never compressed into page flags",
     _contract("COMPRESSED_SYSCTL", "no")),
    (r"not built as a 32-bit program.*", _only_x86_64),
    (r"memcg adds per-object extras.*", lambda _m, f: _config_on(re.match(r"(.*)", "MEMCG"), f)),
    (r"(?P<arch>\S+) boots KUnit only: .*", _kunit_only),
    (r"no huge pages on this machine: no /sys/kernel/mm/transparent_hugepage",
     _no_huge_pages),
    (r"no huge page was allocated \(smaps: AnonHugePages \d+ kB\)", _environment),
    (r"compaction (?:moved none of the test's pages|migrated no page) in \d+ tries",
     _environment),
    # The runner runs every program as root, with its helper modules, its
    # contract file, /proc/config.gz and the whole boot log: these are bugs.
    (r"profiling switched off \(vm\.mem_profiling reads 0\)",
     _never("a program before this one left vm.mem_profiling switched off")),
    (r"contract unknown.*", _never("the runner hands every program its contract file")),
    (r"kernel config unknown.*", _never("the test kernels have CONFIG_IKCONFIG_PROC")),
    (r"needs root.*", _never("the guest runs the programs as root")),
    (r"helper module.*not built.*", _never("the runner builds the helper modules")),
    (r"cannot read the kernel log.*|the boot messages left the log buffer",
     _never("the test kernels keep the whole boot log")),
))


def why_false(reason: str, facts: Facts, depth: int = 0) -> str:
    """"" if @reason is a true skip for @facts, else why it is not."""
    text = reason.strip()
    for rx, rule in VOCABULARY:
        m = rx.fullmatch(text)
        if m:
            return rule(m, facts) if depth < 3 else "reasons nested too deep"
    return "not a skip reason of the suite's vocabulary (runner/skips.py)"


def boot_option(cmdline: list[str]) -> str | None:
    """The last sysctl.vm.mem_profiling= value of a kernel command line."""
    found = None
    for arg in cmdline:
        if arg.startswith(OPTION):
            found = arg[len(OPTION):]
    return found


def check(run: RunResult, facts: Facts, suites: set[str]) -> None:
    """Turns each skip of @suites whose reason is false into a failure."""
    for leaf in run.leaves():
        r = leaf.result
        if r.status != Status.SKIP or leaf.path[0] not in suites:
            continue
        wrong = why_false(r.reason, facts)
        if wrong:
            r.status = Status.FAIL
            r.diagnostics = r.diagnostics + [f"skipped with '{r.reason}', but {wrong}"]
            r.reason = f"false skip: {wrong}"
    for t in run.tests:
        if t.name in suites and t.status == Status.SKIP and \
                any(c.status == Status.FAIL for c in t.children):
            t.status = Status.FAIL
