"""Every command the runner starts on the host (but QEMU, which
runner/boot.py runs with the guest's console): told, with its time, through
the printer's debug level, and failing in one shape, a one-line UserError
that quotes the command's last words and names the fix."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from runner.errors import UserError
from runner.printer import PRINTER, duration

PROGRESS_EVERY = 30.0  # seconds between two calls of a long command's progress
TAIL_LINES = 2  # of the command's output, quoted by its error
LINE_CHARS = 200  # of each of those lines
_LOG_TAIL = 1 << 16  # bytes of a log read for its last lines


def failure(what: str, detail: str, fix: str = "",
            kind: type[UserError] = UserError) -> UserError:
    """The one shape of a failed command: what failed, what it said last,
    and the fix."""
    return kind(f"{what} failed: {detail}" + (f"; {fix}" if fix else ""))


def last_lines(text: str, count: int = TAIL_LINES) -> str:
    """The last @count non-empty lines of @text, as one line."""
    lines = [line.strip()[:LINE_CHARS] for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-count:])


def _log_tail(log: Path, start: int) -> str:
    """The end of what was written to @log from @start on."""
    try:
        with open(log, "rb") as f:
            f.seek(max(start, f.seek(0, 2) - _LOG_TAIL))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _said(p: subprocess.CompletedProcess, log: Path | None, start: int = 0) -> str:
    """What a finished command said last: its standard error, else its
    output (or what it wrote to its log from @start on)."""
    for out in (p.stderr, p.stdout, _log_tail(log, start) if log else None):
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        if out and out.strip():
            return last_lines(out)
    return f"exit {p.returncode}"


def _stop(p: subprocess.Popen) -> None:
    """Ends @p, gently first (make then stops its own jobs)."""
    if p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def run(cmd: Sequence[str | Path], *, cwd: Path | str | None = None,
        env: dict[str, str] | None = None, input: str | bytes | None = None,
        capture: bool = True, text: bool = True, check: bool = True,
        timeout: float | None = None, log: Path | None = None,
        progress: Callable[[], None] | None = None, every: float = PROGRESS_EVERY,
        what: str = "", fix: str = "", missing: str = "") -> subprocess.CompletedProcess:
    """Runs @cmd to its end and returns it, its output captured (@capture),
    or appended to @log after a "$ command" line, or else left to the
    runner's own.

    @progress is called every @every seconds while it runs; past @timeout
    it is stopped. A command that is not installed is a UserError (@missing:
    its fix), and so, with @check, is a non-zero exit: "@what failed: <its
    last lines>; @fix" (@what: the command's first words)."""
    args = [str(c) for c in cmd]
    what = what or " ".join(args[:3])
    PRINTER.debug(f"$ {shlex.join(args)}" + (f"  (in {cwd})" if cwd else ""))
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        streams: dict = {}
        said_from = 0  # where the command's own words start in @log
        if log is not None:
            out = stack.enter_context(open(log, "a"))
            out.write(f"$ {' '.join(args)}\n")
            out.flush()
            said_from = out.tell()
            streams = {"stdout": out, "stderr": subprocess.STDOUT}
        elif capture:
            streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        try:
            p = subprocess.Popen(args, cwd=cwd, env=env, text=text, **streams,
                                 stdin=subprocess.PIPE if input is not None else None)
        except FileNotFoundError as e:
            if e.filename != args[0]:
                raise  # its directory (@cwd) is not there: an OSError of its own
            raise UserError(f"{args[0]} not found: "
                            f"{missing or f'install it (apt-get install {args[0]})'}") from None
        stack.callback(_stop, p)
        piped = streams.get("stdout") == subprocess.PIPE
        if input is not None and not piped:
            # communicate() would wait for such a command without a timeout.
            with contextlib.suppress(BrokenPipeError):
                p.stdin.write(input)
            with contextlib.suppress(BrokenPipeError):
                p.stdin.close()
            input = None
        deadline = None if timeout is None else started + timeout
        stdout = stderr = None
        while True:
            wait = every if progress else None
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                wait = left if wait is None else min(wait, left)
            try:
                if piped:
                    stdout, stderr = p.communicate(input, timeout=wait)
                else:
                    p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                input = None  # sent: communicate() again takes none
                if deadline is not None and time.monotonic() >= deadline:
                    PRINTER.debug(f"{what}: stopped after {duration(timeout)}")
                    raise UserError(f"{what} took over {duration(timeout)}"
                                    + (f": {fix}" if fix else "")) from None
                if progress:
                    progress()
    done = subprocess.CompletedProcess(args, p.returncode, stdout, stderr)
    PRINTER.debug(f"{what}: exit {p.returncode} after {time.monotonic() - started:.2f}s")
    if check and p.returncode != 0:
        raise failure(what, _said(done, log, said_from), fix)
    return done
