"""`runner merge`: the reports of a run's shards as one report.

Each input is recognised by its first bytes and then read as a stream, so
that neither a wrong file nor an endless one is read whole: memory follows
what the reports hold, and no input may exceed MAX_REPORT_BYTES.

JUnit reports (ours or pytest's --junitxml) are merged element by element:
every <testcase> is kept as it was written, under a <testsuite> of its
name and kernel source; every count is computed again from the test cases.
JSON reports (ours) are checked against their schema and merged run by
run. Runs, and test cases, are told apart by kernel source as well as by
arch and variant. A test that two inputs both report is kept once if both
say the same, else it is an error: two shards ran one target, or the
inputs come from two runs. One input may name a test twice (pytest does,
for a test that fails and then errors in teardown): both are kept.

Memory is bounded: an input over MAX_REPORT_BYTES is refused before it is
read, a JUnit report that declares a DOCTYPE (and so entities) is refused,
a JSON report of more than MAX_JSON_VALUES values is refused before it is
decoded, and no more than MAX_CASES test cases are kept, each as its text.
An empty report (no run, no test case) is refused: it never passes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runner.atomic import open_for_write
from runner.errors import UserError
from runner.results import RunInfo, RunResult, run_error

REPORT_SCHEMA = "allocprof-ktest/report/1"  # runner run, runner parse, runner merge
RESULTS_SCHEMA = "allocprof-ktest/results/1"  # one target of a run (<run>/<target>/)
# Far above any report the runner writes (a whole matrix is a few MB), and
# a bound for an input that never ends (README, "Distributed runs").
MAX_REPORT_BYTES = 256 << 20
# A report of a run holds a few hundred test cases (a console at most
# 100,000 kept results): bounds on what is kept in memory.
MAX_CASES = 1_000_000
MAX_JSON_VALUES = 4_000_000
BOM = b"\xef\xbb\xbf"
_SNIFF = 1 << 16
_CHUNK = 1 << 20


def source_of(info: RunInfo) -> str:
    """The kernel source a run tested: its source id (a commit, or a
    tarball's version and digest) or, for a console parsed on its own,
    that console and the kernel version its banner shows."""
    version = f":{info.kernel_version}" if info.kernel_version else ""
    return info.source_id or f"console:{info.console or '-'}{version}"


def run_key(run: RunResult) -> tuple[str, str, str, str]:
    """What tells runs apart: kernel source and version, arch, variant."""
    i = run.info
    return (source_of(i), i.kernel_version, i.arch, i.variant)


# --- reading ---

class _Capped:
    """A binary stream that refuses to go past MAX_REPORT_BYTES."""

    def __init__(self, path: Path, f: BinaryIO) -> None:
        self.path, self.f, self.seen = path, f, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(_CHUNK if n is None or n < 0 else n)
        self.seen += len(data)
        if self.seen > MAX_REPORT_BYTES:
            raise UserError(f"{self.path}: larger than {MAX_REPORT_BYTES >> 20} MiB, which no "
                            "report of a run is; give the shards' junit.xml or results.json")
        return data


@contextlib.contextmanager
def _open(path: Path) -> Iterator[BinaryIO]:
    try:
        f = open(path, "rb", buffering=_SNIFF)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the report files") from None
    except NotADirectoryError:
        raise UserError(f"{path}: a part of the path is a file, not a directory") from None
    with f:
        yield f


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Running out of memory on @path is its fault, told in one line."""
    try:
        yield
    except MemoryError:
        raise UserError(f"{path}: ran out of memory reading it; it is no report of a run: "
                        "give the shards' junit.xml or results.json") from None


def _describe(head: bytes) -> str:
    if not head:
        return "it is empty"
    if head.startswith(b"\0"):
        return "it begins with NUL bytes"
    return f"it begins with {head[:16]!r}"


def _kind_of(head: bytes) -> str | None:
    body = head.removeprefix(BOM).lstrip()[:1]
    return {b"<": "junit", b"{": "json"}.get(body)


def kind(path: Path, f: BinaryIO) -> str:
    """"junit" or "json", from the first bytes of @f (which stay unread)."""
    head = f.peek(_SNIFF)[:_SNIFF]
    found = _kind_of(head)
    if found is None:
        raise UserError(f"{path}: neither JUnit XML nor JSON ({_describe(head)}); give the "
                        "shards' junit.xml or results.json files")
    st = os.fstat(f.fileno())
    if stat.S_ISREG(st.st_mode) and st.st_size > MAX_REPORT_BYTES:  # refused unread
        raise UserError(f"{path}: {st.st_size >> 20} MiB, larger than {MAX_REPORT_BYTES >> 20} "
                        "MiB, which no report of a run is; give the shards' junit.xml or "
                        "results.json files")
    return found


def check_out(out: Path, inputs: list[Path], force: bool, fix: str) -> None:
    """@out may be written: it is none of @inputs (a forgotten OUT would
    take the first input's place), and an existing file is only replaced
    with --force. @fix says how to name another OUT."""
    for p in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(out, p):
                raise UserError(f"{out} is both the output and an input, and would be lost: "
                                f"{fix}")
    try:
        if not out.is_file() or out.stat().st_size == 0:
            return
        with open(out, "rb") as f:
            found = _kind_of(f.read(_SNIFF))
    except OSError:
        return  # writing it will say what is wrong
    looks = {"junit": "a JUnit report", "json": "a JSON report"}.get(found or "", "a file")
    if not force:
        raise UserError(f"{out} already exists ({looks}) and would be replaced: {fix}, or "
                        "give --force to replace it")


# --- JUnit ---

def _tag(elem: ET.Element) -> str:
    return elem.tag.rpartition("}")[2] if isinstance(elem.tag, str) else ""


def _properties(elem: ET.Element) -> dict[str, str]:
    return {p.get("name") or "": p.get("value") or ""
            for props in elem if _tag(props) == "properties"
            for p in props if _tag(p) == "property"}


def _source(props: dict[str, str]) -> tuple[str, ...]:
    """As source_of() tells runs apart: source id, else console; version."""
    console = props.get("console")
    return (props.get("source_id") or (f"console:{console}" if console else ""),
            props.get("kernel_version", ""))


_RESULTS = ("failure", "error", "skipped")


def _outcome(case: ET.Element) -> tuple:
    found = tuple((_tag(r), r.get("type") or "", r.get("message") or "",
                   (r.text or "").strip()) for r in case if _tag(r) in _RESULTS)
    return found or (("passed", "", "", ""),)


@dataclass(slots=True)
class _Case:
    """A test case as kept: what tells it apart, its outcome, and its text
    as written (the element itself is dropped: it weighs ten times more)."""

    key: tuple
    outcome: tuple
    text: str
    seconds: float

    @property
    def kinds(self) -> set[str]:
        return {o[0] for o in self.outcome} & set(_RESULTS)


@dataclass
class _Suite:
    name: str
    source: tuple[str, ...]
    attrs: dict[str, str]
    properties: dict[str, str]
    cases: list = field(default_factory=list)


_PROLOG = re.compile(rb"\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*", re.DOTALL)


def _check_prolog(path: Path, head: bytes) -> None:
    """No DOCTYPE: a report never needs one, and its entities can make a
    small file expand a thousandfold. The root must show in the first bytes."""
    body = head.removeprefix(BOM)
    rest = body[_PROLOG.match(body).end():]
    if rest.startswith(b"<!"):
        raise UserError(f"{path}: declares a DOCTYPE (entities), which no JUnit report "
                        "needs and which is refused; give the shards' JUnit reports")
    if not rest[:1] == b"<" or len(rest) < 2:
        raise UserError(f"{path}: no root element in its first {_SNIFF >> 10} KB; give "
                        "the shards' JUnit reports")


def _junit_suites(path: Path, f: BinaryIO, kept: list[int]) -> Iterator[_Suite]:
    """The suites of a JUnit report as they end, each with its own test
    cases (those of a nested suite are its own). Test cases outside any
    suite (directly under <testsuites>) make a suite named after the root.
    Only the test cases are kept, as _Case: every element leaves the tree
    when it ends, so memory follows the test cases, not the file. @kept
    counts the test cases kept over all inputs (at most MAX_CASES)."""
    _check_prolog(path, f.peek(_SNIFF)[:_SNIFF])
    open_suites: list[_Suite] = []
    stack: list[ET.Element] = []
    in_case = 0  # depth inside a <testcase>: kept whole
    root_cases: list[_Case] = []
    try:
        for event, elem in ET.iterparse(_Capped(path, f), events=("start", "end")):
            tag = _tag(elem)
            if event == "start":
                if not stack and tag not in ("testsuites", "testsuite"):
                    raise UserError(f"{path}: not a JUnit report (its root is <{tag}>, "
                                    "neither <testsuites> nor <testsuite>)")
                stack.append(elem)
                in_case += bool(in_case) or tag == "testcase"
                if tag == "testsuite" and not in_case:
                    open_suites.append(_Suite(elem.get("name") or "", (), dict(elem.attrib), {}))
                continue
            stack.pop()
            if in_case:
                in_case -= 1
                if in_case:
                    continue  # part of a test case
                kept[0] += 1
                if kept[0] > MAX_CASES:
                    raise UserError(f"{path}: more than {MAX_CASES:,} test cases in all, which "
                                    "no run has; give the shards' JUnit reports")
                suite = open_suites[-1] if open_suites else None
                props = _properties(elem)
                # A case without a source of its own takes its suite's, once known.
                key = (_source(props) if any(_source(props)) else None,
                       elem.get("classname") or "", elem.get("name") or "")
                elem.tail = None
                (suite.cases if suite else root_cases).append(
                    _Case(key, _outcome(elem), ET.tostring(elem, encoding="unicode"),
                          _seconds(elem)))
            elif tag == "property" and [_tag(e) for e in stack[-2:]] == ["testsuite",
                                                                          "properties"]:
                open_suites[-1].properties[elem.get("name") or ""] = elem.get("value") or ""
            elif tag == "testsuite":
                suite = open_suites.pop()
                suite.source = _source(suite.properties)
                yield _own(suite)
            elif tag == "testsuites" and not stack and root_cases:
                yield _own(_Suite(elem.get("name") or "", ("", ""), {}, {}, root_cases))
            # Siblings end in order, and the parser may be ahead of these
            # events: the element just ended is its parent's first child.
            if stack and len(stack[-1]) and stack[-1][0] is elem:
                del stack[-1][0]
    except ET.ParseError as e:
        raise UserError(f"{path}: not well-formed XML ({e}); give the shards' JUnit "
                        "reports") from None


def _own(suite: _Suite) -> _Suite:
    for c in suite.cases:
        if c.key[0] is None:
            c.key = (suite.source, *c.key[1:])
    return suite


@dataclass
class JunitTotals:
    tests: int
    failures: int
    errors: int
    skipped: int

    @property
    def ok(self) -> bool:
        return not (self.failures or self.errors)


@dataclass
class MergedJunit:
    suites: dict[tuple, _Suite] = field(default_factory=dict)

    def totals(self) -> JunitTotals:
        count = dict.fromkeys(_RESULTS, 0)
        cases = 0
        for s in self.suites.values():
            cases += len(s.cases)
            for c in s.cases:
                for kind_ in c.kinds:
                    count[kind_] += 1
        return JunitTotals(cases, count["failure"], count["error"], count["skipped"])


def _case_name(key: tuple) -> str:
    source, classname, name = key
    where = f" ({', '.join(s for s in source if s)})" if any(source) else ""
    return "::".join(k for k in (classname, name) if k) + where


def merge_junit(inputs: list[tuple[Path, BinaryIO]]) -> MergedJunit:
    out = MergedJunit()
    seen: dict[tuple, tuple[int, Path, list]] = {}
    kept = [0]
    for index, (path, f) in enumerate(inputs):
        mine: dict[tuple, list] = {}
        order: list[tuple[tuple, _Case]] = []
        with reading(path):
            for suite in _junit_suites(path, f, kept):
                skey = (suite.name, suite.source)
                if skey not in out.suites:
                    out.suites[skey] = _Suite(suite.name, suite.source, {
                        k: v for k, v in suite.attrs.items() if k in ("hostname", "timestamp")},
                        suite.properties)
                elif suite.attrs.get("timestamp") and (
                        out.suites[skey].attrs.get("timestamp") or "~") > suite.attrs["timestamp"]:
                    # the run began with its first shard
                    out.suites[skey].attrs["timestamp"] = suite.attrs["timestamp"]
                for case in suite.cases:
                    mine.setdefault(case.key, []).append(case.outcome)
                    order.append((skey, case))
        for skey, case in order:
            key = case.key
            nameless = not (key[1] or key[2])  # nothing to tell them apart by: all kept
            if not nameless and key in seen and seen[key][0] != index:
                _same(key, seen[key][1:], (path, mine[key]))
                continue
            if not nameless:
                seen.setdefault(key, (index, path, mine[key]))
            out.suites[skey].cases.append(case)
    if not any(s.cases for s in out.suites.values()):
        raise UserError(f"no test case in {_names(p for p, _ in inputs)}: an empty report "
                        "never passes; give the shards' reports of a run that ran")
    return out


def _names(paths) -> str:
    return ", ".join(str(p) for p in paths)


def _same(key: tuple, first: tuple[Path, list], other: tuple[Path, list]) -> None:
    if sorted(first[1]) != sorted(other[1]):
        raise UserError(
            f"{_case_name(key)} is in {first[0]} ({first[1][0][0][0]}) and in "
            f"{other[0]} ({other[1][0][0][0]}): a target ran in two shards or two runs; "
            "merge the reports of one sharded run")


def _seconds(case: ET.Element) -> float:
    try:
        t = float(case.get("time") or 0)
    except ValueError:
        return 0.0
    return t if math.isfinite(t) and t > 0 else 0.0


def write_junit(doc: MergedJunit, path: Path) -> None:
    """One <testsuites>, written a suite at a time."""
    totals = doc.totals()
    with open_for_write(path) as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n')
        f.write(f'<testsuites errors="{totals.errors}" failures="{totals.failures}" '
                f'skipped="{totals.skipped}" tests="{totals.tests}" '
                f'time="{sum(c.seconds for s in doc.suites.values() for c in s.cases):f}">\n')
        for s in doc.suites.values():
            one = MergedJunit({(): s}).totals()
            attrs = {"name": s.name, "errors": str(one.errors), "failures": str(one.failures),
                     "skipped": str(one.skipped), "tests": str(one.tests),
                     "time": f"{sum(c.seconds for c in s.cases):f}", **s.attrs}
            elem = ET.Element("testsuite", attrs)
            if s.properties:
                props = ET.SubElement(elem, "properties")
                for k, v in s.properties.items():
                    ET.SubElement(props, "property", name=k, value=v)
            head = ET.tostring(elem, encoding="unicode")
            if head.endswith(" />"):  # no properties: <testsuite ... />
                f.write(head[:-3] + ">")
            else:
                f.write(head[:-len("</testsuite>")])
            for c in s.cases:
                f.write(c.text)
            f.write("</testsuite>\n")
        f.write("</testsuites>\n")


# --- JSON ---

def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def runs_in(path: Path, f: BinaryIO) -> list[RunResult]:
    """The runs of a JSON report, or of one target's results.json, checked
    against their schema."""
    data = bytearray()
    capped = _Capped(path, f)
    while chunk := capped.read(_CHUNK):
        data += chunk
    _count_values(path, data)
    try:
        doc = json.loads(data.decode("utf-8-sig"), parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 (byte {e.start}); give the shards' "
                        "results.json files") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not JSON ({e.msg} at line {e.lineno}); give the "
                        "shards' results.json files") from None
    except ValueError as e:
        raise UserError(f"{path}: not strict JSON ({e}); give the shards' results.json "
                        "files") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a report of the runner; give the "
                        "shards' results.json files") from None
    del data
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == REPORT_SCHEMA and isinstance(doc.get("runs"), list):
        runs, at = doc["runs"], "runs[{}]"
    elif schema == RESULTS_SCHEMA:
        runs, at = [doc], ""
    else:
        raise UserError(f"{path}: not an allocprof-ktest JSON report (schema "
                        f"{REPORT_SCHEMA} or {RESULTS_SCHEMA})")
    for i, run in enumerate(runs):
        error = run_error(run, at.format(i))
        if error:
            raise UserError(f"{path}: {error.lstrip('.')}: not as the runner writes its reports; "
                            "give the report the runner wrote")
    out = []
    for i, run in enumerate(runs):
        out.append(RunResult.from_dict(run))
        runs[i] = None  # its dicts go as its results come
    return out


def _count_values(path: Path, data: bytearray) -> None:
    """At most MAX_JSON_VALUES values (an upper bound: every "," "{" "["
    counts), before any is decoded: `[{},{},...]` takes 70 times its size."""
    values = data.count(b",") + data.count(b"{") + data.count(b"[")
    if values > MAX_JSON_VALUES:
        raise UserError(f"{path}: about {values:,} JSON values, more than the "
                        f"{MAX_JSON_VALUES:,} of any report of a run; give the shards' "
                        "results.json files")


def merge_runs(inputs: list[tuple[Path, BinaryIO]]) -> list[RunResult]:
    runs: list[RunResult] = []
    seen: dict[tuple, tuple[Path, tuple]] = {}
    for path, f in inputs:
        with reading(path):
            found = runs_in(path, f)
        for run in found:
            key = run_key(run)
            outcome = tuple((run.test_id(leaf), leaf.result.status.value, leaf.result.reason)
                            for leaf in run.leaves())
            if key in seen:
                if seen[key][1] != outcome:
                    raise UserError(
                        f"run {key[2]}/{key[3]} of {key[0]} is in {seen[key][0]} and in "
                        f"{path} with different results: a target ran in two shards or two "
                        "runs; merge the reports of one sharded run")
                continue
            seen[key] = (path, outcome)
            runs.append(run)
    if not runs:  # (a run without tests is a crash: it fails, exit 1)
        raise UserError(f"no test in {_names(p for p, _ in inputs)} (no run): an empty "
                        "report never passes; give the reports of a run that ran")
    return runs


@contextlib.contextmanager
def opened(paths: list[Path]) -> Iterator[tuple[str, list[tuple[Path, BinaryIO]]]]:
    """The inputs, open (each once: a FIFO cannot be read twice), and their
    one kind, told by their first bytes; a mix of JUnit and JSON is an error."""
    with contextlib.ExitStack() as stack:
        inputs = [(p, stack.enter_context(_open(p))) for p in paths]
        kinds = {p: kind(p, f) for p, f in inputs}
        if len(set(kinds.values())) > 1:
            xml = next(p for p, k in kinds.items() if k == "junit")
            js = next(p for p, k in kinds.items() if k == "json")
            raise UserError(f"{xml} is JUnit and {js} is JSON: merge each kind on its own")
        yield next(iter(kinds.values())), inputs


@dataclass
class Merged:
    """What `runner merge` made of its inputs: JUnit ones merged and written
    (@totals), or JSON ones as runs (@runs), for the caller's reports."""

    inputs: int
    totals: JunitTotals | None = None
    runs: list[RunResult] = field(default_factory=list)


def merge_reports(out: Path, paths: list[Path], force: bool) -> Merged:
    if out.suffix not in (".xml", ".json"):
        raise UserError(f"{out}: name the merged report OUT.xml (JUnit) or OUT.json (JSON), "
                        "first, then the reports to merge")
    check_out(out, paths, force,
              "name the merged report first, then the inputs (runner merge OUT IN...)")
    with opened(paths) as (kind, inputs):
        if kind == "junit":
            if out.suffix != ".xml":
                raise UserError(f"{out}: JUnit inputs merge into JUnit: name it {out.stem}.xml")
            doc = merge_junit(inputs)
            totals = doc.totals()
            write_junit(doc, out)
            return Merged(len(inputs), totals=totals)
        return Merged(len(inputs), runs=merge_runs(inputs))


_NO_TESTS = ("bench-", "bisect-", "faults-")  # run directories of other commands


def latest_run(results_dir: Path) -> Path:
    """The newest run directory of runner run or pytest (named by its start
    time), which must have results: an older run is never taken in its
    place."""
    runs = [d for d in results_dir.glob("*") if d.is_dir() and not d.name.startswith(_NO_TESTS)]
    if not runs:
        raise UserError(f"no run with results in {results_dir}: give --json REPORT (or a run "
                        "directory)")
    newest = max(runs, key=lambda d: (d.name.removeprefix("pytest-")[:15], d.stat().st_mtime,
                                      d.name))
    if not ((newest / "results.json").is_file() or any(newest.glob("*/results.json"))):
        raise UserError(f"the newest run, {newest}, has no results (killed, or still "
                        "running): give --json with the run to export")
    return newest


def results_files(path: Path) -> list[Path]:
    """A report file as it is; a run directory as its results.json (runner
    run), else each target's <target>/results.json (pytest)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    if (path / "results.json").is_file():
        return [path / "results.json"]
    found = sorted(path.glob("*/results.json"))
    if not found:
        raise UserError(f"{path}: no results.json in it or in its target directories; "
                        "give a run directory or a report file")
    return found
