"""Reports of a run: JUnit XML (one testcase per leaf test), JSON, and a
terminal summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from junit_xml import TestCase, TestSuite, to_xml_report_string

from runner.results import RunResult, Status, totals

_SYMBOL = {
    Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "SKIP",
    Status.XFAIL: "XFAIL", Status.TODO: "TODO", Status.TIMEOUT: "TIMEOUT",
    Status.ERROR: "ERROR", Status.CRASHED: "CRASHED",
}


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


def junit_suites(runs: list[RunResult]) -> list[TestSuite]:
    suites = []
    for run in runs:
        by_suite: dict[str, list[TestCase]] = {}
        for leaf in run.leaves():
            r = leaf.result
            tc = TestCase(
                name=leaf.case,
                classname=f"{run.info.arch}.{run.info.variant}.{leaf.suite}",
                elapsed_sec=r.duration,
                stdout="\n".join(r.log) or None,
            )
            if r.status in (Status.FAIL, Status.TIMEOUT):
                tc.add_failure_info(message=r.reason or r.status.value,
                                    output=failure_message(run, r))
            elif r.status in (Status.CRASHED, Status.ERROR):
                tc.add_error_info(message=r.reason or r.status.value,
                                  output=failure_message(run, r))
            elif r.status == Status.SKIP:
                tc.add_skipped_info(message=r.reason or "skipped")
            by_suite.setdefault(leaf.suite, []).append(tc)
        props = {"arch": run.info.arch, "variant": run.info.variant,
                 "kernel_version": run.info.kernel_version,
                 "source_id": run.info.source_id, "boot": run.info.boot,
                 "console": run.info.console}
        if not by_suite:
            tc = TestCase(name="(no results)", classname=f"{run.info.arch}.{run.info.variant}")
            tc.add_error_info(message=run.info.note or "no KTAP output found",
                              output="\n".join(run.console_tail))
            by_suite["(no results)"] = [tc]
        for name, cases in by_suite.items():
            suites.append(TestSuite(f"{run.info.arch}/{run.info.variant}/{name}",
                                    cases, properties=props))
    return suites


def write_junit(runs: list[RunResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_xml_report_string(junit_suites(runs), encoding="utf-8"))


def write_json(runs: list[RunResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "allocprof-ktest/report/1", "runs": [r.to_dict() for r in runs]}
    path.write_text(json.dumps(doc, indent=1))


def summary(runs: list[RunResult], out: TextIO, verbose: bool = True) -> None:
    for run in runs:
        leaves = run.leaves()
        if verbose:
            for leaf in leaves:
                r = leaf.result
                extra = f"  # {r.reason}" if r.reason else ""
                out.write(f"{_SYMBOL[r.status]:8} {run.test_id(leaf)}{extra}\n")
        t = {k: v for k, v in totals(leaves).items() if v}
        counts = ", ".join(f"{v} {k}" for k, v in t.items()) or "no tests"
        out.write(f"== {run.info.arch}/{run.info.variant} ({run.info.kernel_version}, "
                  f"{run.info.source_id or 'console'}): {run.verdict().value.upper()}: "
                  f"{counts}\n")
        if run.info.note:
            out.write(f"   note: {run.info.note}\n")
