"""Reports of a run: JUnit XML (one testcase per leaf test, each suite
built by junit-xml), JSON, and a terminal summary.

Whatever a console holds, the reports stay valid: JUnit without the
characters XML forbids, JSON without NaN or infinity, a summary without
the log's escape sequences. Files are written whole or not at all."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from xml.etree import ElementTree as ET

import junit_xml

from runner.atomic import open_for_write
from runner.results import RunResult, Status, TestResult, totals

_SYMBOL = {
    Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "SKIP",
    Status.XFAIL: "XFAIL", Status.TODO: "TODO", Status.TIMEOUT: "TIMEOUT",
    Status.ERROR: "ERROR", Status.CRASHED: "CRASHED",
}
# JUnit element and type per status; PASS and TODO have none. XFAIL is
# pytest's convention, which CI dashboards read.
_JUNIT = {
    Status.FAIL: ("failure", "failure"), Status.TIMEOUT: ("failure", "failure"),
    Status.ERROR: ("error", "error"), Status.CRASHED: ("error", "error"),
    Status.SKIP: ("skipped", "skipped"), Status.XFAIL: ("skipped", "pytest.xfail"),
}
# Characters XML 1.0 forbids; and those a terminal would obey (C0, DEL, C1,
# bidirectional overrides) rather than show.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_TERMINAL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _visible(m: re.Match) -> str:
    """A character as its Python escape: ESC is shown as \\x1b."""
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def _xml_clean(text: str) -> str:
    """@text without what XML 1.0 forbids: shown as escapes, not dropped."""
    return _NOT_XML.sub(_visible, text)


def terminal_safe(text: str, encoding: str | None = "utf-8") -> str:
    """Text a terminal shows as it is: control and escape sequences
    escaped, characters the stream cannot encode as backslash escapes."""
    text = _NOT_TERMINAL.sub(_visible, text)
    if encoding and encoding.lower().replace("-", "") != "utf8":
        text = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    return text


def failure_message(run: RunResult, result) -> str:
    """The text a failing test is reported with: diagnostics, or the
    console tail when the test never reported."""
    lines = [f"{result.status.value}: {result.reason}".rstrip(": ")]
    lines += result.diagnostics
    if result.status == Status.CRASHED and run.console_tail:
        lines += ["", f"console tail ({run.info.console}):"] + run.console_tail
    if run.info.note:
        lines.append(f"run: {run.info.note}")
    return "\n".join(lines)


def _seconds(d: float | None) -> float | None:
    return d if d is not None and math.isfinite(d) else None


@dataclass(slots=True)  # one per leaf: a console may hold 100,000
class JunitCase:
    name: str
    classname: str
    result: TestResult
    message: str = ""  # the failure, error or skip text, if any
    output: str = ""


@dataclass
class JunitSuite:
    name: str
    properties: dict[str, str]
    cases: list[JunitCase] = field(default_factory=list)

    def count(self, element: str) -> int:
        return sum(1 for c in self.cases
                   if _JUNIT.get(c.result.status, ("",))[0] == element)

    def time(self) -> float:
        return sum(filter(None, (_seconds(c.result.duration) for c in self.cases)))


def junit_suites(runs: list[RunResult]) -> list[JunitSuite]:
    """One suite per run and top-level suite, one case per leaf test."""
    suites = []
    for run in runs:
        by_suite: dict[str, list[JunitCase]] = {}
        for leaf in run.leaves():
            r = leaf.result
            case = JunitCase(leaf.case, f"{run.info.arch}.{run.info.variant}.{leaf.suite}", r)
            if r.status in (Status.SKIP, Status.XFAIL):
                case.message = r.reason or r.status.value
            elif r.status in _JUNIT:
                case.message, case.output = r.reason or r.status.value, failure_message(run, r)
            by_suite.setdefault(leaf.suite, []).append(case)
        props = {"arch": run.info.arch, "variant": run.info.variant,
                 "kernel_version": run.info.kernel_version,
                 "source_id": run.info.source_id, "boot": run.info.boot,
                 "console": run.info.console}
        if not by_suite:
            none = TestResult("(no results)", Status.ERROR)
            by_suite["(no results)"] = [JunitCase(
                none.name, f"{run.info.arch}.{run.info.variant}", none,
                run.info.note or "no KTAP output found", "\n".join(run.console_tail))]
        for name, cases in by_suite.items():
            suites.append(JunitSuite(f"{run.info.arch}/{run.info.variant}/{name}", props, cases))
    return suites


def _junit_case(case: JunitCase) -> junit_xml.TestCase:
    r = case.result
    tc = junit_xml.TestCase(_xml_clean(case.name), classname=_xml_clean(case.classname),
                            elapsed_sec=_seconds(r.duration) or None,
                            stdout=_xml_clean("\n".join(r.log)) or None)
    if r.status in _JUNIT:
        element, kind = _JUNIT[r.status]
        message, output = _xml_clean(case.message), _xml_clean(case.output) or None
        if element == "failure":
            tc.add_failure_info(message, output, kind)
        elif element == "error":
            tc.add_error_info(message, output, kind)
        else:
            tc.add_skipped_info(message, output)
    return tc


def _junit_suite(s: JunitSuite) -> ET.Element:
    """One <testsuite>, built by junit-xml; an expected failure is marked
    as pytest marks it, which junit-xml has no word for."""
    props = {_xml_clean(k): _xml_clean(v) for k, v in s.properties.items()}
    elem = junit_xml.TestSuite(_xml_clean(s.name), [_junit_case(c) for c in s.cases],
                               properties=props).build_xml_doc()
    for case, built in zip(s.cases, elem.iter("testcase"), strict=True):
        if case.result.status == Status.XFAIL:
            built.find("skipped").set("type", _JUNIT[Status.XFAIL][1])
    return elem


def write_junit_to(runs: list[RunResult], out: TextIO) -> None:
    """JUnit XML as pytest and CI dashboards read it, written a suite at a
    time: each <testsuite> is built by junit-xml."""
    suites = junit_suites(runs)
    tally = {k: sum(s.count(k) for s in suites) for k in ("failure", "error", "skipped")}
    out.write('<?xml version="1.0" encoding="utf-8"?>\n')
    out.write(f'<testsuites disabled="0" errors="{tally["error"]}" '
              f'failures="{tally["failure"]}" skipped="{tally["skipped"]}" '
              f'tests="{sum(len(s.cases) for s in suites)}" '
              f'time="{sum(s.time() for s in suites):f}">\n')
    for s in suites:
        out.write(ET.tostring(_junit_suite(s), encoding="unicode"))
        out.write("\n")
    out.write("</testsuites>\n")


def write_junit(runs: list[RunResult], path: Path) -> None:
    with open_for_write(path) as f:
        write_junit_to(runs, f)


def write_json_to(runs: list[RunResult], out: TextIO) -> None:
    """Strict JSON (no NaN or Infinity, which JSON does not have), written
    as it goes: one line per test and per leaf, never the whole document
    in memory."""
    def dump(value) -> str:
        return json.dumps(value, allow_nan=False)

    out.write('{"schema": "allocprof-ktest/report/1", "runs": [')
    for i, run in enumerate(runs):
        head, lists = run.parts()
        out.write(",\n{" if i else "\n{")
        out.write(", ".join(f"{dump(k)}: {dump(v)}" for k, v in head.items()))
        for key, items in lists.items():
            out.write(f", {dump(key)}: [")
            for j, item in enumerate(items):
                out.write(",\n " if j else "\n ")
                out.write(dump(item))
            out.write("]")
        out.write("}")
    out.write("\n]}\n")


def write_json(runs: list[RunResult], path: Path) -> None:
    with open_for_write(path) as f:
        write_json_to(runs, f)


def summary(runs: list[RunResult], out: TextIO, verbose: bool = True) -> None:
    enc = getattr(out, "encoding", None)
    for run in runs:
        leaves = run.leaves()
        if verbose:
            for leaf in leaves:
                r = leaf.result
                extra = f"  # {r.reason}" if r.reason else ""
                out.write(terminal_safe(f"{_SYMBOL[r.status]:8} {run.test_id(leaf)}{extra}",
                                        enc) + "\n")
        t = {k: v for k, v in totals(leaves).items() if v}
        counts = ", ".join(f"{v} {k}" for k, v in t.items()) or "no tests"
        out.write(terminal_safe(
            f"== {run.info.arch}/{run.info.variant} ({run.info.kernel_version}, "
            f"{run.info.source_id or 'console'}): {run.verdict().value.upper()}: "
            f"{counts}", enc) + "\n")
        if run.info.note:
            out.write(terminal_safe(f"   note: {run.info.note}", enc) + "\n")
