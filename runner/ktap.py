"""A streaming KTAP v1 / TAP 13-14 parser for messy kernel consoles.

It reads a console line by line and builds a tree of TestResult.  Nesting
is by indentation: KUnit indents subtests by four spaces, kselftest's
runner prefixes nested output with "# ".  Lines that belong to no test
level (printk noise) go to the log of the innermost open test.  Nothing
declared is lost: a plan that promises more results than arrive, or output
that ends inside a subtest, yields CRASHED results with the reason.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from runner.results import Status, TestResult

# printk prefixes: "<6>", "[    2.017792] ", "[    2.017792][    T1] ".
_PRINTK = re.compile(
    r"^(?:<\d+>)?(?:\[\s*(?P<ts>\d+\.\d+)\](?:\[\s*[TC]\d+\])?\s?)?"
)
_HEADER = re.compile(r"^(?P<ind>(?:[ \t]|# )*)K?TAP version (?P<v>\d+)\s*$")
_HEADER_ANYWHERE = re.compile(r"K?TAP version \d+\s*$")
_PLAN = re.compile(r"^(?P<ind>\s*)1\.\.(?P<n>\d+)\b")
_RESULT = re.compile(
    r"^(?P<ind>\s*)(?P<not>not )?ok(?:\s+(?P<num>\d+))?(?:\s+-)?\s*(?P<rest>.*)$"
)
_SUBTEST = re.compile(r"^(?P<ind>\s*)# Subtest: (?P<name>.*?)\s*$")
_DIRECTIVE = re.compile(
    r"(?:^|\s)#\s*(?P<d>SKIP|TODO|XFAIL|TIMEOUT|error)\b[:\s]*(?P<why>.*)$",
    re.IGNORECASE,
)
_BAIL = re.compile(r"^\s*Bail out!\s*(?P<why>.*)$")
_CRASH = re.compile(
    r"Kernel panic - not syncing|BUG: |Oops: |Oops\[|general protection fault"
    r"|Unable to handle kernel|kernel BUG at|Internal error: "
)


def _is_hot(line: str) -> bool:
    """Worth a closer look? Plain substring tests: faster than a regex
    on the noise that makes up most of a console."""
    return ("ok" in line or "#" in line or "1.." in line or "TAP version" in line
            or "Bail out" in line or "BUG" in line or "Oops" in line or "panic" in line
            or "fault" in line or "Unable to handle" in line or "Internal error" in line)


_CALLER = re.compile(r"^\[\s*[TC]\d+\]\s?")

LOG_LIMIT = 400  # lines kept per test log (head and tail halves)
DIAG_LIMIT = 400  # diagnostic lines kept per test
# Log lines kept over a whole parse; past it, each test keeps only a short
# tail, so memory stays bounded however long the console is.
LOG_BUDGET = 250_000
SHORT_LOG = 16


class Budget:
    def __init__(self, lines: int = LOG_BUDGET) -> None:
        self.left = lines

    def log(self) -> BoundedLines:
        return BoundedLines(LOG_LIMIT if self.left > 0 else SHORT_LOG, self)
OOPS_LINES = 80  # lines after a crash marker attached to the running test


class BoundedLines:
    """Keeps the first and last lines of a slice: memory stays bounded."""

    def __init__(self, limit: int, budget: Budget | None = None) -> None:
        self.head: list[str] = []
        self.half = limit // 2
        self.tail: deque[str] = deque(maxlen=self.half)
        self.limit = limit
        self.dropped = 0
        self.budget = budget

    def append(self, line: str) -> None:
        if self.budget is not None:
            self.budget.left -= 1
        if len(self.head) < self.limit // 2:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.dropped += 1
        self.tail.append(line)

    def lines(self) -> list[str]:
        gap = [f"[... {self.dropped} lines omitted ...]"] if self.dropped else []
        return self.head + gap + list(self.tail)

    def __bool__(self) -> bool:
        return bool(self.head)


@dataclass
class _Level:
    """One open test list: the subtests of a test still awaiting its result."""

    prefix: str  # cumulative indentation of this level's lines
    budget: Budget = field(default_factory=Budget)
    name: str = ""  # from "# Subtest:"
    plan: int | None = None
    results: list[TestResult] = field(default_factory=list)
    diag: BoundedLines = field(default_factory=lambda: BoundedLines(DIAG_LIMIT))
    log: BoundedLines = field(default_factory=lambda: BoundedLines(LOG_LIMIT))
    own_log: BoundedLines = field(default_factory=lambda: BoundedLines(LOG_LIMIT))
    start_ts: str | None = None
    bailed: str | None = None

    def __post_init__(self) -> None:
        self.log = self.budget.log()

    def reset_pending(self) -> None:
        self.diag = BoundedLines(DIAG_LIMIT)
        self.log = self.budget.log()
        self.start_ts = None


@dataclass
class ParseOutput:
    tests: list[TestResult]
    found_ktap: bool
    crash: list[str]  # first crash text seen, if any
    tail: list[str]  # last console lines, for failure messages


def _parse_result_rest(rest: str) -> tuple[str, str, str]:
    """Split "name # DIRECTIVE reason" into (name, directive, reason)."""
    m = _DIRECTIVE.search(rest)
    if not m:
        # A trailing comment that is not a directive ("# exit=1") is kept
        # as the reason, out of the name.
        name, _, comment = rest.partition(" # ")
        return name.strip(), "", comment.strip()
    name = rest[: m.start()].strip()
    directive = m.group("d").upper() if m.group("d") != "error" else "error"
    reason = m.group("why").strip()
    if not name:
        # kselftest's directive-first lines: the reason describes the test.
        name = reason or directive.lower()
    return name, directive, reason


def _status(ok: bool, directive: str) -> Status:
    d = directive.upper()
    if d == "SKIP":
        return Status.SKIP
    if d == "TODO":
        return Status.TODO
    if d == "XFAIL":
        return Status.XFAIL
    if d == "TIMEOUT":
        return Status.TIMEOUT
    if d == "ERROR":
        return Status.ERROR
    return Status.PASS if ok else Status.FAIL


class Parser:
    """Feed lines with feed(); finish() returns the tree."""

    def __init__(self) -> None:
        self.roots: list[TestResult] = []
        self.stack: list[_Level] = []
        self.doc_prefix = ""
        self.found = False
        self.crash: list[str] = []
        self.oops_left = 0
        self.tail: deque[str] = deque(maxlen=60)
        self.budget = Budget()

    # -- line handling -------------------------------------------------
    def feed(self, raw: str) -> None:
        raw = raw.rstrip("\r\n")
        self.tail.append(raw)
        ts = None
        line = raw
        # printk prefixes, by hand on the common "[ stamp] " form: this is
        # the hot path of a large console. The stamp stays text, turned into
        # a float only when a duration needs it.
        close = 0
        if raw[:1] == "[":
            close = raw.find("] ", 1, 24)
            if close > 1 and raw[close - 1].isdigit():
                line = raw[close + 2:]
                if line[:1] == "[" and _CALLER.match(line):
                    line = line[_CALLER.match(line).end():]
            else:
                close = 0
        elif raw[:1] == "<":
            m = _PRINTK.match(raw)
            if m and m.end():
                ts = m.group("ts")
                line = raw[m.end():]
        if close and not self.oops_left and self.stack and not line[:1].isspace() \
                and not _is_hot(line):
            # Noise inside a test: only its log slice needs it.
            lv = self.stack[-1]
            if lv.start_ts is None:
                lv.start_ts = raw[1:close]
            log = lv.log
            if log.budget is not None:
                log.budget.left -= 1
            if len(log.head) < log.half:
                log.head.append(line)
            else:
                if len(log.tail) == log.half:
                    log.dropped += 1
                log.tail.append(line)
            return
        if close:
            ts = raw[1:close].strip()
        if self.oops_left:
            self.oops_left -= 1
            self._attach_crash(line)
            return
        if not _is_hot(line) and (not self.stack or not line[:1].isspace()):
            self._noise(line, ts)  # the inlined path above covers most lines
            return
        if _CRASH.search(line):
            self._on_crash(line)
            return
        if not self.stack:
            if "TAP version" not in line:
                return
        if self.doc_prefix:
            if not line.startswith(self.doc_prefix):
                if _HEADER_ANYWHERE.search(line):
                    self._header_with_prefix(line, ts)
                else:
                    self._noise(line, ts)
                return
            line = line[len(self.doc_prefix):]
        self._structured(line, ts)

    def _header_with_prefix(self, line: str, ts: str | None) -> None:
        m = _HEADER_ANYWHERE.search(line)
        assert m
        pre = line[: m.start()]
        stripped = pre.rstrip(" \t#")
        if stripped and not _HEADER.match(line):
            # "kernel: KTAP version 1": a foreign per-line prefix.
            self._close_document()
            self.doc_prefix = pre
            self._open_root(ts)
            return
        self._structured(line, ts)

    def _find_level(self, line: str) -> int:
        for i in range(len(self.stack) - 1, -1, -1):
            if line.startswith(self.stack[i].prefix):
                return i
        return -1

    def _structured(self, line: str, ts: str | None) -> None:
        hm = _HEADER.match(line)
        if not self.stack:
            if hm and not hm.group("ind").strip():
                self._open_root(ts, hm.group("ind"))
                return
            if _HEADER_ANYWHERE.search(line):
                self._header_with_prefix(line, ts)
                return
            self._noise(line, ts)
            return
        i = self._find_level(line)
        if i < 0:
            self._noise(line, ts)
            return
        level = self.stack[i]
        content = line[len(level.prefix):]
        if hm:
            m = _HEADER.match(content)
            assert m
            ind = m.group("ind")
            if not ind:
                if i == 0 and (level.results or level.plan is not None):
                    # A new document at the top: e.g. selftests after KUnit.
                    self._close_document()
                    self._open_root(ts, self.stack[0].prefix if self.stack else "")
                return
            self._open(i, level.prefix + ind, ts)
            return
        m = _SUBTEST.match(content)
        if m:
            if m.group("ind"):
                lv = self._open_if_needed(i, level.prefix + m.group("ind"), ts)
            else:
                lv = level
            if not lv.name and not lv.results:
                lv.name = m.group("name")
            else:
                lv.diag.append(content.strip())
            lv.own_log.append(line)
            return
        m = _PLAN.match(content)
        if m:
            lv = level
            if m.group("ind"):
                lv = self._open_if_needed(i, level.prefix + m.group("ind"), ts)
            if lv.plan is None and not lv.results:
                lv.plan = int(m.group("n"))
                lv.own_log.append(line)
                return
        m = _RESULT.match(content)
        if m and (m.group("num") or m.group("rest")) is not None:
            lv_index = i
            if m.group("ind"):
                self._open_if_needed(i, level.prefix + m.group("ind"), ts)
                lv_index = len(self.stack) - 1
            self._result(lv_index, m, line, ts)
            return
        m = _BAIL.match(content)
        if m:
            self._bail(i, m.group("why"), line)
            return
        # A diagnostic or any other line at this level's indentation.
        if i == len(self.stack) - 1:
            if not level.results and level.plan is None and level is not self.stack[0]:
                level.own_log.append(line)  # subtest metadata, e.g. "# module:"
                return
            self._pending(level, line, ts, diagnostic=True, text=content.rstrip())
        else:
            self._noise(line, ts)

    # -- levels ----------------------------------------------------------
    def _open_root(self, ts: str | None, prefix: str = "") -> None:
        self.found = True
        self.stack = [_Level(prefix=prefix, budget=self.budget, start_ts=ts)]

    def _open(self, parent: int, prefix: str, ts: str | None) -> _Level:
        # Levels deeper than the parent that are still open belong to a
        # test that never reported: close them first.
        while len(self.stack) > parent + 1:
            self._close_unreported(len(self.stack) - 1)
        lv = _Level(prefix=prefix, budget=self.budget, start_ts=ts)
        self.stack.append(lv)
        return lv

    def _open_if_needed(self, parent: int, prefix: str, ts: str | None) -> _Level:
        if len(self.stack) > parent + 1 and self.stack[parent + 1].prefix == prefix:
            return self.stack[parent + 1]
        return self._open(parent, prefix, ts)

    def _pending(self, lv: _Level, line: str, ts: str | None, diagnostic: bool,
                 text: str = "") -> None:
        if lv.start_ts is None:
            lv.start_ts = ts
        lv.log.append(line)
        if diagnostic:
            lv.diag.append(text or line)

    def _noise(self, line: str, ts: str | None) -> None:
        if self.stack:
            self._pending(self.stack[-1], line, ts, diagnostic=False)

    def _result(self, i: int, m: re.Match, line: str, ts: str | None) -> None:
        # Deeper levels are the children of this result.
        children: list[TestResult] = []
        child_level: _Level | None = None
        while len(self.stack) > i + 1:
            if len(self.stack) == i + 2:
                child_level = self.stack[-1]
                children = self._finish_level(child_level)
                self.stack.pop()
            else:
                self._close_unreported(len(self.stack) - 1)
        lv = self.stack[i]
        name, directive, reason = _parse_result_rest(m.group("rest") or "")
        if not name and child_level is not None:
            name = child_level.name
        ok = not m.group("not")
        status = _status(ok, directive)
        log = lv.log.lines() + [line]
        diagnostics = lv.diag.lines()
        if child_level is not None:
            log = child_level.own_log.lines() + log
            if child_level.bailed is not None:
                diagnostics.append(f"Bail out! {child_level.bailed}")
        start = lv.start_ts if lv.start_ts is not None else (
            child_level.start_ts if child_level else None)
        duration = None
        if ts is not None and start is not None:
            try:
                duration = round(max(0.0, float(ts) - float(start)), 6)
            except ValueError:
                duration = None
        if ok and status == Status.PASS and any(
            c.status == Status.CRASHED for c in children
        ):
            status = Status.CRASHED
            reason = reason or "a subtest never reported"
        result = TestResult(
            name=name or f"unnamed-{len(lv.results) + 1}",
            status=status,
            number=int(m.group("num")) if m.group("num") else None,
            directive=directive,
            reason=reason,
            diagnostics=diagnostics,
            log=log,
            duration=duration,
            children=children,
        )
        lv.results.append(result)
        lv.reset_pending()
        lv.start_ts = ts

    def _bail(self, i: int, why: str, line: str) -> None:
        while len(self.stack) > i + 1:
            self._close_unreported(len(self.stack) - 1)
        lv = self.stack[i]
        lv.bailed = why or "(no reason given)"
        lv.own_log.append(line)

    def _finish_level(self, lv: _Level) -> list[TestResult]:
        """The level's results, padded to its plan with missing tests."""
        out = list(lv.results)
        reason = self._missing_reason(lv)
        if lv.plan is not None and len(out) < lv.plan:
            first = True
            for n in range(len(out) + 1, lv.plan + 1):
                diag = lv.diag.lines() if first else []
                out.append(
                    TestResult(
                        name=f"missing-{n}",
                        status=Status.ERROR if lv.bailed is not None else Status.CRASHED,
                        number=n,
                        reason=reason,
                        diagnostics=diag,
                        log=lv.log.lines() if first else [],
                    )
                )
                first = False
        elif lv.plan is None and lv.diag and self.crash and not lv.bailed:
            # A crash at a level without a plan: a test was running there,
            # report it rather than drop its oops. (A crash after a met plan
            # belongs to no test; the console checks report it.)
            out.append(
                TestResult(
                    name=f"missing-{len(out) + 1}",
                    status=Status.CRASHED,
                    reason=reason,
                    diagnostics=lv.diag.lines(),
                    log=lv.log.lines(),
                )
            )
        return out

    def _missing_reason(self, lv: _Level) -> str:
        if lv.bailed is not None:
            return f"Bail out! {lv.bailed}"
        if self.crash:
            return f"kernel crashed: {self.crash[0].strip()}"
        return "no result: output ended or the test hung"

    def _close_unreported(self, index: int) -> None:
        """Close a level whose parent never printed its result line."""
        lv = self.stack[index]
        children = self._finish_level(lv)
        self.stack.pop()
        parent = self.stack[index - 1] if index > 0 else None
        result = TestResult(
            name=lv.name or "unnamed",
            status=Status.CRASHED,
            reason=self._missing_reason(lv),
            diagnostics=(parent.diag.lines() if parent else []),
            log=lv.own_log.lines(),
            children=children,
        )
        if parent is not None:
            parent.results.append(result)
            parent.reset_pending()
        else:
            self.roots.append(result)

    def _close_document(self) -> None:
        while len(self.stack) > 1:
            self._close_unreported(len(self.stack) - 1)
        if self.stack:
            self.roots.extend(self._finish_level(self.stack[0]))
            self.stack = []

    # -- crashes -----------------------------------------------------------
    def _on_crash(self, line: str) -> None:
        if not self.crash:
            self.crash = [line]
        self.oops_left = OOPS_LINES
        self._attach_crash(line)

    def _attach_crash(self, line: str) -> None:
        if self.stack:
            lv = self.stack[-1]
            lv.diag.append(line)
            lv.log.append(line)
        if len(self.crash) < OOPS_LINES:
            self.crash.append(line) if line not in self.crash[:1] else None
        if "end Kernel panic" in line or "---[ end trace" in line:
            self.oops_left = 0

    def finish(self) -> ParseOutput:
        self._close_document()
        return ParseOutput(self.roots, self.found, self.crash, list(self.tail))


def iter_lines(stream: BinaryIO | Iterable[bytes]) -> Iterator[str]:
    """Decode line by line; bytes that are not UTF-8 are replaced."""
    for raw in stream:
        yield raw.decode("utf-8", errors="replace")


def iter_file_lines(f: BinaryIO, chunk: int = 1 << 20) -> Iterator[str]:
    """Lines of a binary file, decoded a megabyte at a time (faster than
    per line); a character split between chunks is decoded whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    while True:
        block = f.read(chunk)
        text = rest + decoder.decode(block, final=not block)
        if not block:
            if text:
                yield from text.split("\n")
            return
        lines = text.split("\n")
        rest = lines.pop()
        yield from lines


def parse_lines(lines: Iterable[str]) -> ParseOutput:
    p = Parser()
    feed = p.feed
    for line in lines:
        feed(line)
    return p.finish()


def parse_text(text: str) -> ParseOutput:
    return parse_lines(text.splitlines())


def parse_file(path: str) -> ParseOutput:
    with open(path, "rb") as f:
        return parse_lines(iter_file_lines(f))
