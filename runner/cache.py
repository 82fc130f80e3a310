"""The cache and every place in it.

One object names where each thing the runner keeps lives, so no other
module spells a folder of the cache.  The layout on disk:

    trees/<key>                 clones and copies of the user's trees, the faults copy
    src/debian-<sha>            extracted Debian tarballs (src/tarball-sums.json: memo)
    build/<source>/<arch-var>   O= build directories (and <arch-var>.lock beside each)
    debian/<package>            Debian kernel source packages, fetched
    apt/kernel                  the private apt state that fetches them
    rootfs/<arch>-<key>         guest roots; rootfs/{apt,sources,build}: what makes them
    series/<name>               repositories of a patch series applied by git am
    ccache/                     the compiler cache
    locks/                      lock files (never pruned)
    kvm-verdict.json, upstream-selftests.json, size.json: memo files

An *entry* is what is listed, held and pruned as one: a directory one
level below trees/, src/, debian/, apt/, rootfs/ and series/, two below
build/, and ccache/ as a whole.  A run holds a shared lock on each entry
it uses (keep()) for as long as it lives; `runner cache prune` deletes
only entries it can lock exclusively at that moment (runner/prune.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner import lock
from runner.paths import cache_path, cache_root

# Lock files of entries held by runs, mirroring the entries' paths.
_HELD_DIR = "use"
# Shared locks this process holds, by lock file: released when it ends.
_KEPT: dict[Path, int] = {}


class _Place:
    """A folder or file of the cache, named once: read on a Cache, it is
    that cache's path.  A folder of entries says their kind, and how far
    below it they are."""

    def __init__(self, *parts: str, kind: str = "", depth: int = 1) -> None:
        self.parts, self.kind, self.depth = parts, kind, depth

    def __get__(self, cache: Cache | None, owner: type | None = None) -> Path:
        return self if cache is None else cache.root.joinpath(*self.parts)


@dataclass(frozen=True)
class Cache:
    root: Path

    @classmethod
    def open(cls, override: str | None = None) -> Cache:
        """The cache of --cache-dir, $ALLOCPROF_CACHE or $XDG_CACHE_HOME,
        made if needed (runner.paths.cache_path)."""
        return cls(cache_root(override))

    @classmethod
    def find(cls, override: str | None = None) -> Cache:
        """The same cache, without making it."""
        return cls(cache_path(override))

    # --- the places ---

    trees = _Place("trees", kind="tree")  # clones and copies of trees, the faults copy
    src = _Place("src", kind="source")  # extracted tarballs
    tarball_sums = _Place("src", "tarball-sums.json")
    builds = _Place("build", kind="build", depth=2)
    packages = _Place("debian", kind="package")  # fetched Debian source packages
    apt = _Place("apt", kind="apt")
    kernel_apt = _Place("apt", "kernel")  # the apt state that fetches them
    rootfs = _Place("rootfs", kind="rootfs")
    rootfs_apt = _Place("rootfs", "apt")  # the apt state of the guest shell's sources
    rootfs_sources = _Place("rootfs", "sources")
    rootfs_build = _Place("rootfs", "build")  # where the guest shell is cross-built
    series = _Place("series", kind="series")
    ccache = _Place("ccache", kind="ccache", depth=0)
    locks = _Place("locks")
    kvm_verdict = _Place("kvm-verdict.json")
    upstream_selftests = _Place("upstream-selftests.json")  # per tarball (conftest.py)
    size_memo = _Place("size.json")  # the size when last measured (runner/prune.py)

    def tree(self, key: str) -> Path:
        """A tree the runner owns: a clone, a copy, the faults copy."""
        return self.trees / key

    def extracted(self, sha256: str) -> Path:
        """Where the tarball of this checksum is extracted."""
        return self.src / f"debian-{sha256[:12]}"

    def build_dir(self, source_key: str, build_name: str) -> Path:
        return self.builds / source_key / build_name

    def package(self, name: str) -> Path:
        """A fetched Debian source package (runner/source.py)."""
        return self.packages / name

    def guest_root(self, arch: str, key: str) -> Path:
        return self.rootfs / f"{arch}-{key}"

    def rootfs_versions(self, arch: str) -> Path:
        """Memo: the package versions of @arch's root, per apt state."""
        return self.rootfs / f"{arch}.versions"

    def series_repo(self, name: str) -> Path:
        return self.series / name

    def lock(self, name: str):
        """The exclusive lock @name (a context manager): held while the
        thing it names is made."""
        return lock.exclusive(self.locks / f"{name}.lock")

    # --- entries, and the runs that hold them ---

    def entries(self) -> Iterator[tuple[str, Path]]:
        """(kind, path) of every entry there is: directories only (memo
        files are no entry), never a symbolic link."""
        for place in _ENTRIES.values():
            level = [self.root.joinpath(*place.parts)]
            for _ in range(place.depth):
                level = [d for parent in level for d in _subdirs(parent)]
            yield from ((place.kind, d) for d in level if _is_dir(d))

    def entry_of(self, path: Path) -> Path:
        """The entry @path is in (or is)."""
        rel = Path(path).relative_to(self.root)
        place = _ENTRIES.get(rel.parts[0]) if rel.parts else None
        if place is None:
            raise ValueError(f"{path} is in no entry of the cache {self.root}")
        return self.root.joinpath(*rel.parts[:place.depth + 1])

    def use_lock(self, entry: Path) -> Path:
        """The lock file runs hold shared while they use @entry."""
        rel = self.entry_of(entry).relative_to(self.root)
        return self.locks / _HELD_DIR / f"{rel}.lock"

    def keep(self, path: Path) -> None:
        """Holds the entry of @path for as long as this process lives, so
        that `runner cache prune` never deletes it under this run; waits
        while a prune is deleting it (then it is made again).  Call it
        before the entry is made or read.  A path outside the cache (a
        test's own tree) needs no keeping."""
        try:
            held = self.use_lock(path)
        except ValueError:
            return
        if held not in _KEPT:
            _KEPT[held] = lock.shared(held)
        with contextlib.suppress(OSError):
            os.utime(held)  # its last use (runner cache)


# The folders of entries, by name.
_ENTRIES = {p.parts[0]: p for p in vars(Cache).values() if isinstance(p, _Place) and p.kind}


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(d for d in path.iterdir() if _is_dir(d))
    except OSError:  # not there (yet)
        return []
