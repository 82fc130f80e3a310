"""Adds the project's KUnit suites (kunit/) and selftests to a prepared
kernel tree, wherever the tree's layout (runner/layout.py) puts the feature.

The KUnit suites are copied beside alloc_tag.c (<dir>/alloc_tag_kunit/)
and hooked in with three anchored edits instead of a context patch, so the
same step works on every 6.10+ tree.  Our selftests get a directory of
their own; upstream's alloc_tag selftests are never touched.  Files are
only rewritten when their content changes, which keeps incremental builds
incremental.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from runner import layout
from runner.layout import LAYOUTS, OUR_SELFTESTS, TreeLayout
from runner.paths import project_root

MARK = "allocprof-ktest"
SUBDIR_NAME = "alloc_tag_kunit"

# Each hook is a block between marked lines, so that a later overlay
# replaces it instead of adding a second one.
MAKEFILE_HOOK = (f"obj-$(CONFIG_ALLOC_TAG_KUNIT_TEST) += {SUBDIR_NAME}/\n"
                 f"include $(srctree)/$(obj)/{SUBDIR_NAME}/compat.mk\n")
# The iterator tests need alloc_tag_cttype, which is static in alloc_tag.c.
ALLOC_TAG_HOOK = (
    "#ifdef CONFIG_ALLOC_TAG_KUNIT_TEST\n"
    f'#include "{SUBDIR_NAME}/alloc_tag_iter_kunit.c"\n'
    "#endif\n"
)


def kconfig_hook(tl: TreeLayout) -> str:
    return f'source "{tl.layout.kunit_subdir}/Kconfig"\n'


# Hooks of overlays before the marked blocks, taken out as they were.
_LEGACY_HOOKS = (
    'source "lib/alloc_tag_kunit/Kconfig"\n\n',
    f"obj-$(CONFIG_ALLOC_TAG_KUNIT_TEST) += {SUBDIR_NAME}/\n",
    f'\n#ifdef CONFIG_ALLOC_TAG_KUNIT_TEST\n#include "{SUBDIR_NAME}/alloc_tag_iter_kunit.c"\n'
    "#endif\n",
)


def _block(body: str, c_style: bool) -> str:
    begin, end = (f"/* {MARK} begin */\n", f"/* {MARK} end */\n") if c_style else (
        f"# {MARK} begin\n", f"# {MARK} end\n")
    return begin + body + end


def hooked(text: str, body: str, anchor: str = "", c_style: bool = False) -> str:
    """@text with our block holding @body, before @anchor or at the end;
    an earlier block of ours is taken out first."""
    text = re.sub(rf"(/\* |# ){MARK} begin( \*/)?\n.*?{MARK} end( \*/)?\n", "", text,
                  flags=re.S)
    for old in _LEGACY_HOOKS:
        text = text.replace(old, "")
    block = _block(body, c_style)
    if anchor and anchor in text:
        return text.replace(anchor, block + anchor, 1)
    return text.rstrip("\n") + "\n\n" + block


PREPARED_STAMP = ".allocprof-prepared"


def digest() -> str:
    """Changes whenever what apply() would write changes."""
    h = hashlib.sha256(Path(__file__).read_bytes() + Path(layout.__file__).read_bytes())
    for d in (kunit_dir(), selftest_dir()):
        for f in sorted(p for p in d.iterdir() if p.is_file()):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def owned_paths() -> list[str]:
    """What the overlay adds to a tree (rsync patterns, from its top)."""
    return [f"/{PREPARED_STAMP}", f"/{OUR_SELFTESTS}/"] + [
        f"/{lay.kunit_subdir}/" for lay in LAYOUTS]


def kunit_dir() -> Path:
    return project_root() / "kunit"


def selftest_dir() -> Path:
    return project_root() / "selftests" / "alloc_tag"


def _mirror(src: Path, dest: Path, rel: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Makes @dest hold exactly the files of @src (minus @skip)."""
    changed = []
    wanted = {p.name for p in src.iterdir() if p.is_file() and p.name not in skip}
    for name in sorted(wanted):
        if write_if_changed(dest / name, (src / name).read_text()):
            changed.append(f"{rel}/{name}")
    if dest.exists():
        for stale in dest.iterdir():
            if stale.is_file() and stale.name not in wanted:
                stale.unlink()
                changed.append(f"{rel}/{stale.name} (removed)")
    return changed


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def apply(tree: Path, tl: TreeLayout) -> list[str]:
    """Copies kunit/ and our selftests into @tree and hooks them in where
    its layout says; returns what changed."""
    lay = tl.layout
    changed = _mirror(kunit_dir(), tree / lay.kunit_subdir, lay.kunit_subdir)
    changed += _mirror(selftest_dir(), tree / OUR_SELFTESTS, OUR_SELFTESTS)
    # A bisect step may cross a layout move: no copy of ours stays behind
    # where the tree no longer looks.
    for other in LAYOUTS:
        stale = tree / other.kunit_subdir
        if other != lay and stale.is_dir():
            shutil.rmtree(stale)
            changed.append(f"{other.kunit_subdir} (removed)")
    edits = {
        lay.kconfig: lambda t: hooked(t, kconfig_hook(tl), lay.kconfig_anchor),
        lay.makefile: lambda t: hooked(t, MAKEFILE_HOOK),
        lay.alloc_tag: lambda t: hooked(t, ALLOC_TAG_HOOK, c_style=True),
    }
    for rel, edit in edits.items():
        path = tree / rel
        if write_if_changed(path, edit(path.read_text())):
            changed.append(rel)
    return changed
