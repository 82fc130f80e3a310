"""How `runner` ends when a command does not return a verdict: always one
line on stderr and an exit code from runner.errors, never a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

from runner.errors import EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_FAILED, EXIT_INTERNAL, \
    EXIT_INTERRUPTED, EXIT_PASSED, EXIT_TERMINATED, UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI timeout, `kill`): unwound like Ctrl-C, so that every
    cleanup a Ctrl-C runs (temporary reports, the bisect clone) runs too."""


_stdout_closed = False


def _say(text: str) -> None:
    if sys.stderr is not None:
        print(f"runner: {text}", file=sys.stderr)


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def signals() -> Iterator[None]:
    """SIGTERM raises Terminated while a command runs (main thread only);
    the closed-stdout state starts afresh."""
    global _stdout_closed
    _stdout_closed = False
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


# What an interrupted command leaves (the line exits.interrupted() says).
RESUMABLE = "the next run picks up where this one stopped"
NOTHING_HALF_WRITTEN = "no report was left half-written"


def interrupted(e: KeyboardInterrupt, kept: str = NOTHING_HALF_WRITTEN) -> int:
    """Ctrl-C or SIGTERM: what was @kept, and 130 or 143."""
    what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    _say(f"{what}; {kept}")
    return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


def _under(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except (OSError, ValueError):
        return False


def os_error(e: OSError) -> int:
    """A failed read or write: the file and the system's reason. The cache
    is worth moving only when the disk that is full holds the cache."""
    from runner.paths import cache_path

    where = f"{e.filename}: " if e.filename else ""
    hint = ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        if e.filename and _under(Path(e.filename), cache_path()):
            hint = (" (free some space, or put the cache on a larger disk with "
                    "ALLOCPROF_CACHE)")
        else:
            hint = " (free some space there, or write to another disk)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = " (check the permissions, or choose another path)"
    elif e.errno == errno.ENOTDIR:
        hint = " (a part of this path is a file, not a directory: choose another path)"
    _say(f"error: {where}{e.strerror or e}{hint}")
    return EXIT_ERROR


def stdout_gone() -> None:
    """Standard output was closed (`runner ... | head`, or `>&-`): write no
    more to it, do not complain about it at exit, and end with 141."""
    global _stdout_closed
    _stdout_closed = True
    _drop_stdout()


def _drop_stdout() -> None:
    """What is still to go to standard output goes nowhere (at exit too)."""
    if sys.stdout is None:  # closed before we started
        sys.stdout = open(os.devnull, "w")  # for the life of the process
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def stdout_failed(e: OSError, written: str = "") -> UserError:
    """Standard output could not be written (`>/dev/full`): one line that
    says so, and which reports were written all the same."""
    _drop_stdout()
    why = ("standard output is full" if e.errno in (errno.ENOSPC, errno.EDQUOT)
           else f"standard output could not be written ({e.strerror or e})")
    done = f"; the reports were written ({written})" if written else ""
    return UserError(f"{why}{done}: send it to a file on a disk with space")


def out(text: str, written: str = "") -> None:
    """A line on standard output; a closed one is noted, not an error, a
    full one is (@written: what was written before, to say so)."""
    try:
        if sys.stdout is None:
            raise BrokenPipeError(errno.EPIPE, "standard output is closed")
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()
    except OSError as e:
        raise stdout_failed(e, written) from None


def verdict(rc: int) -> int:
    """A command's exit code: 141 once standard output was closed (the
    reports were written all the same)."""
    return EXIT_BROKEN_PIPE if _stdout_closed and rc in (EXIT_PASSED, EXIT_FAILED) else rc


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
        if sys.stderr is not None:
            sys.stderr.write(text)
        where = "traceback above"
    first = (str(exc).splitlines() or [""])[0][:200]
    _say(f"internal error, a bug in the runner and not a test result: "
         f"{type(exc).__name__}: {first} ({where}; please attach it to a bug report)")
    return EXIT_INTERNAL
