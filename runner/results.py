"""The results model shared by pytest, `runner run`, `runner parse` and
bisect: a tree of tests, stable ids, totals and one overall verdict."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

# Nesting kept in a tree: the parser opens no deeper level, and a tree built
# otherwise is flattened below it in JSON (real KTAP nests 3 or 4 levels).
MAX_DEPTH = 64


class Status(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    XFAIL = "xfail"
    TODO = "todo"
    TIMEOUT = "timeout"
    ERROR = "error"
    CRASHED = "crashed"  # never reported: crash, hang, truncated output

    @property
    def is_ok(self) -> bool:
        return self in (Status.PASS, Status.SKIP, Status.XFAIL, Status.TODO)


class Verdict(str, enum.Enum):
    """Overall verdict; earlier members outrank later ones."""

    CRASHED = "crashed"
    FAILED = "failed"
    PASSED = "passed"
    SKIPPED = "skipped"

    @property
    def is_ok(self) -> bool:
        return self in (Verdict.PASSED, Verdict.SKIPPED)


@dataclass(slots=True)  # a console may hold 100,000 of them
class TestResult:
    name: str
    status: Status
    number: int | None = None
    directive: str = ""
    reason: str = ""
    diagnostics: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    duration: float | None = None
    children: list[TestResult] = field(default_factory=list)

    def to_dict(self, depth: int = 1) -> dict:
        """Plain data for JSON: no NaN or infinity, and no deeper than
        MAX_DEPTH (deeper tests become leaves named by their path)."""
        finite = self.duration is not None and math.isfinite(self.duration)
        if depth < MAX_DEPTH:
            children = [c.to_dict(depth + 1) for c in self.children]
        else:
            children = [replace(leaf.result, name="/".join(leaf.path), children=[])
                        .to_dict(depth + 1) for leaf in leaves(self.children)]
        return {
            "name": self.name,
            "status": self.status.value,
            "number": self.number,
            "directive": self.directive,
            "reason": self.reason,
            "duration": self.duration if finite else None,
            "diagnostics": self.diagnostics,
            "log": self.log,
            "children": children,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TestResult:
        return cls(
            name=d["name"],
            status=Status(d["status"]),
            number=d.get("number"),
            directive=d.get("directive", ""),
            reason=d.get("reason", ""),
            diagnostics=list(d.get("diagnostics", [])),
            log=list(d.get("log", [])),
            duration=d.get("duration"),
            children=[cls.from_dict(c) for c in d.get("children", [])],
        )


@dataclass
class Leaf:
    """A leaf test with its path of names from the top-level suite."""

    path: tuple[str, ...]
    result: TestResult

    @property
    def suite(self) -> str:
        return "/".join(self.path[:-1]) or self.path[0]

    @property
    def case(self) -> str:
        return self.path[-1]


def _unique(names: list[str]) -> list[str]:
    """Disambiguate duplicate names without using result numbers: the
    second "x" is "x#2", or "x#3" if a test is already called "x#2"."""
    taken = set(names)
    seen: set[str] = set()
    last: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            k = last.get(n, 1) + 1
            while f"{n}#{k}" in taken:
                k += 1
            last[n] = k
            n = f"{n}#{k}"
            taken.add(n)
        seen.add(n)
        out.append(n)
    return out


def _named(tests: list[TestResult]) -> Iterator[tuple[str, TestResult]]:
    return zip(_unique([t.name for t in tests]), tests, strict=True)


def leaves(tests: list[TestResult], prefix: tuple[str, ...] = ()) -> list[Leaf]:
    """Every leaf, depth first, walked without recursion. A parent that
    failed while every child passed (e.g. a suite init failure) is a leaf
    "(suite)" of its own, so that it does not vanish from the report."""
    out: list[Leaf] = []
    stack = [(prefix, _named(tests), None)]
    while stack:
        path, todo, parent = stack[-1]
        item = next(todo, None)
        if item is None:
            stack.pop()
            if parent is not None and not parent.status.is_ok and all(
                    c.status.is_ok for c in parent.children):
                out.append(Leaf(path + ("(suite)",), parent))
            continue
        name, t = item
        if t.children:
            stack.append((path + (name,), _named(t.children), t))
        else:
            out.append(Leaf(path + (name,), t))
    return _unique_ids(out)


def _unique_ids(ls: list[Leaf]) -> list[Leaf]:
    """Names may hold "/": ("a/b", "c") and ("a", "b/c") would share an id.
    The later one gets a "#k" suffix."""
    seen: set[str] = set()
    last: dict[str, int] = {}
    for i, leaf in enumerate(ls):
        key = first = "/".join(leaf.path)
        k = last.get(first, 1)
        while key in seen:
            k += 1
            key = f"{first}#{k}"
        if key != first:
            last[first] = k
            ls[i] = Leaf(leaf.path[:-1] + (f"{leaf.path[-1]}#{k}",), leaf.result)
        seen.add(key)
    return ls


def totals(ls: list[Leaf]) -> dict[str, int]:
    c = Counter(leaf.result.status.value for leaf in ls)
    return {s.value: c.get(s.value, 0) for s in Status}


def verdict(ls: list[Leaf], found_output: bool = True) -> Verdict:
    if not found_output:
        return Verdict.CRASHED
    statuses = {leaf.result.status for leaf in ls}
    if Status.CRASHED in statuses:
        return Verdict.CRASHED
    if statuses & {Status.FAIL, Status.TIMEOUT, Status.ERROR}:
        return Verdict.FAILED
    if statuses & {Status.PASS, Status.XFAIL, Status.TODO}:
        return Verdict.PASSED
    return Verdict.SKIPPED if ls else Verdict.CRASHED


@dataclass
class RunInfo:
    """Where the results came from."""

    arch: str = ""
    variant: str = ""
    kernel_version: str = ""
    source_id: str = ""
    console: str = ""  # path of the captured console log
    boot: str = ""  # e.g. "kvm" or "tcg"
    note: str = ""  # infrastructure message (no KTAP, boot timeout, ...)
    timings: dict = field(default_factory=dict)  # seconds per step (runner/timings.py)
    selection: str = ""  # "" for the whole suite, else what was asked for


@dataclass
class RunResult:
    info: RunInfo
    tests: list[TestResult]
    found_output: bool = True
    console_tail: list[str] = field(default_factory=list)

    def leaves(self) -> list[Leaf]:
        return leaves(self.tests)

    def verdict(self) -> Verdict:
        return verdict(self.leaves(), self.found_output)

    def test_id(self, leaf: Leaf) -> str:
        return "/".join((self.info.arch or "-", self.info.variant or "-") + leaf.path)

    def find(self, *path: str) -> TestResult | None:
        level = self.tests
        found = None
        for name in path:
            found = next((t for t in level if t.name == name), None)
            if found is None:
                return None
            level = found.children
        return found

    def to_dict(self) -> dict:
        head, lists = self.parts()
        return {**head, **{k: list(v) for k, v in lists.items()}}

    def parts(self) -> tuple[dict, dict]:
        """to_dict() as its small fields and, to be written one element at
        a time, its two long lists ("tests", "leaves") as iterators."""
        ls = self.leaves()
        head = {
            "schema": "allocprof-ktest/results/1",
            "info": vars(self.info),
            "verdict": verdict(ls, self.found_output).value,
            "found_output": self.found_output,
            "totals": totals(ls),
            "console_tail": self.console_tail,
        }
        lists = {
            "tests": (t.to_dict() for t in self.tests),
            "leaves": ({"id": self.test_id(leaf), "suite": leaf.suite, "case": leaf.case,
                        "status": leaf.result.status.value, "reason": leaf.result.reason}
                       for leaf in ls),
        }
        return head, lists

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        return cls(
            info=RunInfo(**d["info"]),
            tests=[TestResult.from_dict(t) for t in d["tests"]],
            found_output=d.get("found_output", True),
            console_tail=list(d.get("console_tail", [])),
        )
