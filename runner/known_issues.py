"""Known kernel bugs (kernel/known-issues.txt): a failure they fully
explain becomes an expected failure, on the kernels that have the bug.

Each entry carries its condition: a version range and, where the fix is
known, a probe of the kernel source (a string a file of the tree has, or
lacks).  A kernel with the fix fails as it should, and a failure read
without its source (runner parse) is never excused by a probe it could
not make.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from runner.layout import version_tuple
from runner.paths import project_root
from runner.results import RunResult, Status, TestResult


@dataclass(frozen=True)
class Probe:
    """"path:text" (the tree's file has text) or "!path:text" (it lacks it)."""

    path: str
    text: str
    present: bool

    @classmethod
    def parse(cls, spec: str) -> Probe | None:
        if spec in ("", "-"):
            return None
        present = not spec.startswith("!")
        path, sep, text = spec.lstrip("!").partition(":")
        if not sep or not text:
            raise ValueError(f"bad source probe '{spec}': use path:text or !path:text")
        return cls(path, text, present)

    def holds(self, tree: Path | None) -> bool:
        if tree is None:
            return False
        try:
            found = self.text in (tree / self.path).read_text(errors="replace")
        except OSError:
            return False  # a file that moved proves nothing either way
        return found == self.present


@dataclass(frozen=True)
class KnownIssue:
    glob: str
    first: tuple[int, ...]
    last: tuple[int, ...] | None
    probe: Probe | None
    diagnostic: re.Pattern
    evidence: str

    def covers(self, version: str, tree: Path | None = None) -> bool:
        v = version_tuple(version)
        in_range = v >= self.first and (self.last is None or v <= self.last)
        return in_range and (self.probe is None or self.probe.holds(tree))


def load(path: Path | None = None) -> list[KnownIssue]:
    out = []
    for line in (path or project_root() / "kernel" / "known-issues.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        glob, versions, probe, rx, evidence = (p.strip() for p in line.split(" | ", 4))
        first, _, last = versions.partition("..")
        out.append(KnownIssue(glob, version_tuple(first),
                              None if last.strip() in ("", "*") else version_tuple(last),
                              Probe.parse(probe), re.compile(rx, re.S | re.M), evidence))
    return out


def apply(run: RunResult, issues: list[KnownIssue] | None = None,
          tree: Path | None = None) -> None:
    """@tree: the kernel source the run was built from, for the probes."""
    issues = load() if issues is None else issues
    for leaf in run.leaves():
        r = leaf.result
        if r.status not in (Status.FAIL, Status.ERROR):
            continue
        test_id = run.test_id(leaf)
        for issue in issues:
            if not (fnmatch.fnmatch(test_id, issue.glob)
                    and issue.covers(run.info.kernel_version, tree)):
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
