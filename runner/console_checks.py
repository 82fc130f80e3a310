"""Checks on a whole console, declared in kernel/console-checks.txt: the
kernel must stay healthy and quiet outside the tests that provoke it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from runner.boot import GUEST_MARK as _GUEST_MARK
from runner.paths import project_root
from runner.results import Status, TestResult

SUITE = "console"
# Suites whose own output may contain what the checks forbid elsewhere.
EXEMPT_SUITES = ("alloc_tag_debug",)
# Selftests that provoke warnings: exempt until the guest's next marker.
EXEMPT_SELFTESTS = ("module_unload_test",)
_SUBTEST = re.compile(r"# Subtest: (\S+)")
_SUITE_END = re.compile(r"^(?:\[[^\]]*\]\s*)?(?:not )?ok \d+ (\S+)")


@dataclass(frozen=True)
class Check:
    name: str
    pattern: re.Pattern
    why: str


def checks(path: Path | None = None) -> list[Check]:
    out = []
    for line in (path or project_root() / "kernel" / "console-checks.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rx, why = (part.strip() for part in line.split(" | ", 2))
        out.append(Check(name, re.compile(rx), why))
    return out


def run(console: Path) -> TestResult:
    all_checks = checks()
    found: dict[str, list[str]] = {c.name: [] for c in all_checks}
    exempt = None
    with open(console, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip()
            if _GUEST_MARK in line:
                exempt = next((t for t in EXEMPT_SELFTESTS if line.endswith(" " + t)), None)
                continue
            m = _SUBTEST.search(line)
            if m and m.group(1) in EXEMPT_SUITES:
                exempt = m.group(1)
            elif exempt and (e := _SUITE_END.match(line)) and e.group(1) == exempt:
                exempt = None
                continue
            if exempt:
                continue
            for c in all_checks:
                if c.pattern.search(line) and len(found[c.name]) < 20:
                    found[c.name].append(line)
    children = []
    for c in all_checks:
        bad = found[c.name]
        children.append(TestResult(
            name=c.name, status=Status.FAIL if bad else Status.PASS,
            reason=f"{len(bad)} console line(s): {c.why}" if bad else "",
            diagnostics=bad))
    # Only a container: its checks carry the verdicts (and may become
    # expected failures later, see known_issues).
    return TestResult(name=SUITE, status=Status.PASS, children=children)
