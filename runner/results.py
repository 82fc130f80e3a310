"""The results model shared by pytest, `runner run`, `runner parse` and
bisect: a tree of tests, stable ids, totals and one overall verdict."""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace

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
    variant: str = ""  # the label in test ids: "default-off" or "default-off-boot0"
    config: str = ""  # the kernel's variant ("default-off"); "" in reports of runner parse
    boot_option: str = ""  # the boot variant ("0", "none": runner/targets.py)
    kernel_version: str = ""
    source_id: str = ""
    console: str = ""  # path of the captured console log
    boot: str = ""  # e.g. "kvm" or "tcg"
    note: str = ""  # infrastructure message (no KTAP, boot timeout, ...)
    timings: dict = field(default_factory=dict)  # seconds per step (runner/timings.py)
    selection: str = ""  # "" for the whole suite, else what was asked for
    kernel: str = ""  # the banner of the kernel that booted (it carries the build's identity)
    contracts: dict = field(default_factory=dict)  # runner/contracts.py: read from the tree
    fit: dict = field(default_factory=dict)  # runner/fit.py: compressed tags, predicted


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
            # Fields of another version of the runner are left out.
            info=RunInfo(**{k: v for k, v in d["info"].items() if k in _INFO_TYPES}),
            tests=[TestResult.from_dict(t) for t in d["tests"]],
            found_output=d.get("found_output", True),
            console_tail=list(d.get("console_tail", [])),
        )


# --- JSON reports read back (runner merge, runner export) -------------------

# The JSON Schema of one run as RunResult.to_dict() writes it; its tests are
# checked one node at a time (TEST_SCHEMA), without recursion.
_JSON_TYPES = {"str": "string", "dict": "object", "bool": "boolean"}
_INFO_TYPES = {f.name: _JSON_TYPES.get(str(f.type), {}) for f in fields(RunInfo)}
_TEXTS = {"type": "array", "items": {"type": "string"}}
# A duration past this is not one: a float cannot hold 400 digits.
_MAX_SECONDS = 1e15
TEST_SCHEMA = {
    "type": "object",
    "required": ["name", "status"],
    "properties": {
        "name": {"type": "string"},
        "status": {"enum": [s.value for s in Status]},
        "number": {"type": ["integer", "null"], "minimum": -(2 ** 63), "maximum": 2 ** 63},
        "directive": {"type": "string"},
        "reason": {"type": "string"},
        "duration": {"type": ["number", "null"], "minimum": -_MAX_SECONDS,
                     "maximum": _MAX_SECONDS},
        "diagnostics": _TEXTS,
        "log": _TEXTS,
        "children": {"type": "array", "items": {"type": "object"}},
    },
}
RUN_SCHEMA = {
    "type": "object",
    "required": ["info", "tests"],
    "properties": {
        "info": {"type": "object", "properties": {
            name: {"type": t} for name, t in _INFO_TYPES.items() if t}},
        "found_output": {"type": "boolean"},
        "console_tail": _TEXTS,
        "tests": {"type": "array", "items": {"type": "object"}},
    },
}


def _where(at: str, path) -> str:
    return at + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _first_error(validator, doc, at: str) -> str | None:
    from jsonschema.exceptions import best_match

    e = best_match(validator.iter_errors(doc))
    if e is None:
        return None
    message = e.message
    if len(message) > 160:  # a huge value: say what it broke instead
        shown = repr(e.instance)
        message = (f"{shown[:40]}... ({len(shown)} characters) breaks the schema's "
                   f"{e.validator!r}: {e.validator_value!r}")
    return f"{_where(at, e.absolute_path)}: {message}"


def run_error(d, at: str = "") -> str | None:
    """What is wrong with a run read from JSON, as "field: what", or None.
    Tests deeper than a report can be (MAX_DEPTH) are refused too."""
    from jsonschema import Draft202012Validator

    error = _first_error(Draft202012Validator(RUN_SCHEMA), d, at)
    if error:
        return error
    node = Draft202012Validator(TEST_SCHEMA)
    todo = [(t, ("tests", i)) for i, t in enumerate(d["tests"])]
    while todo:
        t, path = todo.pop()
        if len(path) > 2 * (MAX_DEPTH + 1):
            return (f"{_where(at, path[:2])}: tests nested deeper than {MAX_DEPTH} levels, "
                    "which a report never is")
        error = None if node.is_valid(t) else _first_error(node, t, _where(at, path))
        if error:
            return error
        todo += [(c, path + ("children", i)) for i, c in enumerate(t.get("children", ()))]
    return None
