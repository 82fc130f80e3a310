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
for a test that fails and then errors in teardown): both are kept."""

from __future__ import annotations

import contextlib
import json
import math
import os
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
# Far above any report the runner writes (its parser keeps at most 100,000
# log lines of 4 KB per run), and a bound for an input that never ends.
MAX_REPORT_BYTES = 1 << 30
BOM = b"\xef\xbb\xbf"
_SNIFF = 1 << 16
_CHUNK = 1 << 20


def source_of(info: RunInfo) -> str:
    """The kernel source a run tested: its source id (a commit, or a
    tarball's version and digest) or, for a console parsed on its own,
    that console."""
    return info.source_id or f"console:{info.console or '-'}"


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


@dataclass
class _Suite:
    name: str
    source: tuple[str, ...]
    attrs: dict[str, str]
    properties: dict[str, str]
    cases: list[ET.Element] = field(default_factory=list)


def _junit_suites(path: Path, f: BinaryIO) -> Iterator[_Suite]:
    """The suites of a JUnit report as they end, each with its own test
    cases (those of a nested suite are its own). Test cases outside any
    suite (directly under <testsuites>) make a suite named after the root.
    Only the test cases are kept: every other element leaves the tree
    when it ends, so memory follows the test cases, not the file."""
    open_suites: list[_Suite] = []
    stack: list[ET.Element] = []
    in_case = 0  # depth inside a <testcase>: kept whole
    root_cases: list[ET.Element] = []
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
                (open_suites[-1].cases if open_suites else root_cases).append(elem)
            elif tag == "property" and [_tag(e) for e in stack[-2:]] == ["testsuite",
                                                                          "properties"]:
                open_suites[-1].properties[elem.get("name") or ""] = elem.get("value") or ""
            elif tag == "testsuite":
                suite = open_suites.pop()
                suite.source = _source(suite.properties)
                yield suite
            elif tag == "testsuites" and not stack and root_cases:
                yield _Suite(elem.get("name") or "", (), {}, {}, root_cases)
            # Siblings end in order, and the parser may be ahead of these
            # events: the element just ended is its parent's first child.
            if stack and len(stack[-1]) and stack[-1][0] is elem:
                del stack[-1][0]
    except ET.ParseError as e:
        raise UserError(f"{path}: not well-formed XML ({e}); give the shards' JUnit "
                        "reports") from None


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
                for kind_ in {_tag(r) for r in c} & set(_RESULTS):
                    count[kind_] += 1
        return JunitTotals(cases, count["failure"], count["error"], count["skipped"])


def _case_name(key: tuple) -> str:
    source, classname, name = key
    where = f" ({', '.join(s for s in source if s)})" if any(source) else ""
    return "::".join(k for k in (classname, name) if k) + where


def merge_junit(inputs: list[tuple[Path, BinaryIO]]) -> MergedJunit:
    out = MergedJunit()
    seen: dict[tuple, tuple[int, Path, list]] = {}
    for index, (path, f) in enumerate(inputs):
        mine: dict[tuple, list] = {}
        order: list[tuple[tuple, tuple, ET.Element]] = []
        for suite in _junit_suites(path, f):
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
                props = _properties(case)
                key = (_source(props) if any(_source(props)) else suite.source,
                       case.get("classname") or "", case.get("name") or "")
                mine.setdefault(key, []).append(_outcome(case))
                order.append((skey, key, case))
        for skey, key, case in order:
            nameless = not (key[1] or key[2])  # nothing to tell them apart by: all kept
            if not nameless and key in seen and seen[key][0] != index:
                _same(key, seen[key][1:], (path, mine[key]))
                continue
            seen.setdefault(key, (index, path, mine[key]))
            out.suites[skey].cases.append(case)
    return out


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
                f'time="{sum(_seconds(c) for s in doc.suites.values() for c in s.cases):f}">\n')
        for s in doc.suites.values():
            one = MergedJunit({(): s}).totals()
            attrs = {"name": s.name, "errors": str(one.errors), "failures": str(one.failures),
                     "skipped": str(one.skipped), "tests": str(one.tests),
                     "time": f"{sum(_seconds(c) for c in s.cases):f}", **s.attrs}
            elem = ET.Element("testsuite", attrs)
            if s.properties:
                props = ET.SubElement(elem, "properties")
                for k, v in s.properties.items():
                    ET.SubElement(props, "property", name=k, value=v)
            elem.extend(s.cases)
            f.write(ET.tostring(elem, encoding="unicode"))
            f.write("\n")
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
        runs = [(r, f"runs[{i}]") for i, r in enumerate(doc["runs"])]
    elif schema == RESULTS_SCHEMA:
        runs = [(doc, "")]
    else:
        raise UserError(f"{path}: not an allocprof-ktest JSON report (schema "
                        f"{REPORT_SCHEMA} or {RESULTS_SCHEMA})")
    for run, at in runs:
        error = run_error(run, at)
        if error:
            raise UserError(f"{path}: {error.lstrip('.')}: not as the runner writes its reports; "
                            "give the report the runner wrote")
    return [RunResult.from_dict(run) for run, _ in runs]


def merge_runs(inputs: list[tuple[Path, BinaryIO]]) -> list[RunResult]:
    runs: list[RunResult] = []
    seen: dict[tuple, tuple[Path, tuple]] = {}
    for path, f in inputs:
        for run in runs_in(path, f):
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
