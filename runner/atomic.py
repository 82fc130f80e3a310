"""Reports written whole or not at all: a temporary file in the same
directory, renamed over the target once complete."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from runner.paths import make_dir


# An open file descriptor by name: /dev/stdout may lead to a regular file
# that the shell opened (maybe to append), which must be written through it.
# Only these names: any other path (/proc/self/cwd/r.xml, /dev/shm/r.json)
# is told by the type of the file it leads to.
_FD_NAME = re.compile(r"/dev/(?:stdout|stderr|stdin|fd/\d+)|/proc/(?:self|thread-self|\d+)"
                      r"(?:/task/\d+)?/fd/\d+")


def _is_special(path: Path) -> bool:
    """A FIFO, a device, a socket, or a file descriptor by name: written in
    place, never replaced by a rename. A regular file, wherever it is, is
    replaced whole (os.stat decides, not the path)."""
    if _FD_NAME.fullmatch(os.path.abspath(path)):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def open_for_write(path: Path) -> Iterator[TextIO]:
    """A text stream whose content replaces `path` only when the block ends
    without an error (or an interrupt). An OSError names `path`, not the
    temporary file."""
    path = Path(path)
    try:
        if _is_special(path):
            with open(path, "w", encoding="utf-8") as f:
                yield f
            return
        make_dir(path.parent, f"{path}: the directory", "write the report elsewhere")
        target = Path(os.path.realpath(path))  # a link to a report stays a link
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with open(fd, "w", encoding="utf-8") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        if e.filename == str(path):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
