"""Known kernel bugs (kernel/known-issues.txt): a failure they fully
explain becomes an expected failure, on the kernels that have the bug.

Each entry carries its condition: a version range that closes at the
first release known to have the fix, and a probe of the kernel source
for the buggy code itself.  A failure is excused only if every one of its
diagnostic lines fullmatches the entry's line pattern: any other line, or
a failure with no diagnostics, stays a failure.  A failure read without
its source (runner parse without --kernel-src) is never excused by a
probe it could not make.
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
        """@text may spell a newline \\n and a tab \\t: the buggy code
        is often more than one line."""
        if spec in ("", "-"):
            return None
        present = not spec.startswith("!")
        path, sep, text = spec.lstrip("!").partition(":")
        if not sep or not text:
            raise ValueError(f"bad source probe '{spec}': use path:text or !path:text")
        return cls(path, text.replace("\\n", "\n").replace("\\t", "\t"), present)

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
    fixed: tuple[int, ...] | None  # the first release known to have the fix
    probe: Probe | None
    line: re.Pattern  # every diagnostic line must fullmatch it
    evidence: str

    def covers(self, version: str, tree: Path | None = None) -> bool:
        v = version_tuple(version)
        in_range = v >= self.first and (self.fixed is None or v < self.fixed)
        return in_range and (self.probe is None or self.probe.holds(tree))

    def explains(self, diagnostics: list[str]) -> bool:
        return bool(diagnostics) and all(self.line.fullmatch(d) for d in diagnostics)


# The kselftest harness's own lines around a failing case's diagnostics.
HARNESS = r"#?\s*RUN\s+global\.\S+ \.\.\.|#?\s*FAIL\s+global\.\S+|\S+: Test failed"


def _line_pattern(rx: str) -> re.Pattern:
    """The entry's line regex; a diagnostic's leading "# " is the KTAP
    marker, not the kernel's text."""
    return re.compile(r"(?:# ?)?(?:" + rx.replace("{harness}", HARNESS) + r")\s*")


def _range(versions: str) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """"first..<fixed" or "first..*" (no release with the fix yet)."""
    first, sep, end = versions.partition("..")
    end = end.strip()
    if not sep or not (end == "*" or end.startswith("<")):
        raise ValueError(f"bad version range '{versions}': use FIRST..<FIXED or FIRST..*")
    return version_tuple(first), None if end == "*" else version_tuple(end[1:])


def load(path: Path | None = None) -> list[KnownIssue]:
    out = []
    for line in (path or project_root() / "kernel" / "known-issues.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        glob, versions, probe, rx, evidence = (p.strip() for p in line.split(" | ", 4))
        first, fixed = _range(versions)
        out.append(KnownIssue(glob, first, fixed, Probe.parse(probe), _line_pattern(rx),
                              evidence))
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
            if issue.explains(r.diagnostics):
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
