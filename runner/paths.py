"""Where the runner keeps its caches: outside the clone, so a fresh clone
reuses extracted sources, build trees and ccache from earlier runs."""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import time
from pathlib import Path

from runner.errors import UserError

CACHE_ENV = "ALLOCPROF_CACHE"
_CACHE_FIX = f"point {CACHE_ENV} (or --cache-dir) at a writable directory"


def cache_path(override: str | None = None) -> Path:
    """--cache-dir wins, then $ALLOCPROF_CACHE, then $XDG_CACHE_HOME;
    nothing is created."""
    if override:
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(xdg) / "allocprof-ktest"
    return root.expanduser().resolve()


def _file_on_the_way(path: Path) -> Path | None:
    """The first of @path and its parents that exists and is not a directory."""
    for p in reversed((path, *path.parents)):
        if p.exists() and not p.is_dir():
            return p
        if not p.exists():
            return None
    return None


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def check_dir(path: Path, what: str, fix: str) -> None:
    """Whether @path is or can be made a directory we write to, without
    making it: a one-line UserError saying what is in the way, if not."""
    blocker = _file_on_the_way(path)
    if blocker is not None:
        where = "" if blocker == path else f": {blocker} is a file"
        raise UserError(f"{what} {path}{where or ' is a file'}, not a directory: {fix}")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not _writable(existing):
        raise UserError(f"{what} {path} cannot be written ({existing} is read-only "
                        f"to this user): {fix}")


def make_dir(path: Path, what: str, fix: str) -> Path:
    """@path as a directory we can write to; a one-line UserError naming
    what is in the way and @fix, if it cannot be."""
    check_dir(path, what, fix)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. /proc, a read-only mount
        raise UserError(f"{what} {path} cannot be made ({e.strerror}): {fix}") from None
    if not _writable(path):
        raise UserError(f"{what} {path} cannot be written (read-only): {fix}")
    return path


def cache_root(override: str | None = None) -> Path:
    """The cache directory (see cache_path), made if needed."""
    return make_dir(cache_path(override), "the cache", _CACHE_FIX)


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def ccache_dir(cache: Path) -> Path:
    return cache / "ccache"


def _drop_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # only ever removes an empty directory


def new_run_dir(parent: str | Path, prefix: str = "") -> Path:
    """A new directory for one run's results, named by its start time and
    made atomically: two runs started in the same second never share one.
    If it is still empty when the process ends (the command was refused
    before it wrote anything), it is removed."""
    parent = make_dir(Path(parent).expanduser().resolve(), "the results directory",
                      "give --results-dir a writable directory")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(tempfile.mkdtemp(prefix=f"{prefix}{stamp}-", dir=parent))
    atexit.register(_drop_if_empty, run)
    return run
