"""Where memory allocation profiling lives in a kernel tree.

One record per layout the feature has had.  A prepared tree (and every
bisect step, since a range can cross a move) is probed for its layout:
where alloc_tag.c and its Kconfig are, and whether upstream ships alloc_tag
selftests.  Adding a layout is adding a record to LAYOUTS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UserError

MIN_VERSION = (6, 10)
# Upstream's own alloc_tag selftests (7.x); never touched by the overlay.
UPSTREAM_SELFTESTS = "tools/testing/selftests/alloc_tag"
# Ours get a directory of their own beside upstream's.
OUR_SELFTESTS = "tools/testing/selftests/alloc_tag_ktest"
_KCONFIG_SYMBOL = "config MEM_ALLOC_PROFILING\n"


@dataclass(frozen=True)
class Layout:
    name: str
    alloc_tag: str  # the file that defines alloc_tag_cttype and /proc/allocinfo
    kconfig: str  # the Kconfig file declaring MEM_ALLOC_PROFILING
    # Our Kconfig is sourced before this line of @kconfig, else at its end.
    kconfig_anchor: str = ""

    @property
    def directory(self) -> str:
        return str(Path(self.alloc_tag).parent)

    @property
    def makefile(self) -> str:
        return f"{self.directory}/Makefile"

    @property
    def kunit_subdir(self) -> str:
        """Our KUnit suites sit beside alloc_tag.c, which includes one."""
        return f"{self.directory}/alloc_tag_kunit"


LAYOUTS = (
    # 7.x: the feature moved to mm/.
    Layout("mm", "mm/alloc_tag.c", "mm/Kconfig.debug"),
    # 6.10 to 6.x: merged into lib/.
    Layout("lib", "lib/alloc_tag.c", "lib/Kconfig.debug", 'source "lib/Kconfig.kasan"\n'),
)


@dataclass(frozen=True)
class TreeLayout:
    layout: Layout
    version: str
    upstream_selftests: tuple[str, ...]  # programs upstream ships, by name


def kernel_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL from the top Makefile."""
    try:
        head = (tree / "Makefile").read_text(errors="replace")[:2000]
    except OSError as e:
        raise UserError(f"{tree} is not a kernel tree (no Makefile)") from e
    fields = {}
    for key in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        m = re.search(rf"^{key}\s*=\s*(\d{{0,4}})\s*$", head, re.M)
        if not m:
            raise UserError(f"{tree} is not a kernel tree (no {key} in its Makefile)")
        fields[key] = m.group(1) or "0"
    return f"{fields['VERSION']}.{fields['PATCHLEVEL']}.{fields['SUBLEVEL']}"


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def too_old(version: str) -> bool:
    return version_tuple(version)[:2] < MIN_VERSION


def _declares_feature(tree: Path, layout: Layout) -> bool:
    kconfig = tree / layout.kconfig
    if not ((tree / layout.alloc_tag).is_file() and kconfig.is_file()):
        return False
    return _KCONFIG_SYMBOL in kconfig.read_text(errors="replace")


def upstream_programs(tree: Path) -> tuple[str, ...]:
    """The TEST_GEN_PROGS of upstream's alloc_tag selftests, if any."""
    mk = tree / UPSTREAM_SELFTESTS / "Makefile"
    if not mk.is_file():
        return ()
    text = mk.read_text(errors="replace").replace("\\\n", " ")
    progs: list[str] = []
    for m in re.finditer(r"^TEST_GEN_PROGS\s*[:+]?=\s*(.*)$", text, re.M):
        progs += [p for p in m.group(1).split() if (mk.parent / f"{p}.c").is_file()]
    return tuple(progs)


def upstream_program_name(prog: str) -> str:
    """Upstream programs run in the guest beside ours under a name of
    their own, which is also their suite's (the guest runs every *_test)."""
    return f"upstream_{prog}" + ("" if prog.endswith("_test") else "_test")


def detect(tree: Path, label: str) -> TreeLayout:
    """The tree's layout; a one-line error for a tree without the feature."""
    version = kernel_version(tree)
    found = next((lay for lay in LAYOUTS if _declares_feature(tree, lay)), None)
    if too_old(version) or found is None:
        why = (f"is {version}, older than 6.10" if too_old(version)
               else f"({version}) has no CONFIG_MEM_ALLOC_PROFILING in "
                    + " or ".join(lay.kconfig for lay in LAYOUTS))
        raise UserError(f"kernel source {label} {why}: memory allocation profiling needs "
                        "the series merged in 6.10; pick a newer revision")
    return TreeLayout(found, version, upstream_programs(tree))
