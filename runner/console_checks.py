"""Checks on a whole console, declared in kernel/console-checks.txt: the
kernel must stay healthy and quiet outside the tests that provoke it.

A test that provokes a message on purpose opens a window for one check
and for the lines it expects (EXEMPTIONS): any other check, and any other
line of that check, still counts there.  Nothing exempts a crash."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner import fit
from runner.guest import MARK as _GUEST_MARK
from runner.paths import project_root
from runner.results import Status, TestResult

SUITE = "console"
# A diagnostic line carries its warning's place and first frames:
#   "<line> | at <file:line> <function> | trace: f1 <- f2 <- f3"
CONTEXT_LINES = 60  # how far after a line its WARNING and trace are looked for
TRACE_FRAMES = 3
# Lines kept per check; past it one line says how many more there were (and,
# being no kernel message, is explained by no known issue).
MAX_LINES = 10_000
_SUBTEST = re.compile(r"# Subtest: (\S+)")
_SUITE_END = re.compile(r"^(?:\[[^\]]*\]\s*)?(?:not )?ok \d+ (\S+)")
_WARNING_AT = re.compile(r"WARNING: CPU: \d+ PID: \d+ at (\S+) (\S+)")
_FRAME = re.compile(r"^(?:\[[^\]]*\]\s*)?\s+(?!\?)([A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+)")
_TRACE_END = re.compile(r"---\[ end trace|^(?:\[[^\]]*\]\s*)?\s*</TASK>")


@dataclass(frozen=True)
class Check:
    name: str
    pattern: re.Pattern
    why: str


@dataclass(frozen=True)
class Exemption:
    """Inside the window of @suite (a KUnit suite) or @selftest (a guest
    program), lines of @check that fullmatch @lines (after the printk
    stamp) are expected: that test provokes them."""

    check: str
    lines: re.Pattern
    suite: str = ""
    selftest: str = ""


EXEMPTIONS = (
    # The DEBUG suite trips each of the four checks once, on purpose.
    Exemption("no_unexpected_alloc_tag_warnings",
              re.compile(r"alloc_tag was not cleared \(got tag for \S+\)|alloc_tag was not set|"
                         r"current->alloc_tag not set|current->alloc_tag was changed:?"),
              suite="alloc_tag_debug"),
    # The leaking helper module, unloaded on purpose (6.x warns per tag).
    Exemption("no_unload_leak_warnings_outside_module_tests",
              re.compile(r"\S+:\d+ module alloc_tag_test_mod func:\S+ has \d+ allocated at "
                         r"module unload"),
              selftest="module_unload_test"),
)
_STAMP = re.compile(r"^\[[^\]]*\]\s*")


def checks(path: Path | None = None) -> list[Check]:
    out = []
    for line in (path or project_root() / "kernel" / "console-checks.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rx, why = (part.strip() for part in line.split(" | ", 2))
        out.append(Check(name, re.compile(rx), why))
    return out


def names(path: Path | None = None) -> list[str]:
    """Every check's name: the file's, then those the runner computes
    (runner/fit.py's, which holds the boot to a prediction of its build)."""
    return [c.name for c in checks(path)] + [fit.CHECK]


class _Found:
    """The lines one check found, each completed by its warning's context."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.more = 0
        self.open: list[list] = []  # [index, lines left, at, frames, in trace]

    def add(self, line: str) -> None:
        if len(self.lines) >= MAX_LINES:
            self.more += 1
            return
        self.lines.append(line)
        self.open.append([len(self.lines) - 1, CONTEXT_LINES, "", [], False])

    def follow(self, line: str) -> None:
        for ctx in self.open:
            ctx[1] -= 1
            if not ctx[2] and (m := _WARNING_AT.search(line)):
                ctx[2] = f"{m.group(1)} {m.group(2)}"
            if re.search(r"Call [Tt]race:", line):
                ctx[4] = True
            elif ctx[4] and len(ctx[3]) < TRACE_FRAMES and (f := _FRAME.match(line)):
                ctx[3].append(f.group(1))
            if _TRACE_END.search(line):
                ctx[1] = 0
        for ctx in [c for c in self.open if c[1] <= 0]:
            self._close(ctx)

    def _close(self, ctx: list) -> None:
        self.open.remove(ctx)
        index, _, at, frames, _ = ctx
        if at or frames:
            self.lines[index] += f" | at {at or '-'} | trace: {' <- '.join(frames) or '-'}"

    def finish(self) -> list[str]:
        for ctx in list(self.open):
            self._close(ctx)
        if self.more:
            self.lines.append(f"(and {self.more} more lines)")
        return self.lines


def _exempt(check: str, line: str, suite: str | None, selftest: str | None) -> bool:
    text = _STAMP.sub("", line)
    return any(e.check == check and e.lines.fullmatch(text) and
               ((e.suite and e.suite == suite) or (e.selftest and e.selftest == selftest))
               for e in EXEMPTIONS)


def run(console: Path, fit_exp: fit.Expectation | None = None) -> TestResult:
    """@fit_exp: what runner/fit.py expects of this boot; None for a
    console read without its build."""
    all_checks = checks()
    fit_lines: list[str] = []
    found = {c.name: _Found() for c in all_checks}
    suite = selftest = None  # the windows the line is in
    with open(console, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip()
            if _GUEST_MARK in line and " left vm.mem_profiling " not in line:
                # A step of guest.sh: a selftest's window opens or closes.
                selftest = line.rsplit(" ", 1)[-1] if "running selftest " in line else None
            if (m := _SUBTEST.search(line)) and suite is None:
                suite = m.group(1)
            elif suite and (e := _SUITE_END.match(line)) and e.group(1) == suite:
                suite = None
            if fit.wanted(line) and len(fit_lines) < MAX_LINES:
                fit_lines.append(line)
            for c in all_checks:
                found[c.name].follow(line)
                if c.pattern.search(line) and not _exempt(c.name, line, suite, selftest):
                    found[c.name].add(line)
    children = []
    for c in all_checks:
        bad = found[c.name].finish()
        children.append(TestResult(
            name=c.name, status=Status.FAIL if bad else Status.PASS,
            reason=f"{len(bad)} console line(s): {c.why}" if bad else "",
            diagnostics=bad))
    children.append(fit.verdict(fit_exp or fit.Expectation(
        skip="no build to hold this console to: it was read on its own"), fit_lines))
    # Only a container: its checks carry the verdicts (and may become
    # expected failures later, see known_issues).
    return TestResult(name=SUITE, status=Status.PASS, children=children)
