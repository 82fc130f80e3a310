"""Adds the project's KUnit suites (kunit/) to a prepared kernel tree.

The suites are copied to lib/alloc_tag_kunit/ and hooked in with three
anchored edits instead of a context patch, so the same step works on every
6.10+ tree.  Files are only rewritten when their content changes, which
keeps incremental builds incremental.
"""

from __future__ import annotations

from pathlib import Path

from runner.paths import project_root

SUBDIR = "lib/alloc_tag_kunit"
SELFTEST_SUBDIR = "tools/testing/selftests/alloc_tag"
MARK = "allocprof-ktest"

KCONFIG_HOOK = f'source "{SUBDIR}/Kconfig"\n'
MAKEFILE_HOOK = "obj-$(CONFIG_ALLOC_TAG_KUNIT_TEST) += alloc_tag_kunit/\n"
# The iterator tests need alloc_tag_cttype, which is static in alloc_tag.c.
ALLOC_TAG_HOOK = (
    "\n#ifdef CONFIG_ALLOC_TAG_KUNIT_TEST\n"
    '#include "alloc_tag_kunit/alloc_tag_iter_kunit.c"\n'
    "#endif\n"
)


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


def _insert_kconfig(text: str) -> str:
    if KCONFIG_HOOK in text:
        return text
    anchor = 'source "lib/Kconfig.kasan"\n'
    if anchor in text:
        return text.replace(anchor, KCONFIG_HOOK + "\n" + anchor, 1)
    return text + "\n" + KCONFIG_HOOK


def _insert_once(text: str, hook: str) -> str:
    return text if hook in text else text.rstrip("\n") + "\n" + hook


def apply(tree: Path) -> list[str]:
    """Copies kunit/ into @tree and hooks it in; returns what changed."""
    changed = _mirror(kunit_dir(), tree / SUBDIR, SUBDIR)
    changed += _mirror(selftest_dir(), tree / SELFTEST_SUBDIR, SELFTEST_SUBDIR)
    edits = {
        "lib/Kconfig.debug": _insert_kconfig,
        "lib/Makefile": lambda t: _insert_once(t, MAKEFILE_HOOK),
        "lib/alloc_tag.c": lambda t: _insert_once(t, ALLOC_TAG_HOOK),
    }
    for rel, edit in edits.items():
        path = tree / rel
        if not path.exists():
            continue  # lib/alloc_tag.c is missing before 6.10: caught earlier
        if write_if_changed(path, edit(path.read_text())):
            changed.append(rel)
    return changed


def hooked_files() -> list[str]:
    """Files of the tree the overlay edits (for resetting a git tree)."""
    return ["lib/Kconfig.debug", "lib/Makefile", "lib/alloc_tag.c"]
