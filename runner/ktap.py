"""A streaming KTAP v1 / TAP 13-14 parser for messy kernel consoles.

It reads a console line by line and builds a tree of TestResult.  Nesting
is by indentation: KUnit indents subtests by four spaces, kselftest's
runner prefixes nested output with "# ".  Lines that belong to no test
level (printk noise) go to the log of the innermost open test.  Nothing
declared is lost: a plan that promises more results than arrive, or output
that ends inside a subtest, yields CRASHED results with the reason.

Hostile input is bounded: a line keeps its first LINE_LIMIT characters,
nesting stops at MAX_DEPTH, a plan's missing tests are listed up to
MISSING_LIMIT and summed up after that, and past RESULT_BUDGET results a
level only counts its results.  Memory follows the input, never the plan.

The parts: Parser reads the console (printk prefixes, noise, crashes);
classify() tells what a KTAP line is; _Tree builds the levels and the tree
from the classified lines; each level's _Plan keeps its plan and results,
and lists what the plan declared but never came.
"""

from __future__ import annotations

import codecs
import enum
import gzip
import lzma
import math
import re
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from runner.errors import UserError
from runner.results import MAX_DEPTH, Status, TestResult

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
# No ".*?\s*$": on a long line of spaces it backtracks quadratically.
_SUBTEST = re.compile(r"^(?P<ind>\s*)# Subtest: (?P<name>.*)")
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
# tail, so memory stays bounded however long the console is (100,000: a
# 100 MiB console parses with both reports in 81 MiB; 250,000 took 99).
LOG_BUDGET = 100_000
SHORT_LOG = 16
LINE_LIMIT = 4096  # characters kept of one line; the rest is cut with a marker
RESULT_BUDGET = 100_000  # results kept over a parse; past it, only counted
MISSING_LIMIT = 100  # missing tests listed one by one per level, then summed up
MISSING_BUDGET = 10_000  # the same over a whole parse
NUMBER_LIMIT = 10**15  # test numbers from here on are not numbers (JSON-safe)
OOPS_LINES = 80  # lines after a crash marker attached to the running test


class Budget:
    """What one parse may keep, whatever the input claims."""

    def __init__(self, lines: int = LOG_BUDGET) -> None:
        self.left = lines
        self.results = RESULT_BUDGET
        self.missing = MISSING_BUDGET

    def log(self) -> BoundedLines:
        return BoundedLines(LOG_LIMIT if self.left > 0 else SHORT_LOG, self)


def cut_line(line: str, extra: int = 0) -> str:
    """The line's first LINE_LIMIT characters and how many were cut."""
    extra += max(0, len(line) - LINE_LIMIT)
    if not extra:
        return line
    return f"{line[:LINE_LIMIT]} [... {extra} characters cut]"


def _number(digits: str) -> int:
    """A test number or plan count; NUMBER_LIMIT if it has too many
    digits to be one (int() refuses past 4300 digits anyway)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 16 else NUMBER_LIMIT


def _shown(digits: str) -> str:
    """A number as a message shows it: a long one by its length."""
    digits = digits.lstrip("0") or "0"
    return digits if len(digits) <= 20 else f"{digits[:10]}...({len(digits)} digits)"


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


# -- one line: what it is to KTAP --------------------------------------------

class Kind(enum.Enum):
    """What a line is to KTAP."""

    HEADER = "header"  # "KTAP version 1", "TAP version 13"
    SUBTEST = "subtest"  # "# Subtest: name"
    PLAN = "plan"  # "1..N"
    RESULT = "result"  # "ok N name # DIRECTIVE reason", "not ok ..."
    BAIL = "bail"  # "Bail out! reason"
    OTHER = "other"  # a diagnostic or any other line


@dataclass(slots=True)
class Classified:
    """A line past its level's prefix, as the tree needs it."""

    kind: Kind
    content: str  # the line past the prefix
    ind: str = ""  # indentation past the prefix: the line is a deeper level's
    text: str = ""  # the subtest's name, plan's count, result's rest or bail's reason
    num: int | None = None  # the result's number, if it has one
    ok: bool = False  # a result's: "ok", not "not ok"


def classify(line: str, content: str) -> Classified:
    """What @content, @line past its level's prefix, is. A header counts
    only if the whole line is one: under the prefix "#", a second
    "#KTAP version 1" is a diagnostic."""
    if _HEADER.match(line):
        m = _HEADER.match(content)
        assert m
        return Classified(Kind.HEADER, content, m.group("ind"))
    m = _SUBTEST.match(content)
    if m:
        return Classified(Kind.SUBTEST, content, m.group("ind"), m.group("name").rstrip())
    m = _PLAN.match(content)
    if m:
        return Classified(Kind.PLAN, content, m.group("ind"), m.group("n"))
    m = _RESULT.match(content)
    if m:
        num = _number(m.group("num")) if m.group("num") else None
        return Classified(Kind.RESULT, content, m.group("ind"), m.group("rest"), num,
                          not m.group("not"))
    m = _BAIL.match(content)
    if m:
        return Classified(Kind.BAIL, content, text=m.group("why"))
    return Classified(Kind.OTHER, content)


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
    # A nameless line ("ok 2 # SKIP reason") stays nameless: the caller
    # names it by its number, not by its reason.
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


# -- one level's plan and results --------------------------------------------

class _Numbers:
    """The test numbers a level reported, as ranges: one range when the
    numbers are consecutive, however many tests there are."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.highest = 0

    def add(self, n: int) -> None:
        self.highest = max(self.highest, n)
        if self.ranges and self.ranges[-1][1] + 1 == n:
            self.ranges[-1][1] = n
        elif not (self.ranges and self.ranges[-1][0] <= n <= self.ranges[-1][1]):
            self.ranges.append([n, n])

    def gaps(self, plan: int) -> Iterator[tuple[int, int]]:
        """The ranges of 1..plan never reported, in order."""
        nxt = 1
        for lo, hi in sorted(self.ranges):
            if lo > nxt:
                yield nxt, min(lo - 1, plan)
            nxt = max(nxt, hi + 1)
            if nxt > plan:
                return
        if nxt <= plan:
            yield nxt, plan


# Statuses, worst first: the one a summary of several results takes.
_WORST_FIRST = (Status.CRASHED, Status.ERROR, Status.TIMEOUT, Status.FAIL,
                Status.PASS, Status.XFAIL, Status.TODO, Status.SKIP)


def _merge(results: list[TestResult], numbers: list[int],
           missing: list[TestResult]) -> list[TestResult]:
    """Results in the order they came, each missing test placed before the
    first result numbered after it."""
    out: list[TestResult] = []
    todo = deque(missing)
    for result, n in zip(results, numbers, strict=True):
        while todo and todo[0].number is not None and todo[0].number < n:
            out.append(todo.popleft())
        out.append(result)
    out.extend(todo)
    return out


class _Plan:
    """A level's plan and the results that answer it: kept while the
    parse's budget lasts, then only counted. At the end, what the plan
    declared but never came is listed in its place."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.declared: int | None = None
        self.shown = ""  # the plan's count as written (it may be too large)
        self.count = 0  # results seen, kept or only counted
        self.reported = _Numbers()
        self.results: list[TestResult] = []
        self.numbers: list[int] = []  # each kept result's position
        self.unkept: Counter[Status] | None = None  # past RESULT_BUDGET

    @property
    def started(self) -> bool:
        """Did a plan or a result come?"""
        return bool(self.count) or self.declared is not None

    def declare(self, digits: str) -> bool:
        """Take 1..@digits as the plan, unless a plan or a result came."""
        if self.started:
            return False
        self.declared = _number(digits)
        self.shown = _shown(digits)
        return True

    def add(self, result: TestResult, position: int) -> None:
        """Record a result at @position: its number, or else the next place.
        A result past the plan fails."""
        self.count += 1
        self.reported.add(position)
        if self.declared is not None and position > self.declared:
            if result.status.is_ok:
                result.status = Status.FAIL
            shown = position if position < NUMBER_LIMIT else f"{NUMBER_LIMIT} or more"
            result.reason = "; ".join(filter(None, (
                f"result {shown} is beyond the plan 1..{self.shown}", result.reason)))
        if self.budget.results > 0:
            self.budget.results -= 1
            self.results.append(result)
            self.numbers.append(position)
        else:
            if self.unkept is None:
                self.unkept = Counter()
            self.unkept[result.status] += 1

    def close(self, status: Status, ended: str, diag: BoundedLines,
              log: BoundedLines) -> list[TestResult]:
        """The results, each number the plan declared that never reported
        in its place, and a count of the results not kept. Without a plan
        nothing is invented: a crash there is the console's (the caller
        reports it)."""
        out = _merge(self.results, self.numbers, self._missing(status, ended, diag, log))
        if self.unkept:
            n = sum(self.unkept.values())
            worst = next(s for s in _WORST_FIRST if self.unkept[s])
            counts = ", ".join(f"{self.unkept[s]} {s.value}" for s in _WORST_FIRST
                               if self.unkept[s])
            out.append(TestResult(
                name=f"more-{n}-results", status=worst,
                reason=f"{n} more results, counted but not kept ({counts})"))
        return out

    def _missing(self, status: Status, ended: str, diag: BoundedLines,
                 log: BoundedLines) -> list[TestResult]:
        """The plan's numbers that never reported, as @status for @ended: one
        test each up to MISSING_LIMIT, then one test for all the others. The
        one running at the end gets @diag and @log."""
        if self.declared is None:
            return []
        # The first number after the last result was running at the end.
        running = self.reported.highest + 1
        keep = min(MISSING_LIMIT, self.budget.missing)
        out: list[TestResult] = []
        first_unlisted = left = 0
        for lo, hi in self.reported.gaps(self.declared):
            take = min(hi - lo + 1, max(0, keep - len(out)))
            for n in range(lo, lo + take):
                skipped = n < running  # a later number reported
                out.append(TestResult(
                    name=f"missing-{n}", number=n,
                    status=Status.ERROR if skipped else status,
                    reason="no result with this number, though later tests reported"
                    if skipped else ended,
                    diagnostics=diag.lines() if n == running else [],
                    log=log.lines() if n == running else []))
            if take <= hi - lo:
                first_unlisted = first_unlisted or lo + take
                left += hi - lo + 1 - take
        self.budget.missing -= len(out)
        if left:
            exact = str(self.declared) == self.shown
            out.append(TestResult(
                name=f"missing-{first_unlisted}..{self.shown}", status=status,
                reason=f"{left if exact else 'many'} more declared tests, up to "
                       f"{self.shown}, never reported: {ended}"))
        return out


# -- the tree ------------------------------------------------------------------

@dataclass
class _Level:
    """One open test list: the subtests of a test still awaiting its result."""

    prefix: str  # cumulative indentation of this level's lines
    budget: Budget
    start_ts: str | None = None
    name: str = ""  # from "# Subtest:"
    bailed: str | None = None
    # Its "# Subtest:", plan and "Bail out!" lines, and the lines before its
    # plan or first result: they lead the log of the test it belongs to.
    own_log: BoundedLines = field(default_factory=lambda: BoundedLines(LOG_LIMIT))
    plan: _Plan = field(init=False)
    diag: BoundedLines = field(init=False)  # the next result's
    log: BoundedLines = field(init=False)  # the next result's

    def __post_init__(self) -> None:
        self.plan = _Plan(self.budget)
        self.diag = BoundedLines(DIAG_LIMIT)
        self.log = self.budget.log()

    def pending(self, line: str, ts: str | None, text: str | None = None) -> None:
        """A line before the next result: in its log and, given @text, in
        its diagnostics (the line itself if @text is empty)."""
        if self.start_ts is None:
            self.start_ts = ts
        self.log.append(line)
        if text is not None:
            self.diag.append(text or line)

    def reset_pending(self) -> None:
        self.diag = BoundedLines(DIAG_LIMIT)
        self.log = self.budget.log()
        self.start_ts = None


def _duration(start: str | None, end: str | None) -> float | None:
    """Seconds between two printk stamps, if both are finite numbers."""
    if start is None or end is None:
        return None
    try:
        seconds = float(end) - float(start)
    except ValueError:
        return None
    return round(max(0.0, seconds), 6) if math.isfinite(seconds) else None


def _result_of(c: Classified, position: int, line: str, ts: str | None, lv: _Level,
               child: _Level | None, children: list[TestResult]) -> TestResult:
    """The test of result line @c, @position in the plan of level @lv, with
    the level @child below (closed into @children)."""
    name, directive, reason = _parse_result_rest(c.text)
    if not name and child is not None:
        name = child.name
    status = _status(c.ok, directive)
    log = lv.log.lines() + [line]
    diagnostics = lv.diag.lines()
    if child is not None:
        log = child.own_log.lines() + log
        if child.bailed is not None:
            diagnostics.append(f"Bail out! {child.bailed}")
    start = lv.start_ts if lv.start_ts is not None else (
        child.start_ts if child else None)
    if status == Status.PASS and any(t.status == Status.CRASHED for t in children):
        status = Status.CRASHED
        reason = reason or "a subtest never reported"
    return TestResult(
        name=name or f"unnamed-{position}",
        status=status,
        number=c.num if c.num is not None and c.num < NUMBER_LIMIT else None,
        directive=directive,
        reason=reason,
        diagnostics=diagnostics,
        log=log,
        duration=_duration(start, ts),
        children=children,
    )


class _Levels:
    """The open levels, outermost first, and how they close."""

    def __init__(self, crash: list[str]) -> None:
        self.crash = crash  # the console's, filled in by Parser
        self.roots: list[TestResult] = []
        self.stack: list[_Level] = []
        self.found = False
        self.budget = Budget()

    def _open_root(self, ts: str | None, prefix: str = "") -> None:
        self.found = True
        self.stack = [_Level(prefix, self.budget, ts)]

    def _open(self, parent: int, prefix: str, ts: str | None) -> _Level:
        # Levels deeper than the parent that are still open belong to a
        # test that never reported: close them first.
        self._close_below(parent)
        lv = _Level(prefix, self.budget, ts)
        self.stack.append(lv)
        return lv

    def _ended(self, lv: _Level) -> str:
        """Why the level's test, or a test it declared, never reported."""
        if lv.bailed is not None:
            return f"Bail out! {lv.bailed}"
        if self.crash:
            return f"kernel crashed: {self.crash[0].strip()}"
        return "no result: output ended or the test hung"

    def _finish_level(self, lv: _Level) -> list[TestResult]:
        status = Status.ERROR if lv.bailed is not None else Status.CRASHED
        return lv.plan.close(status, self._ended(lv), lv.diag, lv.log)

    def _close_below(self, i: int) -> None:
        """Close the levels below level @i: their tests never printed their
        result lines."""
        while len(self.stack) > i + 1:
            lv = self.stack[-1]
            children = self._finish_level(lv)
            self.stack.pop()
            parent = self.stack[-1]
            parent.plan.add(TestResult(
                name=lv.name or "unnamed",
                status=Status.CRASHED,
                reason=self._ended(lv),
                diagnostics=parent.diag.lines(),
                log=lv.own_log.lines(),
                children=children,
            ), parent.plan.count + 1)
            parent.reset_pending()

    def _close_document(self) -> None:
        self._close_below(0)
        if self.stack:
            self.roots.extend(self._finish_level(self.stack[0]))
            self.stack = []

    def finish(self) -> list[TestResult]:
        self._close_document()
        return self.roots


class _Tree(_Levels):
    """Builds the tree from KTAP lines: each line, classified, opens,
    fills or closes a level."""

    def __init__(self, crash: list[str]) -> None:
        super().__init__(crash)
        self.doc_prefix = ""  # a foreign prefix of every line ("kernel: ")

    def noise(self, line: str, ts: str | None) -> None:
        """A line of no level: the innermost open test's log."""
        if self.stack:
            self.stack[-1].pending(line, ts)

    def attach(self, line: str) -> None:
        """A crash line: the innermost open test's diagnostic."""
        if self.stack:
            lv = self.stack[-1]
            lv.diag.append(line)
            lv.log.append(line)

    def take(self, line: str, ts: str | None) -> None:
        """A line that may be KTAP: past the document's prefix, it goes to
        the deepest open level whose prefix it has."""
        if self.doc_prefix:
            if not line.startswith(self.doc_prefix):
                if _HEADER_ANYWHERE.search(line):
                    self._new_document(line, ts)
                else:
                    self.noise(line, ts)
                return
            line = line[len(self.doc_prefix):]
        for i in range(len(self.stack) - 1, -1, -1):
            if line.startswith(self.stack[i].prefix):
                self._at_level(i, line, ts)
                return
        # The first header may follow any prefix; later, a header less
        # indented than the open document starts a new one.
        header = _HEADER.match if self.stack else _HEADER_ANYWHERE.search
        if header(line):
            self._new_document(line, ts)
        else:
            self.noise(line, ts)

    def _new_document(self, line: str, ts: str | None) -> None:
        """A header that starts a new document: after a foreign per-line
        prefix ("kernel: KTAP version 1"), or indented or "# "-nested with
        its top-level header lost ("# TAP version 13")."""
        m = _HEADER_ANYWHERE.search(line)
        assert m
        pre = line[: m.start()]
        self._close_document()
        if pre.strip(" \t#"):
            self.doc_prefix = pre
            self._open_root(ts)
        else:
            self.doc_prefix = ""
            self._open_root(ts, pre)

    def _at_level(self, i: int, line: str, ts: str | None) -> None:
        """A line of level @i, or, indented further, of a new level below it
        (an open one would have its prefix)."""
        level = self.stack[i]
        c = classify(line, line[len(level.prefix):])
        if c.ind and i + 1 >= MAX_DEPTH:
            c = Classified(Kind.OTHER, c.content)  # no level opens below MAX_DEPTH
        if c.kind is Kind.HEADER:
            if c.ind:
                self._open(i, level.prefix + c.ind, ts)
            elif i == 0 and level.plan.started:
                # A new document at the top: e.g. selftests after KUnit.
                self._close_document()
                self._open_root(ts)
            return
        lv = self._open(i, level.prefix + c.ind, ts) if c.ind else level
        if c.kind is Kind.SUBTEST:
            if not lv.name and not lv.plan.count:
                lv.name = c.text
            else:
                lv.diag.append(c.content.strip())
            lv.own_log.append(line)
        elif c.kind is Kind.PLAN and lv.plan.declare(c.text):
            lv.own_log.append(line)
        elif c.kind is Kind.RESULT:
            self._result(len(self.stack) - 1 if c.ind else i, c, line, ts)
        elif c.kind is Kind.BAIL:
            self._close_below(i)
            level.bailed = c.text or "(no reason given)"
            level.own_log.append(line)
        elif i < len(self.stack) - 1:
            self.noise(line, ts)  # an outer level's line while a deeper one is open
        elif i and not level.plan.started:
            level.own_log.append(line)  # subtest metadata, e.g. "# module:"
        else:
            level.pending(line, ts, c.content.rstrip())  # a diagnostic

    def _result(self, i: int, c: Classified, line: str, ts: str | None) -> None:
        """A result of level @i: the level below it, if open, holds its
        subtests; any deeper ones never reported."""
        self._close_below(i + 1)
        child = self.stack.pop() if len(self.stack) > i + 1 else None
        children = self._finish_level(child) if child is not None else []
        lv = self.stack[i]
        position = c.num if c.num is not None else lv.plan.count + 1
        lv.plan.add(_result_of(c, position, line, ts, lv, child, children), position)
        lv.reset_pending()
        lv.start_ts = ts


@dataclass
class ParseOutput:
    tests: list[TestResult]
    found_ktap: bool
    crash: list[str]  # first crash text seen, if any
    tail: list[str]  # last console lines, for failure messages
    banner: str = ""  # the kernel's "Linux version ..." line (parse_stream), if any


class Parser:
    """Feed lines with feed(); finish() returns the tree. The parser reads
    the console (printk prefixes, noise, crashes) and hands the lines that
    may be KTAP to the tree."""

    def __init__(self) -> None:
        self.crash: list[str] = []
        self.tree = _Tree(self.crash)
        self.oops_left = 0
        self.tail: deque[str] = deque(maxlen=60)

    def feed(self, raw: str) -> None:
        # "\r" on either side: "\r\n" and "\n\r" line endings alike.
        raw = raw.strip("\r\n")
        if len(raw) > LINE_LIMIT:
            raw = cut_line(raw)
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
        stack = self.tree.stack
        if close and not self.oops_left and stack and not line[:1].isspace() \
                and not _is_hot(line):
            # Noise inside a test: only its log slice needs it (the pending
            # and append methods, inlined).
            lv = stack[-1]
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
        self._line(line, raw[1:close].strip() if close else ts)

    def _line(self, line: str, ts: str | None) -> None:
        """A line past its printk prefix that the hot path left."""
        if self.oops_left:
            self.oops_left -= 1
            self._attach_crash(line)
            return
        stack = self.tree.stack
        if not _is_hot(line) and (not stack or not line[:1].isspace()):
            self.tree.noise(line, ts)  # the inlined path in feed covers most lines
            return
        if _CRASH.search(line):
            if not self.crash:
                self.crash.append(line)
            self.oops_left = OOPS_LINES
            self._attach_crash(line)
            return
        if stack or "TAP version" in line:
            self.tree.take(line, ts)

    def _attach_crash(self, line: str) -> None:
        self.tree.attach(line)
        if len(self.crash) < OOPS_LINES and line not in self.crash[:1]:
            self.crash.append(line)
        if "end Kernel panic" in line or "---[ end trace" in line:
            self.oops_left = 0

    def finish(self) -> ParseOutput:
        roots = self.tree.finish()
        return ParseOutput(roots, self.tree.found, self.crash, list(self.tail))


GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"


class _Sniffed:
    """A byte stream whose first bytes were read ahead to tell its format:
    works on pipes and FIFOs, which cannot seek back."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.head = b""
        while len(self.head) < size:
            more = f.read(size - len(self.head))
            if not more:
                break
            self.head += more

    def read(self, n: int | None = -1) -> bytes:
        if not self.head:
            return self.f.read(n)
        if n is None or n < 0:
            out, self.head = self.head + self.f.read(), b""
        else:
            out, self.head = self.head[:n], self.head[n:]
        return out


SNIFF = 1 << 16  # what tells a console from a binary file
MAX_NULS = 4  # a serial console may show a stray NUL; a binary file shows many


def decompressed(f: BinaryIO, name: str = "standard input", binary_ok: bool = True
                 ) -> BinaryIO:
    """The stream, or its content if it is gzip or xz: told by the magic
    bytes, so that pipes and files named otherwise work too. Unless
    @binary_ok, content with NUL bytes in its first 64 KB (an ELF, random
    data) is no console."""
    sniffed = _Sniffed(f, len(XZ_MAGIC))
    if sniffed.head.startswith(GZIP_MAGIC):
        sniffed = _Sniffed(gzip.GzipFile(fileobj=sniffed, mode="rb"), SNIFF)
    elif sniffed.head.startswith(XZ_MAGIC):
        sniffed = _Sniffed(lzma.LZMAFile(sniffed), SNIFF)
    else:
        sniffed.head += _Sniffed(f, SNIFF - len(sniffed.head)).head
    nuls = sniffed.head.count(b"\0")
    if nuls > MAX_NULS and not binary_ok:
        what = "an ELF file" if sniffed.head.startswith(b"\x7fELF") else "binary data"
        raise UserError(f"{name}: {what} ({nuls} NUL bytes in its first "
                        f"{SNIFF >> 10} KB), not a console log; give the console's text, "
                        "plain, gzip or xz")
    return sniffed  # type: ignore[return-value]


_BANNER = re.compile(r"Linux version (\S+)(?: .*)?")


def _banner(lines: Iterator[str], found: list[str]) -> Iterator[str]:
    """@lines, the kernel's first "Linux version" banner put in @found."""
    for line in lines:
        yield line
        if "Linux version " in line:
            m = _BANNER.search(line)
            if m:
                found.append(m.group(0).strip())
                break
    yield from lines


def iter_file_lines(f: BinaryIO, chunk: int = 1 << 20) -> Iterator[str]:
    """Lines of a binary stream, decoded a megabyte at a time (faster than
    per line); a character split between chunks is decoded whole. A line
    keeps its first LINE_LIMIT characters, so that memory stays bounded
    however long it is."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest, cut = "", 0  # the unfinished line's start, and what was cut of it
    while True:
        block = f.read(chunk)
        lines = decoder.decode(block, final=not block).split("\n")
        lines[0] = rest + lines[0]
        if block:
            rest = lines.pop()
            if not lines:  # still inside one line: keep its start only
                rest, cut = rest[:LINE_LIMIT], cut + max(0, len(rest) - LINE_LIMIT)
                continue
        elif not (lines[0] or cut):
            return
        if cut or max(map(len, lines)) > LINE_LIMIT:
            lines = [cut_line(lines[0], cut)] + [cut_line(line) for line in lines[1:]]
            cut = 0
        yield from lines
        if not block:
            return


def parse_lines(lines: Iterable[str]) -> ParseOutput:
    p = Parser()
    feed = p.feed
    for line in lines:
        feed(line)
    return p.finish()


def parse_text(text: str) -> ParseOutput:
    """As parse_file on the same text: lines end at "\n" only."""
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    return parse_lines(lines)


def parse_stream(f: BinaryIO, name: str = "standard input", binary_ok: bool = True
                 ) -> ParseOutput:
    """Parse a console from any byte stream, plain, gzip or xz. Standard
    input takes binary junk (its verdict: no KTAP output); a file does not."""
    banner: list[str] = []
    try:
        out = parse_lines(_banner(iter_file_lines(decompressed(f, name, binary_ok)), banner))
        out.banner = banner[0] if banner else ""
        return out
    except (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"{name}: the compressed data is truncated or corrupt ({e}); "
                        "to parse what is left: zcat or xzcat it | runner parse -") from e


def parse_file(path: str) -> ParseOutput:
    """Parse a console file: regular, FIFO or /dev/fd, plain, gzip or xz."""
    with open(path, "rb") as f:
        return parse_stream(f, path, binary_ok=False)
