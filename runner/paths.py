"""Where the runner keeps its caches (outside the clone, so a fresh clone
reuses extracted sources, build trees and ccache from earlier runs; the
places in it: runner/cache.py) and its runs' results (the last
KEEP_RUNS run directories of each command)."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from runner.errors import UserError
from runner.lock import exclusive_now
from runner.printer import PRINTER

CACHE_ENV = "ALLOCPROF_CACHE"
_CACHE_FIX = f"point {CACHE_ENV} (or --cache-dir) at a writable directory"
# Run directories kept in a results directory, per command (the newest).
KEEP_RUNS = 10
KEEP_RUNS_ENV = "ALLOCPROF_KEEP_RUNS"
# A run directory as new_run_dir() names it: "[<command>-]<date>-<time>-"
# and mkdtemp's 8 characters.
_RUN_DIR = re.compile(r"(?P<prefix>[a-z]+-)?(?P<stamp>\d{8}-\d{6})-[a-z0-9_]{8}")
# This process's run directories, held (a shared flock) while it lives.
_HELD_RUNS: list[int] = []


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


def _drop_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()  # only ever removes an empty directory


def keep_runs() -> int:
    """How many run directories of a command a results directory keeps
    ($ALLOCPROF_KEEP_RUNS, else KEEP_RUNS; 0 keeps them all)."""
    text = os.environ.get(KEEP_RUNS_ENV, "").strip()
    if not text:
        return KEEP_RUNS
    if not text.isdigit():
        raise UserError(f"{KEEP_RUNS_ENV}={text[:30]} is not a number of runs: set it to a "
                        f"whole number (0 keeps every run, {KEEP_RUNS} is the default)")
    return int(text)


def run_dirs(parent: Path, prefix: str | None = None) -> list[Path]:
    """The run directories in @parent (of the command of @prefix, "" for
    runner run, None for all), newest first; nothing else that is there."""
    try:
        found = [(m, d) for d in parent.iterdir()
                 if (m := _RUN_DIR.fullmatch(d.name)) and d.is_dir() and not d.is_symlink()]
    except OSError:
        return []
    mine = [(m.group("stamp"), d) for m, d in found
            if prefix is None or (m.group("prefix") or "") == prefix]
    return [d for _, d in sorted(mine, key=lambda sd: (sd[0], sd[1].name), reverse=True)]


def drop_old_runs(parent: Path, prefix: str, keep: int, current: Path) -> list[Path]:
    """Deletes the run directories of @prefix's command in @parent but the
    newest @keep (@current among them), never @current nor one that a run
    still holds; returns those deleted."""
    if keep <= 0:
        return []
    older = [d for d in run_dirs(parent, prefix) if d != current][keep - 1:]
    dropped = []
    for d in older:
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or not a directory any more
        try:
            with exclusive_now(fd) as free:
                if free:  # no run of it is still going
                    shutil.rmtree(d, ignore_errors=True)
                    dropped.append(d)
        finally:
            os.close(fd)
    if dropped:
        PRINTER.info(f"removed {len(dropped)} old run directories from {parent} (the newest "
                     f"{keep} of each command are kept; {KEEP_RUNS_ENV}=N keeps N, 0 all)")
    return dropped


def new_run_dir(parent: str | Path, prefix: str = "") -> Path:
    """A new directory for one run's results, named by its start time and
    made atomically: two runs started in the same second never share one.
    If it is still empty when the process ends (the command was refused
    before it wrote anything), it is removed.  It is held while this
    process lives, and the oldest run directories of its command beyond
    keep_runs() are deleted."""
    keep = keep_runs()
    parent = make_dir(Path(parent).expanduser().resolve(), "the results directory",
                      "give --results-dir a writable directory")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = Path(tempfile.mkdtemp(prefix=f"{prefix}{stamp}-", dir=parent))
    atexit.register(_drop_if_empty, run)
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _HELD_RUNS.append(fd)
    drop_old_runs(parent, prefix, keep, run)
    return run
