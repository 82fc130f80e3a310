"""How `runner` ends when a command does not return a verdict: always one
line on stderr and an exit code from runner.errors, never a traceback."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import traceback

from runner.errors import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERNAL


def _say(text: str) -> None:
    print(f"runner: {text}", file=sys.stderr)


def os_error(e: OSError) -> int:
    """A failed read or write: the file and the system's reason. The cache
    is worth moving only when the disk is full."""
    where = f"{e.filename}: " if e.filename else ""
    hint = ""
    if e.errno == errno.ENOSPC:
        hint = " (free some space, or put the cache on a larger disk with ALLOCPROF_CACHE)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (check the permissions, or choose another path)"
    _say(f"error: {where}{e.strerror or e}{hint}")
    return EXIT_ERROR


def stdout_gone() -> None:
    """Standard output was closed (`runner ... | head`): write no more to
    it, and do not complain about it at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def broken_pipe() -> int:
    stdout_gone()
    return EXIT_BROKEN_PIPE


def internal_error(exc: BaseException) -> int:
    """A bug in the runner, not a verdict: one line, and the traceback in a
    file to attach to a bug report."""
    text = "".join(traceback.format_exception(exc))
    try:
        fd, path = tempfile.mkstemp(prefix="runner-traceback-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        where = f"traceback saved in {path}"
    except OSError:
        sys.stderr.write(text)
        where = "traceback above"
    first = (str(exc).splitlines() or [""])[0][:200]
    _say(f"internal error, a bug in the runner and not a test result: "
         f"{type(exc).__name__}: {first} ({where}; please attach it to a bug report)")
    return EXIT_INTERNAL
