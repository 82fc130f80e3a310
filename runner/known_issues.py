"""Known kernel bugs (kernel/known-issues.txt): a failure they fully
explain becomes an expected failure, for the kernel versions listed."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from runner.paths import project_root
from runner.results import RunResult, Status, TestResult


@dataclass(frozen=True)
class KnownIssue:
    glob: str
    first: tuple[int, ...]
    last: tuple[int, ...] | None
    diagnostic: re.Pattern
    evidence: str

    def covers(self, version: str) -> bool:
        v = _version(version)
        return v >= self.first and (self.last is None or v <= self.last)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def load(path: Path | None = None) -> list[KnownIssue]:
    out = []
    for line in (path or project_root() / "kernel" / "known-issues.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        glob, first, last, rx, evidence = (p.strip() for p in line.split(" | ", 4))
        out.append(KnownIssue(glob, _version(first), None if last == "*" else _version(last),
                              re.compile(rx, re.S | re.M), evidence))
    return out


def apply(run: RunResult, issues: list[KnownIssue] | None = None) -> None:
    issues = load() if issues is None else issues
    for leaf in run.leaves():
        r = leaf.result
        if r.status not in (Status.FAIL, Status.ERROR):
            continue
        test_id = run.test_id(leaf)
        for issue in issues:
            if not (fnmatch.fnmatch(test_id, issue.glob) and issue.covers(run.info.kernel_version)):
                continue
            if r.diagnostics and issue.diagnostic.search("\n".join(r.diagnostics)):
                r.status = Status.XFAIL
                r.reason = f"known kernel bug: {issue.evidence}"
                break
    _settle_parents(run.tests)


def _settle_parents(tests: list[TestResult]) -> None:
    """A suite that failed only because of children now all expected to
    fail is no longer a failure of its own."""
    for t in tests:
        if not t.children:
            continue
        _settle_parents(t.children)
        if t.status == Status.FAIL and all(c.status.is_ok for c in t.children) and \
                any(c.status == Status.XFAIL for c in t.children):
            t.status = Status.PASS
