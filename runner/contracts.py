"""What the kernel under test promises, read from its own source.

Upstream changed some of the feature's behaviour on purpose: the
/proc/allocinfo format, the sysctl's mode and errnos, the boot option's
grammar, what a leaking module unload does, show_mem's header, the ioctl.
Each such change is a record here: a probe of the code that implements it,
and the values it can take.  The runner reads every record once per
prepared tree, records the values in results.json, and hands them to the
guest programs in a contract file (CONTRACT_FILE, beside the selftests;
ALLOC_TAG_CONTRACT_<NAME> in the environment overrides a value).  Each
test asserts the one contract of the kernel under test, never "either".

Bug fixes are not contracts: a kernel without a fix fails, or is an
expected failure through kernel/known-issues.txt.  Each record says why it
is a deliberate change.  A probe that cannot read its contract from a tree
says so in one line: a new layout of the code needs a new probe, never a
guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError
from runner.layout import TreeLayout

CONTRACT_FILE = "alloc_tag.contract"
ENV_PREFIX = "ALLOC_TAG_CONTRACT_"


@dataclass(frozen=True)
class Source:
    """The files a probe reads, from one prepared tree."""

    tree: Path
    layout: TreeLayout
    srcarch: str = ""  # arch/<it> of the kernel built; "" when none is (arch contracts unread)

    def read(self, rel: str) -> str:
        try:
            return (self.tree / rel).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def alloc_tag(self) -> str:
        return self.read(self.layout.layout.alloc_tag)

    def function(self, rel: str, name: str) -> str:
        """The text of C function @name in @rel, "" if it has none."""
        text = self.read(rel)
        m = re.search(rf"^(?![ \t]*[/*])[^\n;]*\b{re.escape(name)}\([^;{{)]*\)\s*{{", text, re.M)
        if not m:
            return ""
        depth, i = 0, m.end() - 1
        for i in range(m.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
        return text[m.start():i + 1]


@dataclass(frozen=True)
class Contract:
    name: str  # NAME in the contract file
    values: tuple[str, ...]  # what the probe may find, the oldest first
    what: str  # the behaviour, as the tests assert it
    why: str  # why this is a contract upstream chose, not a bug fix
    probe: Callable[[Source], str | None]  # None: the code is not as any record knows
    per_arch: bool = False  # read for the arch built: not in a tree's arch-less reading


def _allocinfo_version(s: Source) -> str | None:
    m = re.search(r'"allocinfo - version: (\d+\.\d+)\\n"', s.alloc_tag)
    return m.group(1) if m else None


def _accurate_marker(s: Source) -> str | None:
    """Format 2.0 defines the marker: a 2.0 kernel that prints none has
    lost it (the "accurate:no" fix), it did not choose to."""
    version = _allocinfo_version(s)
    return None if version is None else ("yes" if version >= "2.0" else "no")


def _unswitchable(s: Source) -> str | None:
    """How vm.mem_profiling refuses a write it cannot take."""
    text = s.alloc_tag
    entry = re.search(r'\.procname\s*=\s*"mem_profiling",(.*?)\}', text, re.S)
    if not entry:
        return None
    if "0444" in entry.group(1) or re.search(r"sysctls\[0\]\.mode\s*=\s*0444", text):
        return "readonly"
    if re.search(r"\.proc_handler\s*=\s*proc_mem_profiling_handler", entry.group(1)):
        return "handler"
    return None


def _boot_write(s: Source) -> str | None:
    """What the sysctl's write does when do_sysctl_args() replays the boot
    option: the generic path (mode and kstrtobool) of a read-only sysctl,
    or the handler's.  A handler must ignore a write from boot (no mm):
    without that early return it refuses the boot's own value, which is
    the bug "alloc_tag: fix rw permission issue when handling boot
    parameter" fixed, so the handler's presence decides, not the line."""
    return {"readonly": "generic", "handler": "ignored"}.get(_unswitchable(s) or "")


def _boot_grammar(s: Source) -> str | None:
    parser = s.function(s.layout.layout.alloc_tag, "setup_early_mem_profiling")
    if not parser:
        return None
    if '"compressed"' in parser:
        return "compressed"
    return "kstrtobool" if "kstrtobool(" in parser else None


def _boot_message(s: Source) -> str:
    return "yes" if "compression and is turned %s!" in s.alloc_tag else "no"


def _compressed_sysctl(s: Source) -> str:
    return "yes" if '"mem_profiling_compressed"' in s.alloc_tag else "no"


def _allocinfo_unsupported(s: Source) -> str:
    """/proc/allocinfo on a boot where profiling is not supported."""
    return "absent" if "Memory allocation profiling is not supported!" in s.alloc_tag \
        else "present"


def _unload_report(s: Source) -> str | None:
    unload = (s.function(s.layout.layout.alloc_tag, "alloc_tag_module_unload") or
              s.function(s.layout.layout.alloc_tag, "release_module_tags"))
    if "allocated at module unload" not in unload:
        return None
    if re.search(r"\bWARN\(", unload):
        return "warn"
    return "info" if re.search(r"\bpr_info\(", unload) else None


def _module_tags(s: Source) -> str:
    """Whether a leaking module's tag counters outlive it: 7.x keeps its
    tags in their own area (release_module_tags) while they are used."""
    release = s.function(s.layout.layout.alloc_tag, "release_module_tags")
    return "kept" if re.search(r"used \? &unloaded_mod", release) else "freed"


def _module_counters(s: Source) -> str | None:
    """Whether a module's tags each count, or all share one counter: on an
    arch whose modules need weak per-CPU variables the header gives every
    module tag the one _shared_alloc_tag.  6.x: the arch's asm/percpu.h
    defines ARCH_NEEDS_WEAK_PER_CPU (s390, alpha); 7.x: its Kconfig selects
    ARCH_MODULE_NEEDS_WEAK_PER_CPU (alpha; s390 no longer)."""
    header = s.read("include/linux/alloc_tag.h")
    if "_shared_alloc_tag" not in header:
        return "per-tag"
    if not s.srcarch:
        return None
    if "CONFIG_ARCH_MODULE_NEEDS_WEAK_PER_CPU" in header:
        kconfig = s.read(f"arch/{s.srcarch}/Kconfig")
        weak = re.search(r"^\s*select ARCH_MODULE_NEEDS_WEAK_PER_CPU\b", kconfig, re.M)
    elif "ARCH_NEEDS_WEAK_PER_CPU" in header:
        percpu = s.read(f"arch/{s.srcarch}/include/asm/percpu.h")
        weak = re.search(r"^#define ARCH_NEEDS_WEAK_PER_CPU\b", percpu, re.M)
    else:
        return None
    return "shared" if weak else "per-tag"


def _showmem_header(s: Source) -> str | None:
    text = s.read("mm/show_mem.c")
    if "Memory allocations (profiling is currently turned %s):" in text:
        return "state"
    return "plain" if '"Memory allocations:\\n"' in text else None


def _ioctl(s: Source) -> str:
    return "yes" if (s.tree / "include/uapi/linux/alloc_tag.h").is_file() else "no"


CONTRACTS = (
    Contract("ALLOCINFO_VERSION", ("1.0", "2.0"),
             "/proc/allocinfo's first line is 'allocinfo - version: <it>'",
             "the format's version, bumped by upstream with the accurate:no marker",
             _allocinfo_version),
    Contract("ACCURATE_MARKER", ("no", "yes"),
             "a tag whose counters are not exact ends its line in ' accurate:no'",
             "defined by format 2.0 (39d117e04d15): read from the version, so a 2.0 kernel "
             "that lost the marker fails",
             _accurate_marker),
    Contract("SYSCTL_UNSWITCHABLE", ("readonly", "handler"),
             "vm.mem_profiling when it cannot be switched (DEBUG, or not supported): "
             "readonly: mode 0444, EACCES at open; handler: mode 0644, a write gets "
             "EACCES under DEBUG and EINVAL when not supported",
             "upstream moved the refusal from the mode into a handler with its own errnos",
             _unswitchable),
    Contract("BOOT_WRITE", ("generic", "ignored"),
             "the boot option replayed as a sysctl write: generic: through the mode and "
             "kstrtobool ('Failed to set sysctl parameter' when refused); ignored: the "
             "handler returns early for a write without mm, and nothing is logged",
             "follows SYSCTL_UNSWITCHABLE: a handler kernel must ignore the boot's write "
             "(\"alloc_tag: fix rw permission issue when handling boot parameter\" is a fix "
             "expected of every handler kernel, so the probe does not read it)",
             _boot_write),
    Contract("BOOT_GRAMMAR", ("kstrtobool", "compressed"),
             "sysctl.vm.mem_profiling=: kstrtobool: 'never' or any kstrtobool value; "
             "compressed: {0|1|never}[,compressed], anything else malformed",
             "the compressed mode added a second field to the option", _boot_grammar),
    Contract("BOOT_MESSAGE", ("no", "yes"),
             "at boot the kernel says whether profiling is enabled, with or without "
             "compression, and turned on or off",
             "a message added with the compressed mode", _boot_message),
    Contract("COMPRESSED_SYSCTL", ("no", "yes"),
             "vm.mem_profiling_compressed exists, 0444, the boot's compression",
             "added with the compressed mode", _compressed_sysctl),
    Contract("ALLOCINFO_UNSUPPORTED", ("present", "absent"),
             "/proc/allocinfo when profiling is not supported in this boot, and the "
             "boot message 'Memory allocation profiling is not supported!' with absent",
             "upstream stopped creating the file when nothing can be counted",
             _allocinfo_unsupported),
    Contract("UNLOAD_REPORT", ("warn", "info"),
             "a module unloaded with live allocations: warn: a WARN per tag and taint W; "
             "info: one pr_info per tag, no taint",
             "with module tags kept in their own area a leak is no longer a hazard",
             _unload_report),
    Contract("MODULE_TAGS", ("freed", "kept"),
             "a leaking module's tags: freed at unload, or kept (a later free of its "
             "blocks by another module is safe)",
             "module tags moved into an area of their own that outlives the module",
             _module_tags),
    Contract("MODULE_COUNTERS", ("shared", "per-tag"),
             "a module's tags: per-tag: each counts its own allocations; shared: every "
             "module tag reads the one counter all module allocations are charged to "
             "(modules with weak per-CPU variables: s390 and alpha in 6.x, alpha in 7.x)",
             "the header says so on purpose (\"we will account all module allocations to "
             "a single counter\"); which arches need it is the arch's choice. Arch-dependent: "
             "read for the arch of each build",
             _module_counters, per_arch=True),
    Contract("SHOWMEM_HEADER", ("plain", "state"),
             "show_mem's header: plain: 'Memory allocations:'; state: 'Memory allocations "
             "(profiling is currently turned on|off):'",
             "upstream added the state to the header", _showmem_header),
    Contract("IOCTL", ("no", "yes"),
             "/proc/allocinfo answers the ALLOCINFO_IOC_* ioctls of "
             "<linux/alloc_tag.h>",
             "a new interface", _ioctl),
)


def read(tree: Path, layout: TreeLayout, srcarch: str = "") -> dict[str, str]:
    """Every contract of the tree, by name; those that depend on the arch
    only for @srcarch (the directory under arch/ of the kernel built)."""
    src = Source(tree, layout, srcarch)
    out = {}
    for c in CONTRACTS:
        if c.per_arch and not srcarch:
            continue
        value = c.probe(src)
        if value not in c.values:
            raise UserError(
                f"cannot read the {c.name} contract from {tree} ({layout.layout.alloc_tag}): "
                f"the code is in no form runner/contracts.py knows; add a probe for it")
        out[c.name] = value
    return out


def text(values: dict[str, str]) -> str:
    """The contract file: NAME=value lines."""
    return "".join(f"{k}={v}\n" for k, v in sorted(values.items()))


def table() -> str:
    """The README's contract table, from the records."""
    rows = ["| contract | values | what the tests assert | why it is a contract |",
            "|---|---|---|---|"]
    for c in CONTRACTS:
        rows.append(f"| `{c.name}` | {' / '.join(f'`{v}`' for v in c.values)} | "
                    f"{c.what} | {c.why} |")
    return "\n".join(rows) + "\n"
