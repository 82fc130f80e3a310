"""The runner's one voice: progress and messages go through PRINTER, on
standard error, so that reports on standard output stay clean and one
place decides how the runner speaks (kunit.py's kunit_printer is the
model)."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


# Set (to anything but "" or 0) for the debug lines: every host command
# the runner starts, and its time (runner/proc.py).
VERBOSE_ENV = "ALLOCPROF_VERBOSE"


class Printer:
    def __init__(self, stream: TextIO | None = None, verbose: bool | None = None) -> None:
        self._stream = stream
        self.verbose = (os.environ.get(VERBOSE_ENV, "") not in ("", "0") if verbose is None
                        else verbose)

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def info(self, text: str) -> None:
        self._write(f"runner: {text}")

    def debug(self, text: str) -> None:
        """A line for who debugs the runner (self.verbose), no one else."""
        if self.verbose:
            self._write(f"runner: {text}")

    def progress(self, what: str, done: int, expected: int | None, started: float) -> None:
        """One line of a long step: @done of @expected units so far."""
        of = f"/{expected}" if expected else ""
        self._write(f"runner: {what}: {done}{of} files built, "
                    f"{duration(time.monotonic() - started)} so far")

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # nobody is listening: the work goes on


PRINTER = Printer()
