"""Cross-process locks (flock): exclusive ones, so that parallel pytest
workers and concurrent runs never build or prepare the same thing at
once; shared ones, held by a run on what it uses, so that pruning the
cache never deletes it (runner/cache.py)."""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def _open(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def shared(path: Path) -> int:
    """A shared lock on @path, waiting for an exclusive holder to let go;
    held until the returned descriptor is closed (or the process ends)."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def exclusive_now(path: Path | int) -> Iterator[bool]:
    """An exclusive lock on @path (a lock file, or an open descriptor of a
    directory) if nobody holds any lock on it: True while held; False at
    once, without waiting, if someone does."""
    fd = path if isinstance(path, int) else _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if not isinstance(path, int):
            os.close(fd)
